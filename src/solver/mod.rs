//! The build engine: takes a Dockerfile and a context, runs the target stage's steps, and exports
//! an OCI image into the store.
//!
//! Stages run as a graph ([`schedule`]): each starts once the stages it needs are built, several
//! at once, its steps in order; the first failure cancels the rest. Each COPY writes its layer
//! straight from the context (as its `.dockerignore` leaves it); the seams are where the full
//! engine slots in: `base` resolves FROM (store or registry), `steps` runs one instruction
//! against a [`StageState`], `export` writes the image. The cache (DESIGN.md decision 4) wraps
//! the steps that [`build`]'s stage runner calls.
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
pub mod reuse;
pub mod rootfs;
pub mod schedule;
pub mod seed;
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
use schedule::{Cancel, Halt};
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
    /// Keep the image in the store without a name when `tags` is empty (as `docker build`
    /// without `-t` leaves a `<none>` image).
    pub keep_untagged: bool,
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
    /// `--no-cache`, `--no-cache-filter`, `--debug-cache`.
    pub cache: crate::cache::CacheSettings,
    /// `--pull`: resolve base images in their registry even when they are in the store.
    pub pull: bool,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    pub manifest: Descriptor,
    /// The image ID (config digest).
    pub image_id: Digest,
    /// The cache records the build used, for `--cache-to`.
    pub cache: crate::cache::share::UsedRecords,
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
    /// The build was canceled before it finished, without a step failing.
    #[error("the build was canceled")]
    Canceled,
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
    context::named::resolve_in_plan(&mut plan, &req.named_contexts);
    let ctx = Context::open(&req.context)?.apply_dockerignore(req.dockerfile_path.as_deref())?;
    let named = context::NamedContexts::open(&req.named_contexts)?;
    // Blobs referenced by this build but not yet by a name must not be collected meanwhile.
    let _lease = store.lease()?;
    let created = timestamp(req.source_date_epoch);
    let snapshots = rootfs::Snapshots::new(store, req.storage_driver);
    let stage_names: BTreeMap<String, usize> = plan
        .stages
        .iter()
        .filter_map(|s| Some((s.name.as_ref()?.as_str().to_ascii_lowercase(), s.id.0)))
        .collect();
    let history = reuse::LayerHistory::new(store);
    let cache =
        crate::cache::BuildCache::new(store, req.cache.clone(), ctx.root(), &req.dockerfile_name);
    cache.register_context(ctx.root());
    for (_, dir) in named.dirs() {
        cache.register_context(dir.root());
    }
    let cancel = Cancel::new();
    let env = steps::StepEnv {
        build_args: &req.build_args,
        run: &req.run,
        stage_names: &stage_names,
        snapshots: &snapshots,
        store,
        ctx: &ctx,
        named: &named,
        registry: &req.registry,
        epoch: req.source_date_epoch,
        compression: req.compression,
        reporter,
        history: &history,
        cancel: &cancel,
        cache: &cache,
        pull: req.pull,
    };

    let graph = StageGraph::of(&plan);
    let stages = schedule::run_graph(
        &graph.deps,
        schedule::default_limit(),
        &cancel,
        |i, finished| graph.run_stage(&env, &plan, i, finished, &created),
    );
    // What the stat caches learned is kept even when the build failed.
    cache.save_stat_caches();
    let final_state = match stages {
        Ok(mut states) => states.swap_remove(plan.target),
        Err(Halt::Failed(e)) => return Err(e),
        Err(Halt::Canceled) => return Err(BuildError::Canceled),
    };
    let mut used = crate::cache::share::UsedRecords {
        records: cache.used(),
        ..Default::default()
    };
    used.set_final(
        &final_state.config.rootfs.diff_ids,
        final_state.layers.iter().map(|l| l.digest),
    );
    let (manifest, image_id) = export::export(
        store,
        &final_state,
        &req.labels,
        &cache,
        req.source_date_epoch,
    )?;
    reporter.event(Event::Exported {
        image_id: image_id.to_string(),
        manifest: manifest.digest.to_string(),
    });
    if req.tags.is_empty() && req.keep_untagged {
        store.keep_untagged(&manifest)?;
    }
    for tag in &req.tags {
        store.set_ref(tag, &manifest)?;
        reporter.event(Event::Tagged {
            name: tag.familiar(),
        });
    }
    Ok(BuildOutput {
        manifest,
        image_id,
        cache: used,
    })
}

/// The plan's stages as a graph for [`schedule::run_graph`]: dependencies by position in
/// `plan.stages`, and where each stage's step numbers start.
struct StageGraph {
    /// `deps[i]`: positions of the stages stage `i` needs (FROM, `COPY --from`,
    /// `RUN --mount from=`).
    deps: Vec<Vec<usize>>,
    /// The progress index of each stage's FROM step: stages are numbered in file order, each
    /// FROM then its steps, as the sequential build numbered them (BuildKit numbers a
    /// Dockerfile's vertices the same way, whatever order they run in).
    first_index: Vec<usize>,
    total: usize,
}

