//! `kiln builder prune`: remove build cache records and the storage only they hold (layer
//! blobs no image uses, and the unpacked snapshots nothing needs any more).
//!
//! - default: "dangling" records, those whose layer is not part of a tagged image (results of
//!   intermediate stages and of earlier versions of steps), and records of no layer;
//! - `--all`: every record;
//! - `--keep-storage N`: among those, the least recently used go first, until the blobs held
//!   only by the cache take at most N bytes.
//!
//! The store's content lock is held exclusively throughout, so no build (they hold it shared)
//! is between looking a record up and tagging its result.
//!
//! Not responsible for: RUN cache mounts (`solver::steps::run::cache_mount::prune`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::SystemTime;

use snapshotter::snapshot::{CommittedName, Kind, SnapshotRef, Snapshotter};
use snapshotter::{ChainId, DiffId, Digest};

use super::{Record, read_record};
use crate::store::{Store, StoreError};

/// What to remove.
#[derive(Debug, Clone, Copy, Default)]
pub struct PruneOptions {
    pub all: bool,
    pub keep_storage: Option<u64>,
}

/// What was removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub records: usize,
    pub blobs: usize,
    pub snapshots: usize,
    /// Bytes of the deleted blobs (snapshots' disk usage is not counted).
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the build cache in {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("removing unused snapshots")]
    Snapshot(#[source] Box<snapshotter::snapshot::SnapshotError>),
}

struct Entry {
    path: PathBuf,
    used: SystemTime,
    record: Record,
}

/// Remove build cache per `options`.
pub fn prune(store: &Store, options: PruneOptions) -> Result<Pruned, PruneError> {
    let _exclusive = store.exclusive_content_lock()?;
    let dir = store.build_cache_dir();
    let mut entries = load_records(&dir.join("keys"))?;
    // Blobs and ChainIDs of images (tagged or untagged) stay whatever happens.
    let mut image_blobs = BTreeSet::new();
    let mut needed_chains: BTreeSet<ChainId> = BTreeSet::new();
    for manifest in store.all_refs()?.manifests() {
        if let Ok(image) = store.image(&manifest) {
            image_blobs.extend(image.blobs());
            let diff_ids: Vec<DiffId> = image.config.rootfs.diff_ids.clone();
            for i in 1..=diff_ids.len() {
                needed_chains.extend(ChainId::of_stack(&diff_ids[..i]));
            }
        }
    }
    let held_only_by_cache =
        |e: &Entry| e.record.outcome.blob().filter(|b| !image_blobs.contains(b));
    // Candidates, least recently used first.
    entries.sort_by_key(|e| e.used);
    let (mut candidates, mut kept): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| {
        options.all || held_only_by_cache(e).is_some() || e.record.outcome.blob().is_none()
    });
    if let Some(limit) = options.keep_storage {
        // Keep the most recently used candidates that fit in the limit, with what is kept anyway.
        let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
        for e in &kept {
            if let Some(b) = held_only_by_cache(e) {
                sizes.insert(b, store.content().size(&b).unwrap_or(0));
            }
        }
        let mut total: u64 = sizes.values().sum();
        let mut keep_back = Vec::new();
        while let Some(e) = candidates.pop() {
            let extra = match held_only_by_cache(&e) {
                Some(b) if !sizes.contains_key(&b) => store.content().size(&b).unwrap_or(0),
                _ => 0,
            };
            if total + extra > limit {
                candidates.push(e);
                break;
            }
            if let Some(b) = held_only_by_cache(&e) {
                sizes.insert(b, extra);
            }
            total += extra;
            keep_back.push(e);
        }
        kept.extend(keep_back);
    }
    let mut pruned = Pruned::default();
    for e in &candidates {
        match fs_err::remove_file(&e.path) {
            Ok(()) => pruned.records += 1,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PruneError::Io {
                    path: e.path.clone(),
                    source,
                });
            }
        }
    }
    // Blobs the removed records held that nothing else needs.
    let kept_blobs: BTreeSet<Digest> = kept
        .iter()
        .filter_map(|e| e.record.outcome.blob())
        .collect();
    let freed: BTreeSet<Digest> = candidates
        .iter()
        .filter_map(held_only_by_cache)
        .filter(|b| !kept_blobs.contains(b))
        .collect();
    for blob in freed {
        let size = store.content().size(&blob).unwrap_or(0);
        if store.content().contains(&blob) {
            store.content().delete(&blob)?;
            pruned.blobs += 1;
            pruned.bytes += size;
        }
    }
    // Snapshots: those of images and of the kept records (their parents and results) stay.
    for e in &kept {
        if let Some(serde_json::Value::String(p)) = e.record.preimage.get("parent")
            && let Ok(chain) = p.parse::<ChainId>()
        {
            needed_chains.insert(chain);
            if let Some(diff_id) = e.record.outcome.layer().map(|l| l.diff_id) {
                needed_chains.insert(ChainId(Digest::of(format!("{chain} {diff_id}").as_bytes())));
            }
        } else if let Some(diff_id) = e.record.outcome.layer().map(|l| l.diff_id) {
            needed_chains.insert(ChainId(diff_id.0));
        }
    }
    pruned.snapshots = prune_snapshots(store, &needed_chains)?;
    // Inputs listings (explanations) of removed records; with --all, every remembered date
    // and step place too.
    let listed: BTreeSet<String> = kept
        .iter()
        .filter_map(|e| match e.record.preimage.get("inputs") {
            Some(serde_json::Value::String(d)) => d.parse::<Digest>().ok().map(|d| d.hex()),
            _ => None,
        })
        .collect();
    remove_files_in(&dir.join("sources"), |name| !listed.contains(name));
    // What the COPYs of removed records wrote (seeds of their next runs).
    let layers: BTreeSet<String> = kept
        .iter()
        .filter_map(|e| e.record.outcome.layer().map(|l| l.diff_id.0.hex()))
        .collect();
    remove_files_in(&dir.join("copies"), |name| !layers.contains(name));
    if options.all {
        remove_files_in(&dir.join("created"), |_| true);
        remove_files_in(&dir.join("steps"), |_| true);
    }
    Ok(pruned)
}

