//! The build engine: takes a Dockerfile and a context, runs the target stage's steps, and exports
//! an OCI image into the store.
//!
//! Today steps run in order, one stage at a time, and each COPY writes its layer straight from
//! the context (as its `.dockerignore` leaves it); the seams are where the full engine slots in: `base` resolves FROM (store or
//! registry), `steps` runs one instruction against a [`StageState`], `export` writes the image.
//! The parallel scheduler and the cache (DESIGN.md decision 4) replace the loop in [`build`].
//! File steps (COPY, WORKDIR) run on snapshots of the stage's filesystem (`rootfs`: base layers
//! unpacked by ChainID, the step's writes made root-bounded through `inroot`, the layer diffed
//! from the snapshot); the snapshotter is opened only when such a step runs.
//!
//! Not responsible for: parsing (the `frontend` crate), rendering progress (the CLI).

pub mod base;
pub mod context;
pub mod export;
pub mod inroot;
pub mod output;
pub mod rootfs;
pub mod stage;
pub mod steps;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use frontend::span::Span;
use snapshotter::Digest;
use snapshotter::snapshot::StorageDriver;

use crate::image::{Descriptor, ImageRef};
use crate::progress::{Event, Reporter, StepId};
use crate::registry::RegistryOptions;
use crate::store::{Store, StoreError};
use context::{Context, ContextError};
use stage::StageState;
pub use steps::StepError;

/// Everything a build needs.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub context: PathBuf,
    /// The Dockerfile's name as shown in diagnostics (`Dockerfile`, `build/app.Dockerfile`).
    pub dockerfile_name: String,
    pub dockerfile: String,
    /// Where the Dockerfile is on disk, to find its own `<name>.dockerignore` beside it (which
    /// wins over the context's `.dockerignore`); `None` when it came from stdin.
    pub dockerfile_path: Option<PathBuf>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub tags: Vec<ImageRef>,
    pub registry: RegistryOptions,
    /// `SOURCE_DATE_EPOCH`: image and history dates, and the clamp for file mtimes.
    pub source_date_epoch: Option<u64>,
    /// The snapshot driver for steps that need a filesystem (`None`: probe, overlay if it
    /// mounts on the store's filesystem, else copy).
    pub storage_driver: Option<StorageDriver>,
    /// Compression of the layers the build writes (gzip by default, as Docker).
    pub compression: snapshotter::layer::Compression,
    /// RUN's runtime backend, `--secret`s and `--ssh` agents.
    pub run: steps::run::RunSettings,
    /// `--label K=V`: labels added to the target image's config (see `export`).
    pub labels: BTreeMap<String, String>,
    /// `--build-context NAME=SOURCE`: named contexts, by `context::named::lookup_key`.
    pub named_contexts: BTreeMap<String, context::NamedContext>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    pub manifest: Descriptor,
    /// The image ID (config digest).
    pub image_id: Digest,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse or plan; the diagnostics point at the text.
    #[error("the Dockerfile has {} error(s)", .0.len())]
    Dockerfile(frontend::Diagnostics),
    /// A step failed; `span` points at its instruction in the Dockerfile.
    #[error("{instruction}")]
    Step {
        span: Span,
        instruction: String,
        #[source]
        source: StepError,
    },
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Run a build and tag the result.
pub fn build(
    store: &Store,
    req: &BuildRequest,
    reporter: &dyn Reporter,
) -> Result<BuildOutput, BuildError> {
    let df = frontend::parse(&req.dockerfile).map_err(BuildError::Dockerfile)?;
    let opts = frontend::PlanOptions {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        automatic_args: automatic_args(),
    };
    let mut plan = frontend::plan(&df, &opts).map_err(BuildError::Dockerfile)?;
    context::named::resolve_in_plan(&mut plan, &req.named_contexts)?;
    let ctx = Context::open(&req.context)?.apply_dockerignore(req.dockerfile_path.as_deref())?;
    // Blobs referenced by this build but not yet by a name must not be collected meanwhile.
    let _lease = store.lease()?;
    let created = timestamp(req.source_date_epoch);
    let snapshots = rootfs::Snapshots::new(store, req.storage_driver);
    let stage_names: BTreeMap<String, usize> = plan
        .stages
        .iter()
        .filter_map(|s| Some((s.name.as_ref()?.as_str().to_ascii_lowercase(), s.id.0)))
        .collect();
    let env = steps::StepEnv {
        build_args: &req.build_args,
        run: &req.run,
        stage_names: &stage_names,
        snapshots: &snapshots,
        store,
        ctx: &ctx,
        registry: &req.registry,
        epoch: req.source_date_epoch,
        compression: req.compression,
        reporter,
    };

    let total: usize = plan.stages.iter().map(|s| s.steps.len() + 1).sum();
    let mut index = 0;
    let mut done: BTreeMap<usize, StageState> = BTreeMap::new();
    for stage in &plan.stages {
        // BuildKit's progress names: `[2/5]` in a one-stage build, `[builder 2/5]` otherwise.
        let label = match (&stage.name, plan.stages.len()) {
            (_, 1) => String::new(),
            (Some(n), _) => n.as_str().to_owned(),
            (None, _) => format!("stage-{}", stage.id.0),
        };
        index += 1;
        let step = StepId {
            stage: label.clone(),
            index,
            total,
        };
        let mut state = reported(reporter, step, &stage.original, stage.location.span, || {
            base::resolve(&env, stage, &done, &created)
        })?;
        for s in &stage.steps {
            index += 1;
            let step = StepId {
                stage: label.clone(),
                index,
                total,
            };
            let place = steps::StepPlace {
                id: step.clone(),
                stages: &done,
            };
            reported(reporter, step, &s.original, s.location.span, || {
                steps::run(&env, &mut state, s, &place)
            })?;
        }
        done.insert(stage.id.0, state);
    }
    let final_state = done
        .remove(&plan.target_stage().id.0)
        .expect("the target stage was built");
    let (manifest, image_id) = export::export(store, &final_state, &req.labels)?;
    reporter.event(Event::Exported {
        image_id: image_id.to_string(),
        manifest: manifest.digest.to_string(),
    });
    for tag in &req.tags {
        store.set_ref(tag, &manifest)?;
        reporter.event(Event::Tagged {
            name: tag.familiar(),
        });
    }
    Ok(BuildOutput { manifest, image_id })
}

