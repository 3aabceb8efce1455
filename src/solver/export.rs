//! Export: write a finished stage's image config and OCI manifest into the store (the names
//! are set by the caller, other outputs are written from the stored image by `output`).
//!
//! `--label K=V` values are added to the target image's `Labels` last, over the Dockerfile's
//! LABELs, without a history entry: BuildKit's `dockerfile2llb` sets `opt.Labels` on the target
//! stage's image after every instruction ran (`toDispatchState`).
//!
//! Not responsible for: archives, local outputs and metadata files (`output`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use snapshotter::Digest;

use crate::image::{Descriptor, Manifest, media_type};
use crate::solver::stage::StageState;
use crate::store::{Store, StoreError};

/// Store config and manifest; returns the manifest's descriptor and the image ID (the config's
/// digest). `labels` (`--label`) are added to the config's labels, replacing the same keys.
///
/// The dates this build writes (the config's `created` and its history entries') are those of
/// the first build that made the same image, if the cache remembers one: a rebuild that changed
/// nothing gives the same image ID, as a cached BuildKit build does. With `SOURCE_DATE_EPOCH`
/// (`epoch`) the dates are the epoch's, always.
pub fn export(
    store: &Store,
    stage: &StageState,
    labels: &BTreeMap<String, String>,
    cache: &crate::cache::BuildCache,
    epoch: Option<u64>,
) -> Result<(Descriptor, Digest), StoreError> {
    let mut image_config = stage.config.clone();
    if !labels.is_empty() {
        image_config
            .config
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    // The image without this build's dates: what decides whether it was made before.
    let set_dates = |config: &mut crate::image::ImageConfig, date: Option<&str>| {
        for h in &mut config.history {
            if h.created.as_deref() == Some(stage.created.as_str()) {
                h.created = date.map(str::to_owned);
            }
        }
        config.created = date.map(str::to_owned);
    };
    let mut undated = image_config.clone();
    set_dates(&mut undated, None);
    let identity = Digest::of(&crate::image::canonical_json(&(&undated, &stage.layers)));
    // With SOURCE_DATE_EPOCH the dates are already the same in every build.
    let created = match epoch {
        Some(_) => stage.created.clone(),
        None => cache.stable_created(&identity, &stage.created),
    };
    set_dates(&mut image_config, Some(&created));
    let config = store.put_json(media_type::OCI_CONFIG, &image_config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config,
        layers: stage.layers.clone(),
        subject: None,
        annotations: Default::default(),
    };
    let image_id = manifest.config.digest;
    Ok((
        store.put_json(media_type::OCI_MANIFEST, &manifest)?,
        image_id,
    ))
}

/// A directory under the store for a build's temporary trees (a tar context from stdin, the
/// tree of a `type=tar` output): on the store's filesystem, never shared with other stores.
/// Each user makes its own temp dir inside and removes it when done.
// The store layout (`store/layout.rs`) should own this path; it lives here until it does.
pub fn scratch_dir(store: &Store) -> PathBuf {
    store.root().join("tmp")
}
