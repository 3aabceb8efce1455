//! One Dockerfile step run against a [`StageState`]: word expansion with the stage's variables,
//! then the instruction's effect (one file per instruction family).

pub mod add;
pub mod copy;
pub mod metadata;
pub mod run;
pub mod workdir;

use std::collections::BTreeMap;

use frontend::{ArgValue, CommandLine, Step, StepKind};
use snapshotter::layer::{Compression, LayerError};

use super::context::{Context, NamedContexts};
use super::inroot::{InRoot, InRootError};
use super::rootfs::{self, RootfsError, Snapshots, StepLayer, Touched};
use super::stage::StageState;
use crate::progress::Reporter;
use crate::registry::RegistryOptions;
use crate::store::{Store, StoreError};
use copy::CopyError;
use metadata::Command;

/// What steps may use.
pub struct StepEnv<'a> {
    pub store: &'a Store,
    pub ctx: &'a Context,
    /// `--build-context` directories and images, for `FROM`, `COPY --from` and
    /// `RUN --mount from=` names that are not stages.
    pub named: &'a NamedContexts,
    pub registry: &'a RegistryOptions,
    pub epoch: Option<u64>,
    /// How the layers this build writes are compressed (`--compression`).
    pub compression: Compression,
    pub reporter: &'a dyn Reporter,
    /// The store's snapshotter, opened by the first step that needs a filesystem.
    pub snapshots: &'a Snapshots,
    /// `--build-arg`s (RUN sees the proxy ones even when not declared).
    pub build_args: &'a BTreeMap<String, String>,
    /// RUN's backend, secrets and SSH agents.
    pub run: &'a run::RunSettings,
    /// Stage names (lowercase) to their indexes, for `RUN --mount from=`.
    pub stage_names: &'a BTreeMap<String, usize>,
    /// Which step made which layer, for incremental re-export.
    pub history: &'a crate::solver::reuse::LayerHistory,
    /// The build's cancellation: a step that waits on something outside the process (a RUN's
    /// container) ends the wait when it trips (`Cancel::kill_on_cancel`, `Cancel::on_cancel`).
    pub cancel: &'a super::schedule::Cancel,
    /// The build cache: steps that make layers look their key up before running ([`cached`]).
    pub cache: &'a crate::cache::BuildCache,
    /// `--pull`: base images are resolved in their registry even when the store has them.
    pub pull: bool,
}

impl<'a> StepEnv<'a> {
    /// Reuse of the layer a step with this text made before (`solver::reuse`).
    pub fn reuse<'b>(&'b self, instruction: &'b str) -> rootfs::Reuse<'b> {
        rootfs::Reuse {
            history: self.history,
            instruction,
        }
    }
}

/// Where a step is in the build: its id for progress, and the stages built before it.
pub struct StepPlace<'a> {
    pub id: crate::progress::StepId,
    pub stages: &'a BTreeMap<usize, StageState>,
    /// Whether the cache may be looked up (not with `--no-cache`, or a stage in
    /// `--no-cache-filter`).
    pub lookups: bool,
    /// Set when the step's result came from the cache (the step reports `CACHED`).
    pub hit: std::sync::atomic::AtomicBool,
}