/// Run one step between its start and finish events; a failure carries the step's location.
fn reported<T>(
    reporter: &dyn Reporter,
    step: StepId,
    text: &str,
    span: Span,
    run: impl FnOnce() -> Result<T, StepError>,
) -> Result<T, BuildError> {
    let started = Instant::now();
    reporter.event(Event::StepStarted {
        step: step.clone(),
        text: text.to_owned(),
    });
    let out = match run() {
        Ok(out) => out,
        Err(source) => {
            reporter.event(Event::StepFailed {
                step,
                elapsed: started.elapsed(),
                error: source.to_string(),
            });
            return Err(BuildError::Step {
                span,
                instruction: text.to_owned(),
                source,
            });
        }
    };
    reporter.event(Event::StepFinished {
        step,
        elapsed: started.elapsed(),
    });
    Ok(out)
}

/// The platform args for a native build (build platform = target platform = this host).
pub fn automatic_args() -> BTreeMap<String, String> {
    let host = crate::image::Platform::host();
    let spec = frontend::args::PlatformSpec {
        os: host.os,
        architecture: host.architecture,
        variant: host.variant,
    };
    frontend::args::platform_args(&spec, &spec)
}

/// RFC 3339 time for `created`: `SOURCE_DATE_EPOCH` when set, else now.
pub fn timestamp(epoch: Option<u64>) -> String {
    use time::format_description::well_known::Rfc3339;
    let t = match epoch
        .and_then(|e| i64::try_from(e).ok())
        .and_then(|e| time::OffsetDateTime::from_unix_timestamp(e).ok())
    {
        Some(t) => t,
        None => time::OffsetDateTime::now_utc(),
    };
    t.format(&Rfc3339).expect("RFC 3339 formats every date")
}
