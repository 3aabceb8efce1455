//! FROM: the starting state of a stage — `scratch`, an earlier stage, or an image from the store
//! (pulled when missing).

use std::collections::BTreeMap;

use super::stage::{DEFAULT_PATH, StageState};
use super::steps::{StepEnv, StepError};
use crate::image::{ImageConfig, ImageRef, Platform, RootFs};
use crate::progress::Event;
use crate::registry::{self, NoopObserver};

/// The starting state of `stage`.
pub fn resolve(
    env: &StepEnv<'_>,
    stage: &frontend::Stage,
    done: &BTreeMap<usize, StageState>,
    created: &str,
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
        frontend::StageBase::Image { reference, .. } => {
            let r = ImageRef::parse(reference).map_err(|e| StepError::BaseImage {
                reference: reference.clone(),
                source: e.into(),
            })?;
            image_state(env, &r, created)?
        }
    };
    state.created = created.to_owned();
    Ok(state)
}

/// The state of a stage that starts from image `r` (from the store, else pulled).
pub fn image_state(
    env: &StepEnv<'_>,
    r: &ImageRef,
    created: &str,
) -> Result<StageState, StepError> {
    let image = match env.store.resolve(r)? {
        Some(image) => image,
        None => {
            env.reporter.event(Event::Pulling {
                reference: r.to_string(),
            });
            registry::pull(env.store, r, env.registry, &NoopObserver).map_err(|e| {
                StepError::BaseImage {
                    reference: r.familiar(),
                    source: e.into(),
                }
            })?
        }
    };
    if image
        .config
        .config
        .on_build
        .as_ref()
        .is_some_and(|t| !t.is_empty())
    {
        return Err(StepError::Unsupported("base images with ONBUILD triggers"));
    }
    Ok(StageState::new(
        image.config,
        image.manifest.layers,
        created.to_owned(),
    ))
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
