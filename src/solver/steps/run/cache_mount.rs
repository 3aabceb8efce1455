//! RUN `--mount=type=cache` directories, kept in the store (`<root>/cache/mounts/<key>/`),
//! never in layers or cache keys.
//!
//! Each cache id has a directory `data/` (created with the mount's mode, uid and gid the first
//! time) and a lock file. `sharing=shared` holds the lock shared while a step uses the cache;
//! `locked` holds it exclusively (a second build waits); `private` takes it exclusively if it
//! can and otherwise gets a fresh, empty directory that is discarded after the step (BuildKit
//! gives each concurrent private user its own instance). `kiln builder prune` takes each lock
//! exclusively without waiting and deletes the caches nobody uses.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use frontend::instructions::mount::CacheSharing;
use rustix::fs::{FlockOperation, flock};
use sha2::{Digest as _, Sha256};

/// A cache directory in use by one step; the lock (or the private instance) is released on drop.
#[derive(Debug)]
pub struct CacheLease {
    path: PathBuf,
    _lock: Option<File>,
    _private: Option<tempfile::TempDir>,
}

impl CacheLease {
    /// The directory to mount.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn key_of(id: &str) -> String {
    hex::encode(&Sha256::digest(id.as_bytes())[..16])
}

fn lock_file(path: &Path) -> std::io::Result<File> {
    Ok(fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?
        .into_parts()
        .0)
}

fn make_data_dir(path: &Path, mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
            // The umask may have cleared bits the mount asked for.
            fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Take the cache `id` for one step.
pub fn acquire(
    dir: &Path,
    id: &str,
    sharing: CacheSharing,
    mode: u32,
    uid: u32,
    gid: u32,
) -> std::io::Result<CacheLease> {
    let base = dir.join(key_of(id));
    fs_err::create_dir_all(&base)?;
    let lock = lock_file(&base.join("lock"))?;
    let data = base.join("data");
    match sharing {
        CacheSharing::Shared => flock(&lock, FlockOperation::LockShared)?,
        CacheSharing::Locked => flock(&lock, FlockOperation::LockExclusive)?,
        CacheSharing::Private => {
            if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
                let private = tempfile::Builder::new()
                    .prefix("private-")
                    .tempdir_in(&base)?;
                let path = private.path().join("data");
                make_data_dir(&path, mode, uid, gid)?;
                return Ok(CacheLease {
                    path,
                    _lock: None,
                    _private: Some(private),
                });
            }
        }
    }
    make_data_dir(&data, mode, uid, gid)?;
    Ok(CacheLease {
        path: data,
        _lock: Some(lock),
        _private: None,
    })
}

/// What a prune removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub caches: usize,
    pub bytes: u64,
    /// Caches in use by a running build, left alone.
    pub busy: usize,
}

/// Delete every cache mount no build is using.
pub fn prune(dir: &Path) -> std::io::Result<Pruned> {
    let mut out = Pruned::default();
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let base = entry?.path();
        let lock = lock_file(&base.join("lock"))?;
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            out.busy += 1;
            continue;
        }
        out.bytes += disk_usage(&base);
        // Rename first so a half-deleted cache is never mounted.
        let doomed = dir.join(format!(".deleting-{}", key_suffix(&base)));
        fs_err::rename(&base, &doomed)?;
        fs_err::remove_dir_all(&doomed)?;
        out.caches += 1;
    }
    Ok(out)
}

fn key_suffix(base: &Path) -> String {
    base.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs_err::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir()
        && let Ok(entries) = fs_err::read_dir(path)
    {
        for e in entries.flatten() {
            total += disk_usage(&e.path());
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn shared_locked_private_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let a = acquire(dir.path(), "/go/pkg", CacheSharing::Shared, 0o750, uid, gid).unwrap();
        assert_eq!(fs_err::metadata(a.path()).unwrap().mode() & 0o7777, 0o750);
        fs_err::write(a.path().join("f"), b"kept").unwrap();
        let b = acquire(dir.path(), "/go/pkg", CacheSharing::Shared, 0o755, uid, gid).unwrap();
        assert_eq!(a.path(), b.path(), "shared users see one directory");
        // A private user while others hold it gets its own, empty directory.
        let p = acquire(
            dir.path(),
            "/go/pkg",
            CacheSharing::Private,
            0o755,
            uid,
            gid,
        )
        .unwrap();
        assert_ne!(p.path(), a.path());
        assert!(!p.path().join("f").exists());
        // Busy caches survive a prune.
        assert_eq!(prune(dir.path()).unwrap().busy, 1);
        drop((a, b, p));
        let again = acquire(dir.path(), "/go/pkg", CacheSharing::Locked, 0o755, uid, gid).unwrap();
        assert_eq!(fs_err::read(again.path().join("f")).unwrap(), b"kept");
        drop(again);
        let pruned = prune(dir.path()).unwrap();
        assert_eq!((pruned.caches, pruned.busy), (1, 0));
        assert!(pruned.bytes > 0);
        let fresh = acquire(dir.path(), "/go/pkg", CacheSharing::Shared, 0o755, uid, gid).unwrap();
        assert!(
            !fresh.path().join("f").exists(),
            "pruned caches start empty"
        );
    }
}
