//! Whole-tree file operations for snapshots: a faithful copy (for the copy driver), disk usage,
//! and removal.
//!
//! The copy preserves everything a layer diff can observe: file type, content, mode (including
//! setuid/setgid/sticky), numeric owner, extended attributes (including `security.capability`),
//! hard links within the tree, device numbers, and access/modification times. File contents are
//! reflinked (`FICLONE`) where the filesystem supports it (btrfs, xfs, bcachefs), otherwise copied
//! in the kernel with `copy_file_range(2)`, otherwise through userspace. Symlinks are never
//! followed, so a tree cannot make the copy escape it.
//!
//! Not responsible for: deciding what to copy (the drivers), or diffs.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::OsStr;
use std::fs::Permissions;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::Usage;
use super::error::{Result, SnapshotError};

/// Copy the tree under `src` into the existing empty directory `dst` (whose own metadata is set
/// from `src` last).
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut links = HashMap::new();
    copy_dir_contents(src, dst, &mut links)?;
    let meta = fs_err::symlink_metadata(src).map_err(SnapshotError::fs("stat copy source"))?;
    apply_metadata(src, dst, &meta)
}

fn copy_dir_contents(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    for entry in fs_err::read_dir(src).map_err(SnapshotError::fs("list copy source"))? {
        let entry = entry.map_err(SnapshotError::fs("list copy source"))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta =
            fs_err::symlink_metadata(&from).map_err(SnapshotError::fs("stat copy source"))?;
        let file_type = FileType::from_raw_mode(meta.mode());
        if file_type != FileType::Directory && meta.nlink() > 1 {
            match links.entry((meta.dev(), meta.ino())) {
                Entry::Occupied(first) => {
                    fs_err::hard_link(first.get(), &to)
                        .map_err(SnapshotError::fs("recreate hard link"))?;
                    continue;
                }
                Entry::Vacant(slot) => {
                    slot.insert(to.clone());
                }
            }
        }
        match file_type {
            FileType::Directory => {
                fs_err::create_dir(&to).map_err(SnapshotError::fs("create directory copy"))?;
                copy_dir_contents(&from, &to, links)?;
            }
            FileType::RegularFile => copy_file_data(&from, &to)?,
            FileType::Symlink => {
                let target = fs_err::read_link(&from).map_err(SnapshotError::fs("read symlink"))?;
                fs_err::os::unix::fs::symlink(&target, &to)
                    .map_err(SnapshotError::fs("create symlink copy"))?;
            }
            FileType::CharacterDevice
            | FileType::BlockDevice
            | FileType::Fifo
            | FileType::Socket => {
                rustix::fs::mknodat(
                    CWD,
                    &to,
                    file_type,
                    Mode::from_raw_mode(meta.mode() & 0o7777),
                    meta.rdev(),
                )
                .map_err(SnapshotError::syscall("create special file", &to))?;
            }
            FileType::Unknown => {
                return Err(SnapshotError::UnsupportedFileType {
                    path: from,
                    mode: meta.mode(),
                });
            }
        }
        // Directories get their metadata after their children so that their mtime is final.
        apply_metadata(&from, &to, &meta)?;
    }
    Ok(())
}

/// Copy a regular file's bytes: reflink, else `copy_file_range`, else read/write.
fn copy_file_data(from: &Path, to: &Path) -> Result<()> {
    let src = fs_err::File::open(from).map_err(SnapshotError::fs("open copy source"))?;
    let mut dst = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(SnapshotError::fs("create file copy"))?;
    if rustix::fs::ioctl_ficlone(&dst, &src).is_ok() {
        return Ok(());
    }
    let len = src
        .metadata()
        .map_err(SnapshotError::fs("stat copy source"))?
        .len();
    let mut copied = 0u64;
    while copied < len {
        let chunk = usize::try_from(len - copied)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(&src, None, &dst, None, chunk) {
            Ok(0) => break,
            Ok(n) => copied += n as u64,
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) if copied == 0 => {
                let mut src = src;
                io::copy(&mut src, &mut dst).map_err(SnapshotError::fs("copy file contents"))?;
                return Ok(());
            }
            Err(errno) => return Err(SnapshotError::syscall("copy_file_range into", to)(errno)),
        }
    }
    Ok(())
}