impl<'a> StepPlace<'a> {
    pub fn new(
        id: crate::progress::StepId,
        stages: &'a BTreeMap<usize, StageState>,
        lookups: bool,
    ) -> Self {
        Self {
            id,
            stages,
            lookups,
            hit: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// The layer of a step whose key's preimage is `preimage`: the recorded one on a hit (nothing
/// runs), else what `make` gives, recorded for the next build. With `--debug-cache` a miss is
/// explained in the step's log.
pub fn cached(
    env: &StepEnv<'_>,
    place: &StepPlace<'_>,
    preimage: &crate::cache::Preimage,
    make: impl FnOnce() -> Result<StepLayer, StepError>,
) -> Result<StepLayer, StepError> {
    use crate::cache::{Miss, Outcome};
    let key = preimage.key();
    let step_id = env.cache.step_id(&place.id.stage, place.id.index);
    let miss = if place.lookups {
        match env.cache.lookup(&key, env.store) {
            Ok(record) => {
                place.hit.store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(match record.outcome.layer() {
                    Some(info) => StepLayer::Layer(info),
                    None => StepLayer::Unchanged,
                });
            }
            Err(Miss::New) => env.cache.explain(&step_id, preimage),
            Err(other) => other,
        }
    } else {
        Miss::Disabled
    };
    if env.cache.settings().explain {
        env.reporter.event(crate::progress::Event::CacheMiss {
            step: place.id.clone(),
            key: key.to_string(),
            reason: miss.to_string(),
        });
    }
    let layer = make()?;
    let outcome = match &layer {
        StepLayer::Layer(info) => Outcome::of_layer(info),
        StepLayer::Unchanged => Outcome::Unchanged,
    };
    env.cache.record(&step_id, preimage, outcome);
    Ok(layer)
}

/// The content hash of a step's inputs, through the build cache (stat-cached for contexts).
pub fn inputs_digest(
    env: &StepEnv<'_>,
    inputs: &[crate::cache::InputEntry],
) -> Result<snapshotter::Digest, StepError> {
    env.cache
        .digest_inputs(inputs)
        .map(|d| d.digest)
        .map_err(|e| StepError::Invalid(format!("hashing the step's sources: {e}")))
}

/// Record a step's layer (or, when it changed nothing, an empty-layer history entry: BuildKit
/// leaves empty diffs out of the image).
pub fn push_layer(env: &StepEnv<'_>, state: &mut StageState, layer: StepLayer, created_by: String) {
    match layer {
        StepLayer::Layer(info) => {
            state.push_layer(&info, env.compression.media_type(), created_by);
        }
        StepLayer::Unchanged => state.push_history(created_by, true),
    }
}

/// The preimage of a layer step on the stage's current filesystem: op kind, parent ChainID,
/// and what shapes every layer kiln writes (`SOURCE_DATE_EPOCH`, compression).
pub fn preimage(
    env: &StepEnv<'_>,
    kind: &str,
    diff_ids: Option<&[snapshotter::DiffId]>,
) -> crate::cache::Preimage {
    let parent = diff_ids.and_then(snapshotter::ChainId::of_stack);
    let mut p = crate::cache::Preimage::new(kind, parent.as_ref());
    p.field("epoch", env.epoch)
        .field("compression", env.compression.media_type());
    p
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0} are not supported yet")]
    Unsupported(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Expand(#[from] frontend::expand::ExpandError),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("base image {reference}")]
    BaseImage {
        reference: String,
        #[source]
        source: BoxError,
    },
    #[error(transparent)]
    Rootfs(Box<RootfsError>),
    #[error(transparent)]
    InRoot(#[from] InRootError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sandbox(Box<crate::sandbox::SandboxError>),
    #[error(transparent)]
    Process(run::ProcessFailed),
}

impl From<RootfsError> for StepError {
    fn from(e: RootfsError) -> Self {
        Self::Rootfs(Box::new(e))
    }
}

/// A boxed error source (the base image's parse or pull failure).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Run one step.
pub fn run(
    env: &StepEnv<'_>,
    state: &mut StageState,
    step: &Step,
    place: &StepPlace<'_>,
) -> Result<(), StepError> {
    let snapshot = state.clone();
    let lookup = move |name: &str| snapshot.lookup(name);
    match &step.kind {
        StepKind::Copy(c) => copy::run(env, state, c, step, place)?,
        StepKind::Env(e) => {
            let mut expanded: Vec<(String, String)> = Vec::new();
            for kv in &e.pairs {
                // Each pair sees the ones before it on the same line, as in BuildKit.
                let seen = |name: &str| {
                    expanded
                        .iter()
                        .rev()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .or_else(|| lookup(name))
                };
                let key = kv.key.expand(&seen)?;
                let value = kv.value.expand(&seen)?;
                expanded.push((key, value));
            }
            metadata::env(state, &expanded);
        }
        StepKind::Label(l) => {
            let expanded = l
                .pairs
                .iter()
                .map(|kv| Ok((kv.key.expand(&lookup)?, kv.value.expand(&lookup)?)))
                .collect::<Result<Vec<_>, StepError>>()?;
            metadata::label(state, &expanded);
        }
        StepKind::Expose(e) => {
            let mut specs = Vec::new();
            for p in &e.ports {
                specs.extend(p.expand_words(&lookup)?);
            }
            metadata::expose(state, &specs)?;
        }
        StepKind::User(u) => metadata::user(state, &u.user.expand(&lookup)?),
        StepKind::Workdir(w) => {
            let wd = workdir::target(state, &w.path.expand(&lookup)?);
            let created_by = format!("WORKDIR {wd}");
            let layer = if wd == "/" {
                StepLayer::Unchanged
            } else {
                let user = state.config.config.user.clone();
                let mut key = preimage(env, "workdir", Some(&state.config.rootfs.diff_ids));
                key.field("path", &wd).field("user", &user);
                cached(env, place, &key, || {
                    file_step(env, state, &step.original, |root| {
                        Ok(workdir::create_in(root, &wd, user.as_deref(), env.epoch)?)
                    })
                })?
            };
            state.config.config.working_dir = Some(wd);
            push_layer(env, state, layer, created_by);
        }
        StepKind::Cmd(c) => metadata::cmd(state, &command(&c.command)),
        StepKind::Entrypoint(c) => metadata::entrypoint(state, &command(&c.command)),
        StepKind::Volume(v) => {
            let mut paths = Vec::new();
            for w in &v.paths {
                if v.json {
                    paths.push(w.expand(&lookup)?);
                } else {
                    paths.extend(w.expand_words(&lookup)?);
                }
            }
            metadata::volume(state, &paths)?;
        }
        StepKind::StopSignal(s) => metadata::stopsignal(state, &s.signal.expand(&lookup)?),
        StepKind::Shell(s) => metadata::shell(state, &s.shell),
        StepKind::Maintainer(m) => metadata::maintainer(state, &m.name),
        StepKind::Arg(a) => {
            for binding in &a.args {
                let value = match &binding.value {
                    ArgValue::BuildArg(v) | ArgValue::Global(v) => Some(v.clone()),
                    ArgValue::Default(w) => Some(w.expand(&lookup)?),
                    ArgValue::Unset => None,
                };
                metadata::arg(state, &binding.name, value);
            }
        }
        StepKind::Run(r) => {
            let run_env = run::RunEnv {
                step: env,
                run: env.run,
                build_args: env.build_args,
                stages: place.stages,
                stage_names: env.stage_names,
                step_id: place.id.clone(),
                instruction: &step.original,
                place,
            };
            run::run(&run_env, state, r)?;
        }
        StepKind::Add(a) => add::run(env, state, a, step, place)?,
        StepKind::Healthcheck(h) => metadata::healthcheck(state, h),
        StepKind::Onbuild(o) => metadata::onbuild(state, &o.expression),
    }
    Ok(())
}

/// Run a file step on the stage's current filesystem (unpacked on first use) and commit it.
fn file_step(
    env: &StepEnv<'_>,
    state: &StageState,
    instruction: &str,
    write: impl FnOnce(&InRoot) -> Result<Option<Touched>, StepError>,
) -> Result<StepLayer, StepError> {
    let sn = env.snapshots.get()?;
    let content = env.store.content();
    let diff_ids = &state.config.rootfs.diff_ids;
    let parent = rootfs::ensure_chain(sn, content, &state.layers, diff_ids)?;
    rootfs::file_step(
        sn,
        content,
        parent.as_ref(),
        diff_ids,
        rootfs::LayerSettings {
            epoch: env.epoch,
            compression: env.compression,
            reuse: Some(env.reuse(instruction)),
            seed: None,
        },
        env.snapshots.mounts_dir(),
        write,
    )
}

fn command(c: &CommandLine) -> Command {
    match c {
        CommandLine::Exec(v) => Command::Exec(v.clone()),
        CommandLine::Shell(s) => Command::Shell(s.clone()),
    }
}
