//! Incremental re-export (issue [C] item 5b) in the engine: when a step makes its layer again
//! after a small change, the compressed members that did not change are copied from the blob
//! the same step made last time instead of being compressed again. The result is byte for byte
//! what compressing from scratch gives (the compressor guarantees it, and checks every reused
//! member), so reuse is only ever a speed-up.
//!
//! "The same step" is keyed by the parent snapshot (its ChainID, or none) and the instruction
//! as written: a `COPY . /app` on the same base finds the blob it made before whatever the
//! context now holds. Kept under `<root>/layers/`:
//!
//! - `indexes/<blob hex>.json`: the member index of each layer blob kiln wrote (members' tar
//!   offsets, digests and hash midstates);
//! - `previous/<key hex>`: the blob digest the step with that key made last.
//!
//! Both are written atomically; anything missing, stale (a removed blob) or unreadable just
//! means no reuse. Deleting a blob deletes its index (`ContentStore::delete`).

use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use snapshotter::compress::{EncodeStats, EncodedLayer, MemberIndex, PreviousBlob};
use snapshotter::layer::Compression;
use snapshotter::{ChainId, Digest};

use crate::cache::write_atomic;
use crate::store::{ContentStore, Store};

/// The identity of a step for reuse: its parent and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepKey(String);

impl StepKey {
    pub fn new(parent: Option<&ChainId>, instruction: &str) -> Self {
        let parent = parent.map_or_else(|| "-".to_owned(), ToString::to_string);
        let mut h = Sha256::new();
        h.update(parent.as_bytes());
        h.update(b"\n");
        h.update(instruction.as_bytes());
        Self(hex::encode(h.finalize()))
    }
}

/// The store's record of layers and of which step made which.
#[derive(Debug)]
pub struct LayerHistory {
    dir: PathBuf,
    last: std::sync::Mutex<Option<EncodeStats>>,
}

impl LayerHistory {
    pub fn new(store: &Store) -> Self {
        Self {
            dir: store.layers_dir(),
            last: std::sync::Mutex::new(None),
        }
    }

    fn index_path(&self, blob: &Digest) -> PathBuf {
        self.dir
            .join("indexes")
            .join(format!("{}.json", blob.hex()))
    }

    fn key_path(&self, key: &StepKey) -> PathBuf {
        self.dir.join("previous").join(&key.0)
    }

    /// The blob the step made last, opened for reuse, if it is still there and was written
    /// with `compression`.
    pub fn previous(
        &self,
        key: &StepKey,
        content: &ContentStore,
        compression: Compression,
    ) -> Option<PreviousBlob> {
        let text = fs_err::read_to_string(self.key_path(key)).ok()?;
        let digest: Digest = text.trim().parse().ok()?;
        let index: MemberIndex =
            serde_json::from_slice(&fs_err::read(self.index_path(&digest)).ok()?).ok()?;
        if index.compression != compression || index.blob.0 != digest {
            return None;
        }
        let file = content.open_blob(&digest).ok()?.into_parts().0;
        PreviousBlob::from_file(file, &index).ok()
    }

    /// Remember the layer the step made (best effort: failing to record only loses reuse).
    pub fn record(&self, key: &StepKey, layer: &EncodedLayer) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(layer.stats);
        let Some(index) = &layer.index else {
            return;
        };
        let Ok(json) = serde_json::to_vec(index) else {
            return;
        };
        let _ = write_atomic(&self.index_path(&layer.digest.0), &json);
        let _ = write_atomic(&self.key_path(key), layer.digest.0.to_string().as_bytes());
    }

    /// Statistics of the last layer recorded (tests, diagnostics).
    pub fn last_stats(&self) -> Option<EncodeStats> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::inroot::InRoot;
    use crate::solver::rootfs::{self, LayerSettings, Reuse, StepLayer, Touched};
    use snapshotter::layer::LayerPath;
    use snapshotter::snapshot::StorageDriver;

    /// One step writing 400 files of 16 KiB (~6.5 MB of tar, several members), `changed`
    /// selecting which file gets different content.
    fn step(store: &Store, history: Option<&LayerHistory>, changed: usize) -> StepLayer {
        let sn =
            snapshotter::snapshot::open(&store.snapshots_dir(), Some(StorageDriver::Copy)).unwrap();
        rootfs::file_step::<rootfs::RootfsError>(
            &sn,
            store.content(),
            None,
            &[],
            LayerSettings {
                epoch: Some(1_000),
                compression: Compression::Gzip,
                reuse: history.map(|h| Reuse {
                    history: h,
                    instruction: "COPY . /data",
                }),
                seed: None,
            },
            &store.mounts_dir(),
            |root: &InRoot| {
                let mut touched = Touched::default();
                root.make_dir(&LayerPath::new("data").unwrap(), 0o755, 0, 0)?;
                for i in 0..400usize {
                    let path = LayerPath::new(&format!("data/f{i:04}")).unwrap();
                    // Incompressible-ish content so members are cut by size.
                    let mut body = Vec::with_capacity(16 << 10);
                    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    while body.len() < 16 << 10 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        body.extend_from_slice(&x.to_le_bytes());
                    }
                    if i == changed {
                        body[0] ^= 0xff;
                    }
                    root.write_file(&path, &mut &body[..], 0o644, 0, 0, 500)?;
                    touched.paths.insert(path);
                }
                Ok(Some(touched))
            },
        )
        .unwrap()
    }

    fn info(layer: StepLayer) -> snapshotter::layer::LayerInfo {
        match layer {
            StepLayer::Layer(info) => info,
            StepLayer::Unchanged => panic!("a layer"),
        }
    }

    #[test]
    fn a_step_made_again_reuses_its_unchanged_members_and_gives_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let history = LayerHistory::new(&store);
        info(step(&store, Some(&history), usize::MAX));
        let first = history.last_stats().unwrap();
        assert_eq!(first.reused_members, 0);
        assert!(first.members >= 4, "several members: {first:?}");

        // One file near the end changed: the members before it are reused.
        let again = info(step(&store, Some(&history), 390));
        let stats = history.last_stats().unwrap();
        assert!(
            stats.reused_members >= first.members / 2,
            "most members reused: {stats:?} of {first:?}"
        );

        // Byte for byte what a store that never saw the first layer makes.
        let fresh_dir = tempfile::tempdir().unwrap();
        let fresh_store = Store::open(fresh_dir.path()).unwrap();
        let fresh = info(step(&fresh_store, None, 390));
        assert_eq!(again, fresh);
        assert_eq!(
            store.content().read(&again.digest.0).unwrap(),
            fresh_store.content().read(&fresh.digest.0).unwrap()
        );
    }

    #[test]
    fn a_missing_or_foreign_previous_blob_means_no_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let history = LayerHistory::new(&store);
        let key = StepKey::new(None, "COPY . /data");
        assert!(
            history
                .previous(&key, store.content(), Compression::Gzip)
                .is_none()
        );
        let made = info(step(&store, Some(&history), usize::MAX));
        assert!(
            history
                .previous(&key, store.content(), Compression::Gzip)
                .is_some()
        );
        assert!(
            history
                .previous(&key, store.content(), Compression::Zstd)
                .is_none()
        );
        // The blob is gone (an rmi): no reuse, no error.
        fs_err::remove_file(dir.path().join("blobs/sha256").join(made.digest.0.hex())).unwrap();
        assert!(
            history
                .previous(&key, store.content(), Compression::Gzip)
                .is_none()
        );
    }
}