/// Owner, then mode (chown clears setuid bits), then xattrs (chown clears
/// `security.capability`), then times (every earlier step touches ctime/mtime).
fn apply_metadata(from: &Path, to: &Path, meta: &std::fs::Metadata) -> Result<()> {
    let file_type = FileType::from_raw_mode(meta.mode());
    rustix::fs::chownat(
        CWD,
        to,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(SnapshotError::syscall("set owner of", to))?;
    if file_type != FileType::Symlink {
        fs_err::set_permissions(to, Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(SnapshotError::fs("set mode of copy"))?;
    }
    copy_xattrs(from, to)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(CWD, to, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(SnapshotError::syscall("set times of", to))
}

fn copy_xattrs(from: &Path, to: &Path) -> Result<()> {
    let names = list_xattrs(from)?;
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let value = get_xattr(from, name)?;
        rustix::fs::lsetxattr(to, name, &value, XattrFlags::empty())
            .map_err(SnapshotError::syscall("set extended attribute on", to))?;
    }
    Ok(())
}

fn list_xattrs(path: &Path) -> Result<Vec<u8>> {
    loop {
        let size = match rustix::fs::llistxattr_query(path) {
            Ok(size) => size,
            Err(Errno::OPNOTSUPP) => return Ok(Vec::new()),
            Err(errno) => {
                return Err(SnapshotError::syscall("list extended attributes of", path)(
                    errno,
                ));
            }
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // Grew between the two calls.
            Err(Errno::RANGE) => continue,
            Err(errno) => {
                return Err(SnapshotError::syscall("list extended attributes of", path)(
                    errno,
                ));
            }
        }
    }
}

fn get_xattr(path: &Path, name: &OsStr) -> Result<Vec<u8>> {
    loop {
        let size = rustix::fs::lgetxattr_query(path, name)
            .map_err(SnapshotError::syscall("read extended attribute of", path))?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(errno) => {
                return Err(SnapshotError::syscall("read extended attribute of", path)(
                    errno,
                ));
            }
        }
    }
}

/// Disk usage of a tree as `du` counts it: blocks of each inode once (hard links count once),
/// and the number of distinct inodes, the root included.
pub(crate) fn disk_usage(root: &Path) -> Result<Usage> {
    walk_usage(root, Flush::No)
}

/// [`disk_usage`], making the whole tree durable: every regular file and directory is fsynced,
/// which costs what the tree's dirty data costs, unlike `syncfs(2)`, which would also flush
/// everything else written to the filesystem (other builds' layers, compiler output). Above
/// [`SYNCFS_ABOVE`] inodes one `syncfs` is cheaper than an fsync each (every fsync flushes the
/// device's cache, even for a file with nothing dirty, such as one hard-linked from an earlier
/// snapshot), so that is used instead.
pub(crate) fn sync_and_measure(root: &Path) -> Result<Usage> {
    let mut to_sync = Vec::new();
    let usage = walk_usage(root, Flush::Collect(&mut to_sync))?;
    if to_sync.len() > SYNCFS_ABOVE {
        let fd = rustix::fs::open(
            root,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(SnapshotError::syscall("open for syncfs", root))?;
        rustix::fs::syncfs(&fd).map_err(SnapshotError::syscall("syncfs", root))?;
    } else {
        for path in &to_sync {
            fsync_path(path)?;
        }
    }
    Ok(usage)
}

/// See [`sync_and_measure`].
const SYNCFS_ABOVE: usize = 2048;

enum Flush<'a> {
    No,
    /// Collect the regular files and directories to make durable.
    Collect(&'a mut Vec<PathBuf>),
}

fn walk_usage(root: &Path, mut flush: Flush<'_>) -> Result<Usage> {
    let mut seen = std::collections::HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta =
            fs_err::symlink_metadata(&path).map_err(SnapshotError::fs("measure snapshot"))?;
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes += 1;
            usage.size += meta.blocks() * 512;
            if let Flush::Collect(paths) = &mut flush
                && (meta.is_file() || meta.is_dir())
            {
                paths.push(path.clone());
            }
        }
        if meta.is_dir() {
            for entry in fs_err::read_dir(&path).map_err(SnapshotError::fs("measure snapshot"))? {
                stack.push(entry.map_err(SnapshotError::fs("measure snapshot"))?.path());
            }
        }
    }
    Ok(usage)
}

