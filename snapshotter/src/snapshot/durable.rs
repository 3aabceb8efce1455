//! Crash-safe file primitives for snapshot metadata: atomic replace (temp file in the same
//! directory → fsync → rename → fsync directory) and the exclusive `flock` that serialises
//! metadata transactions between processes sharing a store.
//!
//! Not responsible for: what the files contain (see `meta.rs`).

use std::io::Write as _;
use std::path::Path;

use rustix::fs::FlockOperation;

use super::error::{Result, SnapshotError};

/// Prefix of temp files; anything with it in a metadata directory is garbage once the lock is held.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// What an atomic write guarantees after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// fsync the file, rename, fsync the directory: the new content survives a crash once the
    /// write returns.
    Durable,
    /// fsync the file, rename: after a crash the old or the new content, never a torn file.
    NotTorn,
    /// rename only: after a crash anything from the old content to the new, possibly torn;
    /// for hints that readers validate.
    BestEffort,
}

/// Replace `dir/file_name` with `bytes` atomically: readers see the old content or the new one,
/// never a mix. Callers hold the store lock, so the temp name needs no extra uniqueness.
pub(crate) fn write_atomic(
    dir: &Path,
    file_name: &str,
    bytes: &[u8],
    durability: Durability,
) -> Result<()> {
    let temp = dir.join(format_temp_name(file_name));
    let target = dir.join(file_name);
    let mut file = fs_err::File::create(&temp).map_err(SnapshotError::fs("create metadata"))?;
    file.write_all(bytes)
        .map_err(SnapshotError::fs("write metadata"))?;
    if durability != Durability::BestEffort {
        file.sync_all()
            .map_err(SnapshotError::fs("sync metadata"))?;
    }
    drop(file);
    fs_err::rename(&temp, &target).map_err(SnapshotError::fs("publish metadata"))?;
    match durability {
        Durability::Durable => fsync_dir(dir),
        Durability::NotTorn | Durability::BestEffort => Ok(()),
    }
}

fn format_temp_name(file_name: &str) -> String {
    let mut name = String::with_capacity(TEMP_PREFIX.len() + file_name.len());
    name.push_str(TEMP_PREFIX);
    name.push_str(file_name);
    name
}

/// Flush the whole filesystem holding `path` (`syncfs(2)`; reports writeback errors since Linux
/// 5.8): one journal commit for a tree whose every file is dirty.
pub(crate) fn syncfs(path: &Path) -> Result<()> {
    let handle = fs_err::File::open(path).map_err(SnapshotError::fs("open snapshot directory"))?;
    rustix::fs::syncfs(&handle).map_err(SnapshotError::syscall("syncfs", path))
}

/// fsync a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let handle = fs_err::File::open(dir).map_err(SnapshotError::fs("open directory"))?;
    handle
        .sync_all()
        .map_err(SnapshotError::fs("sync directory"))
}

/// An exclusive `flock` on the store's lock file, released on drop (closing the descriptor).
#[derive(Debug)]
pub(crate) struct LockGuard {
    file: fs_err::File,
}

impl LockGuard {
    /// Block until the exclusive lock on `path` is held (creating the file if needed).
    pub(crate) fn acquire(path: &Path) -> Result<Self> {
        let file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(SnapshotError::fs("open snapshot lock"))?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .map_err(SnapshotError::syscall("lock", path))?;
        Ok(Self { file })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock too; unlocking first makes the release
        // immediate even if the fd were duplicated. A failure here has no useful recovery.
        let _ = rustix::fs::flock(&self.file, FlockOperation::Unlock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "a.json", b"one", Durability::Durable).unwrap();
        write_atomic(dir.path(), "a.json", b"two", Durability::NotTorn).unwrap();
        assert_eq!(fs_err::read(dir.path().join("a.json")).unwrap(), b"two");
        let names: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.json"]);
    }

    #[test]
    fn lock_is_exclusive_between_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let guard = LockGuard::acquire(&path).unwrap();
        let other = fs_err::File::open(&path).unwrap();
        assert!(rustix::fs::flock(&other, FlockOperation::NonBlockingLockExclusive).is_err());
        drop(guard);
        rustix::fs::flock(&other, FlockOperation::NonBlockingLockExclusive).unwrap();
    }
}
