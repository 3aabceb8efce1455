//! Export: write a finished stage's image config and OCI manifest into the store and point the
//! requested names at it.

use snapshotter::Digest;

use crate::image::{Descriptor, Manifest, media_type};
use crate::solver::stage::StageState;
use crate::store::{Store, StoreError};

/// Store config and manifest; returns the manifest's descriptor and the image ID (the config's
/// digest).
pub fn export(store: &Store, stage: &StageState) -> Result<(Descriptor, Digest), StoreError> {
    let mut image_config = stage.config.clone();
    image_config.created = Some(stage.created.clone());
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