fn fsync_path(path: &Path) -> Result<()> {
    use rustix::fs::OFlags;
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(SnapshotError::syscall("open for fsync", path))?;
    rustix::fs::fsync(&fd).map_err(SnapshotError::syscall("fsync", path))
}

/// Remove a tree; a tree that is already gone is fine (a concurrent sweep may have won).
/// Directories without write permission (copied read-only dirs, overlay's `work/work`) are
/// made writable and retried, for stores used without `CAP_DAC_OVERRIDE`.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match fs_err::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path)?;
            match fs_err::remove_dir_all(path) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(err) => Err(SnapshotError::fs("remove snapshot directory")(err)),
            }
        }
        Err(err) => Err(SnapshotError::fs("remove snapshot directory")(err)),
    }
}

fn make_dirs_writable(root: &Path) -> Result<()> {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = fs_err::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let _ = fs_err::set_permissions(&dir, Permissions::from_mode(0o700));
        if let Ok(entries) = fs_err::read_dir(&dir) {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_preserves_links_modes_times_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let dst = dir.path().join("dst");
        fs_err::create_dir_all(src.join("sub")).unwrap();
        fs_err::create_dir(&dst).unwrap();
        fs_err::write(src.join("sub/a"), b"hello").unwrap();
        fs_err::hard_link(src.join("sub/a"), src.join("b")).unwrap();
        fs_err::os::unix::fs::symlink("sub/a", src.join("link")).unwrap();
        fs_err::set_permissions(src.join("sub/a"), Permissions::from_mode(0o4751)).unwrap();
        fs_err::set_permissions(src.join("sub"), Permissions::from_mode(0o555)).unwrap();
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 1,
                tv_nsec: 2,
            },
            last_modification: Timespec {
                tv_sec: 3,
                tv_nsec: 4,
            },
        };
        rustix::fs::utimensat(CWD, src.join("link"), &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        rustix::fs::utimensat(CWD, src.join("sub"), &times, AtFlags::empty()).unwrap();

        copy_tree(&src, &dst).unwrap();

        assert_eq!(fs_err::read(dst.join("sub/a")).unwrap(), b"hello");
        let a = fs_err::metadata(dst.join("sub/a")).unwrap();
        let b = fs_err::metadata(dst.join("b")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard link kept");
        assert_eq!(a.mode() & 0o7777, 0o4751);
        assert_eq!(
            fs_err::read_link(dst.join("link")).unwrap(),
            Path::new("sub/a")
        );
        let link = fs_err::symlink_metadata(dst.join("link")).unwrap();
        assert_eq!((link.mtime(), link.mtime_nsec()), (3, 4));
        let sub = fs_err::metadata(dst.join("sub")).unwrap();
        assert_eq!((sub.mode() & 0o7777, sub.mtime()), (0o555, 3));

        let usage = disk_usage(&dst).unwrap();
        assert_eq!(usage.inodes, 4, "dst, sub, a (= b), link");
        assert_eq!(sync_and_measure(&dst).unwrap(), usage);
        remove_tree(&dst).unwrap();
        remove_tree(&dst).unwrap();
        assert!(!dst.exists());
        // `sub` is read-only: without CAP_DAC_OVERRIDE the TempDir alone could not remove it.
        remove_tree(&src).unwrap();
    }
}
