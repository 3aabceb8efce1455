//! FROM: the starting state of a stage — `scratch`, an earlier stage, an image from the store
//! (pulled when missing), or a `--build-context` directory ([`dir_state`]).
//!
//! ONBUILD triggers of a base image run right after its FROM, as BuildKit does
//! (`dockerfile2llb` `initOnBuildTriggers`; Dockerfile reference "ONBUILD"): the triggers are
//! parsed with the frontend and run as steps of the stage, in order, with the build's args;
//! `ONBUILD ONBUILD`, `FROM` and `MAINTAINER` triggers are errors; the new image's `OnBuild` is
//! cleared. A trigger's failure is reported at the FROM line, naming the trigger. A stage
//! built `FROM` another stage of the same file inherits that stage's `OnBuild` list without
//! running it (BuildKit reads triggers from the base's config before that stage's own ONBUILD
//! instructions are dispatched).

use std::collections::BTreeMap;

use super::context::Context;
use super::rootfs;
use super::stage::{DEFAULT_PATH, StageState};
use super::steps::copy::{CopySpec, Source, copy_into};
use super::steps::{BoxError, StepEnv, StepError, StepPlace};
use crate::image::{ImageConfig, ImageRef, Platform, RootFs};
use crate::progress::{Event, StepId};
use crate::registry::{self, NoopObserver};

/// The starting state of `stage`.
pub fn resolve(
    env: &StepEnv<'_>,
    stage: &frontend::Stage,
    done: &BTreeMap<usize, StageState>,
    created: &str,
    step: &StepId,
) -> Result<StageState, StepError> {
    if let Some(p) = &stage.platform {
        check_native(p)?;
    }
    let mut state = match &stage.base {
        frontend::StageBase::Scratch => {
            StageState::new(scratch_config(), Vec::new(), created.to_owned())
        }
        frontend::StageBase::Stage(id) => {
            let parent = done.get(&id.0).ok_or_else(|| {
                StepError::Invalid(format!("stage {} was not built before it was used", id.0))
            })?;
            let mut s = parent.clone();
            s.args.clear();
            s.cmd_set = false;
            s
        }
        frontend::StageBase::Image { reference, .. } => match env.named.dir(reference) {
            Some(dir) => dir_state(env, reference, dir, created)?,
            None => {
                let r = ImageRef::parse(reference).map_err(|e| StepError::BaseImage {
                    reference: reference.clone(),
                    source: e.into(),
                })?;
                let mut state = image_state(env, &r, created, step)?;
                run_triggers(env, &mut state, &r, done)?;
                state
            }
        },
    };
    state.created = created.to_owned();
    Ok(state)
}

/// The state of a stage that starts from image `r` (from the store, else pulled; with `--pull`
/// the registry is asked for the reference's current image every time, layers already in the
/// store not being downloaded again).
pub fn image_state(
    env: &StepEnv<'_>,
    r: &ImageRef,
    created: &str,
    step: &StepId,
) -> Result<StageState, StepError> {
    let local = if env.pull {
        None
    } else {
        env.store.resolve(r)?
    };
    let image = match local {
        Some(image) => image,
        None => {
            env.reporter.event(Event::Pulling {
                step: Some(step.clone()),
                reference: r.to_string(),
            });
            // Each layer is unpacked while the layers above it download (the stage's steps
            // run on this filesystem), and a layer the pull verified is not hashed again.
            let unpack = |ready: registry::ReadyLayer<'_>| -> Result<(), BoxError> {
                rootfs::ensure_chain_verified(
                    env.snapshots.get()?,
                    env.store.content(),
                    ready.layers,
                    ready.diff_ids,
                    ready.verified,
                )?;
                Ok(())
            };
            registry::pull_unpacking(env.store, r, env.registry, &NoopObserver, &unpack).map_err(
                |source| StepError::BaseImage {
                    reference: r.familiar(),
                    source,
                },
            )?
        }
    };
    Ok(StageState::new(
        image.config,
        image.manifest.layers,
        created.to_owned(),
    ))
}

/// History comment of the entry BuildKit's image exporter adds for a layer that no instruction
/// recorded (`exporter/containerimage/writer.go`, `normalizeLayersAndHistory`).
pub const EXPORTER_HISTORY_COMMENT: &str = "buildkit.exporter.image.v0";