/// Best effort: remove the files of `dir` whose names `doomed` picks.
fn remove_files_in(dir: &std::path::Path, doomed: impl Fn(&str) -> bool) {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_str().is_some_and(&doomed) {
            let _ = fs_err::remove_file(e.path());
        }
    }
}

fn load_records(keys: &std::path::Path) -> Result<Vec<Entry>, PruneError> {
    let io = |source| PruneError::Io {
        path: keys.to_owned(),
        source,
    };
    let mut out = Vec::new();
    let dir = match fs_err::read_dir(keys) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(e)),
    };
    for entry in dir {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let used = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match read_record(&path) {
            Some(record) => out.push(Entry { path, used, record }),
            // Unreadable or from another key version: never a hit, so always removed.
            None => {
                let _ = fs_err::remove_file(&path);
            }
        }
    }
    Ok(out)
}

/// Remove committed snapshots (ChainID-named) not in `needed` and not below a needed one,
/// children before parents; returns how many went.
fn prune_snapshots(store: &Store, needed: &BTreeSet<ChainId>) -> Result<usize, PruneError> {
    let dir = store.snapshots_dir();
    if !dir.exists() {
        return Ok(0);
    }
    let snap = |e| PruneError::Snapshot(Box::new(e));
    snapshotter::snapshot::sweep_stale_mounts(&store.mounts_dir()).map_err(snap)?;
    let sn = snapshotter::snapshot::open(&dir, None).map_err(snap)?;
    let infos = sn.walk().map_err(snap)?;
    let parent_of: BTreeMap<String, Option<CommittedName>> = infos
        .iter()
        .map(|i| (i.name.to_string(), i.parent.clone()))
        .collect();
    // Everything below a needed snapshot, or below any active one, is needed too.
    let mut keep: BTreeSet<String> = BTreeSet::new();
    for i in &infos {
        let wanted = match i.kind {
            Kind::Committed => CommittedName::new(i.name.to_string())
                .ok()
                .and_then(|n| n.chain_id())
                .is_none_or(|c| needed.contains(&c)),
            Kind::Active | Kind::View => true,
        };
        if wanted {
            let mut at = Some(i.name.to_string());
            while let Some(name) = at {
                if !keep.insert(name.clone()) {
                    break;
                }
                at = parent_of
                    .get(&name)
                    .and_then(|p| p.as_ref().map(ToString::to_string));
            }
        }
    }
    let mut removed = 0;
    loop {
        let mut progress = false;
        let infos = sn.walk().map_err(snap)?;
        let parents: BTreeSet<String> = infos
            .iter()
            .filter_map(|i| i.parent.as_ref().map(ToString::to_string))
            .collect();
        for i in &infos {
            let name = i.name.to_string();
            if i.kind != Kind::Committed || keep.contains(&name) || parents.contains(&name) {
                continue;
            }
            let Ok(committed) = CommittedName::new(name.clone()) else {
                continue;
            };
            sn.remove(SnapshotRef::Committed(&committed))
                .map_err(snap)?;
            removed += 1;
            progress = true;
        }
        if !progress {
            break;
        }
    }
    Ok(removed)
}
