//! `--cache-to`: write the records a build used, and their layer blobs, as one cache manifest
//! (see `share`) to a registry or a local OCI layout. Only what the destination lacks is sent:
//! a registry is asked for each blob first (`HEAD`, see `registry::push_manifest_all`), a
//! directory keeps the blobs it has.
//!
//! The manifest is canonical JSON of records sorted by key and layers sorted by digest, so an
//! export of the same records gives the same manifest digest.
//!
//! Not responsible for: choosing the records (`UsedRecords::select`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use snapshotter::Digest;

use super::layout::Layout;
use super::{CONFIG_MEDIA_TYPE, CacheConfig, CacheDest, CacheExport, UsedRecords};
use crate::archive::compression::Compression;
use crate::image::{Descriptor, Manifest, canonical_json, media_type};
use crate::registry::{
    self, BlobKind, RegistryError, RegistryOptions, TransferEvent, TransferObserver,
};
use crate::store::{Store, StoreError};

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// The cache manifest.
    pub manifest: Descriptor,
    /// Records exported.
    pub records: usize,
    /// Layer blobs the cache references.
    pub layers: usize,
    /// Of those, the ones sent (the destination lacked them).
    pub sent: usize,
    /// Records left out because their layer blob is no longer in the store.
    pub missing: usize,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("exporting the build cache to {dest}")]
    Registry {
        dest: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("exporting the build cache to {dest}")]
    Local {
        dest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("exporting the build cache: reading the store")]
    Store(#[from] StoreError),
}

/// Export `used` as `spec` says. `observer` sees a registry export's transfers.
pub fn export(
    store: &Store,
    used: &UsedRecords,
    spec: &CacheExport,
    opts: &RegistryOptions,
    observer: &dyn TransferObserver,
) -> Result<ExportSummary, ExportError> {
    // The blobs must stay while they are read, even those no image names.
    let _lease = store.lease()?;
    let mut records = Vec::new();
    let mut layers: BTreeMap<Digest, Descriptor> = BTreeMap::new();
    let mut missing = 0;
    for record in used.select(spec.mode) {
        if let Some(blob) = record.outcome.blob()
            && let std::collections::btree_map::Entry::Vacant(slot) = layers.entry(blob)
        {
            let Some(desc) = layer_descriptor(store, &blob)? else {
                missing += 1;
                continue;
            };
            slot.insert(desc);
        }
        records.push(record.clone());
    }
    records.sort_by_cached_key(|r| r.preimage.key());
    records.dedup_by_key(|r| r.preimage.key());
    let config = canonical_json(&CacheConfig { records });
    let record_count = config_records(&config);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.to_owned()),
        artifact_type: None,
        config: Descriptor::new(CONFIG_MEDIA_TYPE, Digest::of(&config), config.len() as u64),
        layers: layers.into_values().collect(),
        subject: None,
        annotations: BTreeMap::new(),
    };
    let manifest_bytes = canonical_json(&manifest);
    let manifest_desc = Descriptor::new(
        media_type::OCI_MANIFEST,
        Digest::of(&manifest_bytes),
        manifest_bytes.len() as u64,
    );
    let sent = match &spec.dest {
        CacheDest::Registry(reference) => {
            let fail = |source| ExportError::Registry {
                dest: reference.familiar(),
                source: Box::new(source),
            };
            // The push reads blobs from the store: the config and manifest go there for the
            // time of the push, and leave again if they were not there before.
            let mut added = Vec::new();
            for bytes in [&config, &manifest_bytes] {
                let digest = Digest::of(bytes);
                if !store.content().contains(&digest) {
                    store.content().put(bytes)?;
                    added.push(digest);
                }
            }
            let counting = Counting {
                inner: observer,
                sent: AtomicUsize::new(0),
            };
            let pushed = registry::push_manifest_all(
                store,
                &manifest_desc,
                &manifest,
                std::slice::from_ref(reference),
                opts,
                &counting,
            );
            for digest in added {
                let _ = store.content().delete(&digest);
            }
            pushed.map_err(fail)?;
            counting.sent.into_inner()
        }
        CacheDest::Local { dir, tag } => {
            let fail = |source| ExportError::Local {
                dest: spec.dest.to_string(),
                source,
            };
            let layout = Layout::create(dir).map_err(fail)?;
            let mut sent = 0;
            for desc in &manifest.layers {
                if !layout.has_blob(desc) {
                    layout
                        .copy_in(&store.content().path(&desc.digest), &desc.digest)
                        .map_err(fail)?;
                    sent += 1;
                }
            }
            layout.put_bytes(&config).map_err(fail)?;
            layout.put_bytes(&manifest_bytes).map_err(fail)?;
            layout.set_tag(tag, &manifest_desc).map_err(fail)?;
            sent
        }
    };
    Ok(ExportSummary {
        layers: manifest.layers.len(),
        manifest: manifest_desc,
        records: record_count,
        sent,
        missing,
    })
}

fn config_records(config: &[u8]) -> usize {
    serde_json::from_slice::<CacheConfig>(config).map_or(0, |c| c.records.len())
}

/// The descriptor of the layer blob `digest` of the store (its media type from its first
/// bytes), or `None` when the store no longer has it.
fn layer_descriptor(store: &Store, digest: &Digest) -> Result<Option<Descriptor>, StoreError> {
    if !store.content().contains(digest) {
        return Ok(None);
    }
    let mut file = store.content().open_blob(digest)?;
    let size = file.metadata()?.len();
    let media_type = match Compression::sniff(&mut file)?.0 {
        Compression::Zstd => media_type::OCI_LAYER_ZSTD,
        Compression::None => media_type::OCI_LAYER_TAR,
        _ => media_type::OCI_LAYER_GZIP,
    };
    Ok(Some(Descriptor::new(media_type, *digest, size)))
}

/// Passes events on and counts the layer uploads that started.
struct Counting<'a> {
    inner: &'a dyn TransferObserver,
    sent: AtomicUsize,
}

impl TransferObserver for Counting<'_> {
    fn event(&self, event: TransferEvent) {
        if matches!(
            event,
            TransferEvent::BlobStarted {
                kind: BlobKind::Layer,
                ..
            }
        ) {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.event(event);
    }
}