/// The state of a stage that starts `FROM` the directory context `name`.
///
/// BuildKit loads a local named context as a state with no image config and gives the stage
/// `emptyImage` (`dockerfile2llb/convert.go` `resolveBaseImage`, the `img == nil` case): the
/// config is that of `FROM scratch`, and the filesystem is the directory. Here the directory
/// becomes one layer, written the way COPY writes the main context's files (the context's
/// `.dockerignore` applied, entries 0:0, modes and mtimes kept, mtimes clamped to
/// `SOURCE_DATE_EPOCH`); an empty directory gives no layer, like `FROM scratch`.
///
/// The layer's history entry is the one BuildKit's exporter adds for a layer no instruction
/// accounts for: `created_by` the local source's description (`local source for context:NAME`,
/// BuildKit's `source/local` names the ref after its shared key), comment
/// [`EXPORTER_HISTORY_COMMENT`]. BuildKit appends such entries after the instructions' own;
/// kiln puts it first, where its layer is, so that history and layers stay in step.
pub fn dir_state(
    env: &StepEnv<'_>,
    name: &str,
    dir: &Context,
    created: &str,
) -> Result<StageState, StepError> {
    let mut state = StageState::new(scratch_config(), Vec::new(), created.to_owned());
    let key = super::context::named::lookup_key(name).unwrap_or_else(|| name.to_owned());
    let created_by = format!("local source for context:{key}");
    let source = Source {
        tree: dir,
        path: ".".to_owned(),
        wildcards: false,
        unpack: false,
    };
    let spec = CopySpec {
        dest: "/".to_owned(),
        workdir: "/".to_owned(),
        epoch: env.epoch,
        ..CopySpec::default()
    };
    // Cached like a COPY of the directory (its content hash, stat-cached).
    let inputs = super::steps::copy::selection(
        std::slice::from_ref(&source),
        &spec,
        super::steps::copy::Owners::Root,
    )?;
    let mut preimage = super::steps::preimage(env, "context-dir", None);
    preimage.field(
        "inputs",
        super::steps::inputs_digest(env, &inputs)?.to_string(),
    );
    let done = BTreeMap::new();
    let place = StepPlace::new(
        StepId {
            stage: format!("context:{key}"),
            index: 0,
            total: 0,
        },
        &done,
        !env.cache.settings().no_cache,
    );
    let layer = super::steps::cached(env, &place, &preimage, || {
        rootfs::file_step(
            env.snapshots.get()?,
            env.store.content(),
            None,
            &[],
            rootfs::LayerSettings {
                epoch: env.epoch,
                compression: env.compression,
                reuse: Some(env.reuse(&created_by)),
                seed: None,
            },
            env.snapshots.mounts_dir(),
            |root| -> Result<_, StepError> {
                let touched = copy_into(std::slice::from_ref(&source), root, &spec)?;
                Ok((!touched.paths.is_empty()).then_some(touched))
            },
        )
    })?;
    if let rootfs::StepLayer::Layer(info) = layer {
        state.push_layer(&info, env.compression.media_type(), created_by);
        if let Some(entry) = state.config.history.last_mut() {
            entry.comment = Some(EXPORTER_HISTORY_COMMENT.to_owned());
        }
    }
    Ok(state)
}

/// Run the base image's ONBUILD triggers on `state` (then cleared from its config).
fn run_triggers(
    env: &StepEnv<'_>,
    state: &mut StageState,
    r: &ImageRef,
    done: &BTreeMap<usize, StageState>,
) -> Result<(), StepError> {
    let Some(triggers) = state.config.config.on_build.take() else {
        return Ok(());
    };
    if triggers.is_empty() {
        return Ok(());
    }
    let failed = |trigger: &str, source: BoxError| StepError::BaseImage {
        reference: format!("{} (ONBUILD {trigger})", r.familiar()),
        source,
    };
    for trigger in &triggers {
        let keyword = trigger
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let refused = match keyword.as_str() {
            "ONBUILD" => Some("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned()),
            "FROM" | "MAINTAINER" => Some(format!("{keyword} isn't allowed as an ONBUILD trigger")),
            _ => None,
        };
        if let Some(message) = refused {
            return Err(failed(trigger, message.into()));
        }
    }
    // One trigger per line after a FROM, so the frontend plans them as a stage's steps.
    let mut text = "FROM scratch\n".to_owned();
    for t in &triggers {
        text.push_str(t);
        text.push('\n');
    }
    let all = triggers.join("; ");
    let one_line = |d: &frontend::Diagnostics| {
        d.iter()
            .map(|d| d.one_line("ONBUILD", &text))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let df = frontend::parse(&text).map_err(|d| failed(&all, one_line(&d).into()))?;
    let opts = frontend::PlanOptions {
        build_args: env.build_args.clone(),
        target: None,
        automatic_args: super::automatic_args(),
    };
    let plan = frontend::plan(&df, &opts).map_err(|d| failed(&all, one_line(&d).into()))?;
    // Output of a trigger's RUN belongs to the FROM step.
    let place = StepPlace::new(
        StepId {
            stage: String::new(),
            index: 0,
            total: 0,
        },
        done,
        !env.cache.settings().no_cache,
    );
    for step in &plan.target_stage().steps {
        super::steps::run(env, state, step, &place)
            .map_err(|e| failed(&step.original, e.into()))?;
    }
    Ok(())
}

/// `FROM --platform=P`: only the native platform can be built until cross-building exists.
fn check_native(p: &str) -> Result<(), StepError> {
    let host = Platform::host();
    if host.matches_slash_form(p) {
        return Ok(());
    }
    Err(StepError::Invalid(format!(
        "platform {p} is not the native platform ({}); cross-platform builds are not supported yet",
        host.slash_form()
    )))
}

/// The config of an empty image, as BuildKit makes it for `FROM scratch` (with a default PATH).
fn scratch_config() -> ImageConfig {
    let host = Platform::host();
    let mut config = ImageConfig {
        architecture: host.architecture,
        os: host.os,
        variant: host.variant,
        rootfs: RootFs::default(),
        ..ImageConfig::default()
    };
    config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
    config
}
