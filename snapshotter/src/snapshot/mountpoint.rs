//! Temporary mountpoints that carry their owner, and the sweep that unmounts those whose owner
//! is gone.
//!
//! A kiln process that is killed (SIGKILL, OOM) while a step's rootfs is mounted leaves the
//! mount behind: nothing in the process can undo it any more. So every mountpoint made by
//! [`mountpoint_in`] is named for its owner, `rootfs-<pid>-<start>-<n>`, where `<start>` is the
//! owner's start time in clock ticks (field 22 of `/proc/<pid>/stat`, the same identity the
//! snapshot records use, so a later process that reuses the pid is not taken for the owner).
//! [`sweep_stale_mounts`] then finds, in `/proc/self/mountinfo`, every mount at or below such a
//! directory whose owner no longer runs, detaches it (`umount2(MNT_DETACH)`: a mount still in
//! use by a leftover child process goes away as soon as that process lets go) and removes the
//! empty directory.
//!
//! The engine calls the sweep before it first mounts anything under its mounts directory
//! (`Snapshots::get` in the solver). Directories that do not follow the naming (older kiln
//! versions, other tools) are never touched, mounted or not.
//!
//! Not responsible for: mounting (`mounts.rs`), or mounts in other mount namespaces (a sandbox's
//! own mounts die with its namespace). Pids are those of the caller's pid namespace; a mounts
//! directory shared by processes of different pid namespaces must not be swept.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::io::Errno;
use rustix::mount::UnmountFlags;

use super::error::{Result, SnapshotError};
use super::meta::Owner;
use crate::diff::mountinfo::unescape_bytes;

const PREFIX: &str = "rootfs-";
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// An empty directory to mount a rootfs on, named for this process; removed (if empty) on drop.
///
/// Drop the [`super::MountGuard`] of a mount on it first (declare the mountpoint before the
/// guard): a directory that still has a mount on it is left for the sweep.
#[derive(Debug)]
pub struct TempMountpoint {
    path: PathBuf,
}

impl TempMountpoint {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempMountpoint {
    fn drop(&mut self) {
        // Best effort: EBUSY (still mounted) or ENOTEMPTY leave it to the sweep.
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Create `dir` if needed and a new empty mountpoint directory in it (mode 0700), named
/// `rootfs-<pid>-<start>-<n>` for this process.
pub fn mountpoint_in(dir: &Path) -> Result<TempMountpoint> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    fs_err::create_dir_all(dir).map_err(SnapshotError::fs("create the mounts directory"))?;
    let owner = Owner::current().ok_or_else(|| SnapshotError::Syscall {
        action: "read this process's start time from",
        path: PathBuf::from("/proc/self/stat"),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{PREFIX}{}-{}-{n}", owner.pid, owner.start_ticks));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(TempMountpoint { path }),
            // A name left by an earlier process with our pid and start time cannot exist, but a
            // stale directory of this very process (a leaked guard) may: take the next number.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(SnapshotError::Syscall {
                    action: "create mountpoint",
                    path,
                    source,
                });
            }
        }
    }
}

/// What [`sweep_stale_mounts`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Mounts detached, deepest first.
    pub unmounted: Vec<PathBuf>,
    /// Mountpoint directories of dead owners that were removed.
    pub removed: Vec<PathBuf>,
}

/// Detach every mount at or below a `rootfs-<pid>-<start>-<n>` directory of `dir` whose owner
/// no longer runs, and remove such directories once empty. Mounts and directories of live
/// owners, and names kiln did not make, are left alone. A missing `dir` is an empty sweep.
pub fn sweep_stale_mounts(dir: &Path) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let dir = match dir.canonicalize() {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(source) => {
            return Err(SnapshotError::Syscall {
                action: "resolve the mounts directory",
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mountinfo = match fs_err::read_to_string(MOUNTINFO) {
        Ok(text) => text,
        // No procfs: nothing can be attributed, so nothing is touched.
        Err(_) => return Ok(report),
    };
    let mut stale: Vec<PathBuf> = mountpoints(&mountinfo)
        .filter(|mountpoint| {
            mountpoint
                .strip_prefix(&dir)
                .ok()
                .and_then(|rel| rel.components().next())
                .and_then(|first| parse_owner(first.as_os_str()))
                .is_some_and(|owner| !owner.is_alive())
        })
        .collect();
    // Deepest first; a path mounted twice is listed (and detached) twice.
    stale.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for mountpoint in stale {
        match rustix::mount::unmount(&mountpoint, UnmountFlags::DETACH) {
            // EINVAL: no longer a mountpoint (detached with its parent already).
            Ok(()) | Err(Errno::INVAL | Errno::NOENT) => report.unmounted.push(mountpoint),
            Err(errno) => {
                return Err(SnapshotError::Unmount {
                    target: mountpoint,
                    source: errno.into(),
                });
            }
        }
    }
    report.unmounted.dedup();
    let entries = fs_err::read_dir(&dir).map_err(SnapshotError::fs("list the mounts directory"))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if parse_owner(&name).is_some_and(|owner| !owner.is_alive()) {
            let path = entry.path();
            // Not recursive: a mountpoint holds nothing of its own; anything else in it is not
            // ours to delete.
            if std::fs::remove_dir(&path).is_ok() {
                report.removed.push(path);
            }
        }
    }
    Ok(report)
}

/// The owner encoded in a mountpoint name made by [`mountpoint_in`].
fn parse_owner(name: &OsStr) -> Option<Owner> {
    let rest = name.to_str()?.strip_prefix(PREFIX)?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start_ticks = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts.next().is_none().then_some(Owner { pid, start_ticks })
}

/// The mount points listed in a `mountinfo` text (field 5, octal escapes decoded).
fn mountpoints(mountinfo: &str) -> impl Iterator<Item = PathBuf> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(OsStr::from_bytes(&unescape_bytes(field))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_our_names() {
        let owner = parse_owner(OsStr::new("rootfs-42-1234-7")).unwrap();
        assert_eq!((owner.pid, owner.start_ticks), (42, 1234));
        for other in [
            "rootfs-abc123",
            "rootfs-42-1234",
            "rootfs-42-1234-7-8",
            "rootfs-42-x-7",
            "other-42-1234-7",
            ".probe-42-1",
        ] {
            assert!(parse_owner(OsStr::new(other)).is_none(), "{other}");
        }
    }

    #[test]
    fn reads_escaped_mountpoints() {
        let text = "36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 98:0 / /x\\134y rw - tmpfs tmpfs rw\n";
        let got: Vec<PathBuf> = mountpoints(text).collect();
        assert_eq!(got, [PathBuf::from("/mnt/a b"), PathBuf::from("/x\\y")]);
    }

    #[test]
    fn names_carry_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let mp = mountpoint_in(&dir.path().join("mnt")).unwrap();
        let owner = parse_owner(mp.path().file_name().unwrap()).unwrap();
        assert_eq!(owner.pid, std::process::id());
        assert!(owner.is_alive());
        let second = mountpoint_in(&dir.path().join("mnt")).unwrap();
        assert_ne!(mp.path(), second.path());
        let path = mp.path().to_owned();
        drop(mp);
        assert!(!path.exists());
    }
}