impl StageGraph {
    fn of(plan: &frontend::BuildPlan) -> Self {
        let position = |id: frontend::StageId| plan.stages.binary_search_by_key(&id, |s| s.id).ok();
        let deps = plan
            .stages
            .iter()
            .map(|s| s.dependencies.iter().filter_map(|d| position(*d)).collect())
            .collect();
        let mut first_index = Vec::with_capacity(plan.stages.len());
        let mut next = 1;
        for stage in &plan.stages {
            first_index.push(next);
            next += stage.steps.len() + 1;
        }
        Self {
            deps,
            first_index,
            total: next - 1,
        }
    }

    /// Build stage `i` (its FROM, then its steps in order) on a scheduler thread; the stages
    /// it needs are in `finished`. A step starts only while the build is not canceled.
    fn run_stage(
        &self,
        env: &steps::StepEnv<'_>,
        plan: &frontend::BuildPlan,
        i: usize,
        finished: &schedule::Finished<'_, StageState>,
        created: &str,
    ) -> Result<StageState, Halt<BuildError>> {
        let stage = &plan.stages[i];
        // The stage sees exactly the stages it depends on, whatever else has finished by now,
        // so that what it builds does not depend on timing.
        let done: BTreeMap<usize, StageState> = self.deps[i]
            .iter()
            .map(|&d| {
                let state = finished
                    .get(d)
                    .expect("a stage starts after its dependencies");
                (plan.stages[d].id.0, state.clone())
            })
            .collect();
        // BuildKit's progress names: `[2/5]` in a one-stage build, `[builder 2/5]` otherwise.
        let label = match (&stage.name, plan.stages.len()) {
            (_, 1) => String::new(),
            (Some(n), _) => n.as_str().to_owned(),
            (None, _) => format!("stage-{}", stage.id.0),
        };
        let step_id = |index| StepId {
            stage: label.clone(),
            index,
            total: self.total,
        };
        let first = self.first_index[i];
        let from = step_id(first);
        let mut state = reported(
            env,
            from.clone(),
            &stage.original,
            stage.location.span,
            None,
            || base::resolve(env, stage, &done, created, &from),
        )?;
        let lookups = env
            .cache
            .lookups_enabled(stage.name.as_ref().map(|n| n.as_str()), stage.id.0);
        for (n, s) in stage.steps.iter().enumerate() {
            let step = step_id(first + 1 + n);
            let place = steps::StepPlace::new(step.clone(), &done, lookups);
            reported(
                env,
                step,
                &s.original,
                s.location.span,
                Some(&place.hit),
                || steps::run(env, &mut state, s, &place),
            )?;
        }
        Ok(state)
    }
}

/// Run one step between its start and finish events (`CACHED` instead of finished when `hit`
/// was set); a failure carries the step's location.
///
/// Nothing starts once the build is canceled. A step that fails first cancels the build and
/// reports `StepFailed`; a step that fails after that (a RUN whose container the cancellation
/// killed) reports nothing more, so the renderers show it `CANCELED` when the build ends, as
/// BuildKit shows the vertices its canceled context stopped.
fn reported<T>(
    env: &steps::StepEnv<'_>,
    step: StepId,
    text: &str,
    span: Span,
    hit: Option<&std::sync::atomic::AtomicBool>,
    run: impl FnOnce() -> Result<T, StepError>,
) -> Result<T, Halt<BuildError>> {
    if env.cancel.is_canceled() {
        return Err(Halt::Canceled);
    }
    let started = Instant::now();
    env.reporter.event(Event::StepStarted {
        step: step.clone(),
        text: text.to_owned(),
    });
    let source = match run() {
        Ok(out) => {
            if hit.is_some_and(|h| h.load(std::sync::atomic::Ordering::Relaxed)) {
                env.reporter.event(Event::StepCached {
                    step,
                    text: text.to_owned(),
                });
            } else {
                env.reporter.event(Event::StepFinished {
                    step,
                    elapsed: started.elapsed(),
                });
            }
            return Ok(out);
        }
        Err(source) => source,
    };
    match env.cancel.fail(source) {
        Halt::Failed(source) => {
            env.reporter.event(Event::StepFailed {
                step,
                elapsed: started.elapsed(),
                error: source.to_string(),
            });
            Err(Halt::Failed(BuildError::Step {
                span,
                instruction: text.to_owned(),
                source,
            }))
        }
        Halt::Canceled => Err(Halt::Canceled),
    }
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
