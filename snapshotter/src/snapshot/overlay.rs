//! The overlay driver: how snapshots map onto overlayfs layers, and the probe that decides
//! whether overlayfs works on the store's filesystem.
//!
//! - A committed snapshot's `fs/` is one lower layer; a snapshot's lowerdirs are its ancestors'
//!   `fs/` directories, nearest parent first (`Documentation/filesystems/overlayfs.rst`,
//!   "Multiple lower layers").
//! - An active snapshot's `fs/` is the upperdir and `work/` the workdir, on the same filesystem
//!   as required. The upperdir holds exactly the snapshot's changes, with overlayfs whiteouts
//!   (character devices 0/0) and opaque directories (`trusted.overlay.opaque`), so the differ
//!   reads it without walking the merged tree.
//! - Without a parent there is nothing to overlay: the active snapshot is a bind mount of its
//!   `fs/` (containerd does the same), whose content is then all additions.
//! - A view of one layer is a read-only bind of that layer; of several, a read-only overlay with
//!   lowerdirs only; of nothing, a read-only bind of an empty directory.
//!
//! Not responsible for: the mount calls and their size limits (`mounts.rs`) or metadata.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FileType;

use super::error::{Result, SnapshotError};
use super::meta::{Layout, Record};
use super::mounts::{Access, BindMount, Mounts, OverlayMount, UpperDir};
use super::{ActiveKey, Changes, Kind, tree};

/// Most lower layers overlayfs stacks (`OVL_MAX_STACK` in `fs/overlayfs/params.h`).
pub const MAX_LAYERS: usize = 500;

/// Refuse a stack overlayfs could never mount, at prepare rather than at mount time.
pub(crate) fn check_depth(key: &ActiveKey, ancestors: &[&Record]) -> Result<()> {
    if ancestors.len() > MAX_LAYERS {
        return Err(SnapshotError::TooManyLayers {
            key: key.clone(),
            layers: ancestors.len(),
            max: MAX_LAYERS,
        });
    }
    Ok(())
}

/// Create the directories of a new active snapshot or view.
pub(crate) fn materialize(layout: &Layout, record: &Record) -> Result<()> {
    fs_err::create_dir_all(layout.fs_dir(record.id))
        .map_err(SnapshotError::fs("create snapshot directory"))?;
    if record.kind == Kind::Active && record.parent.is_some() {
        fs_err::create_dir(layout.work_dir(record.id))
            .map_err(SnapshotError::fs("create overlay workdir"))?;
    }
    Ok(())
}

pub(crate) fn mounts(layout: &Layout, record: &Record, ancestors: &[&Record]) -> Mounts {
    let lowerdirs: Vec<_> = ancestors.iter().map(|a| layout.fs_dir(a.id)).collect();
    let own = layout.fs_dir(record.id);
    match (record.kind, lowerdirs.len()) {
        (Kind::Active, 0) => Mounts::Bind(BindMount {
            source: own,
            access: Access::ReadWrite,
        }),
        (Kind::Active, _) => Mounts::Overlay(OverlayMount {
            lowerdirs,
            upper: Some(UpperDir {
                upperdir: own,
                workdir: layout.work_dir(record.id),
            }),
        }),
        (_, 0) => Mounts::Bind(BindMount {
            source: own,
            access: Access::ReadOnly,
        }),
        (_, 1) => Mounts::Bind(BindMount {
            source: lowerdirs.into_iter().next().unwrap_or(own),
            access: Access::ReadOnly,
        }),
        (_, _) => Mounts::Overlay(OverlayMount {
            lowerdirs,
            upper: None,
        }),
    }
}

pub(crate) fn changes(layout: &Layout, record: &Record) -> Changes {
    Changes::Upper(layout.fs_dir(record.id))
}

/// After commit the workdir is scratch only; remove it so a layer is just its tree.
pub(crate) fn after_commit(layout: &Layout, id: u64) -> Result<()> {
    tree::remove_tree(&layout.work_dir(id))
}

/// Check that overlayfs works in `root`: mount two lowers and an upper, read through, delete a
/// lower file (creating a whiteout in the upper), unmount. Catches a missing module, missing
/// privileges, and filesystems that cannot be an upper layer (overlayfs itself, some FUSE and
/// network filesystems).
pub(crate) fn probe(root: &Path) -> Result<()> {
    sweep_stale_probes(root)?;
    let dir = root.join(probe_dir_name());
    let result = probe_in(root, &dir);
    let cleanup = tree::remove_tree(&dir);
    result.and(cleanup)
}

const PROBE_PREFIX: &str = ".probe-";

fn probe_dir_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut name = String::from(PROBE_PREFIX);
    name.push_str(&std::process::id().to_string());
    name.push('-');
    name.push_str(&COUNTER.fetch_add(1, Ordering::Relaxed).to_string());
    name
}

fn probe_in(root: &Path, dir: &Path) -> Result<()> {
    let [lower1, lower2, upper, work, merged] =
        ["l1", "l2", "upper", "work", "merged"].map(|d| dir.join(d));
    for d in [&lower1, &lower2, &upper, &work, &merged] {
        fs_err::create_dir_all(d).map_err(SnapshotError::fs("create overlay probe"))?;
    }
    fs_err::write(lower2.join("a"), b"a").map_err(SnapshotError::fs("create overlay probe"))?;
    fs_err::write(lower1.join("b"), b"b").map_err(SnapshotError::fs("create overlay probe"))?;
    let mounts = Mounts::Overlay(OverlayMount {
        lowerdirs: vec![lower1, lower2],
        upper: Some(UpperDir {
            upperdir: upper.clone(),
            workdir: work,
        }),
    });
    let guard = mounts.mount_at(&merged)?;
    let misbehaves = |what| SnapshotError::OverlayMisbehaves {
        root: root.to_owned(),
        what,
    };
    let read_a = fs_err::read(merged.join("a")).map_err(SnapshotError::fs("read overlay probe"))?;
    if read_a != b"a" || !merged.join("b").exists() {
        return Err(misbehaves(
            "the merged tree does not show both lower layers",
        ));
    }
    fs_err::remove_file(merged.join("a")).map_err(SnapshotError::fs("delete in overlay probe"))?;
    if merged.join("a").exists() {
        return Err(misbehaves("a deleted file is still visible"));
    }
    guard.unmount()?;
    let whiteout = fs_err::symlink_metadata(upper.join("a"))
        .map_err(SnapshotError::fs("inspect overlay probe whiteout"))?;
    let mode = std::os::unix::fs::MetadataExt::mode(&whiteout);
    if FileType::from_raw_mode(mode) != FileType::CharacterDevice {
        return Err(misbehaves(
            "a deletion did not leave a whiteout device in the upperdir",
        ));
    }
    Ok(())
}

/// Probe directories of processes that died mid-probe (a mount may still sit on `merged`).
fn sweep_stale_probes(root: &Path) -> Result<()> {
    let Ok(entries) = fs_err::read_dir(root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PROBE_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive {
            let merged = entry.path().join("merged");
            let _ = rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH);
            tree::remove_tree(&entry.path())?;
        }
    }
    Ok(())
}
