//! Whole-tree operations on descriptors: recursive removal (for replaced directories, whiteouts,
//! opaque directories and discarded staging trees) and the hardlink clone that seeds a staging
//! tree from an existing target (see "All or nothing" in the [module docs](super)).
//!
//! Every step is relative to a directory descriptor and never follows a symlink: a tree can only
//! be removed or cloned below the directory it was opened in.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::WarningKind;
use super::resolve::RelPath;
use super::unpack::Deferred;

/// Open a directory entry for reading metadata and listing, never through a symlink.
pub(super) fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The names in a directory, without `.` and `..`.
pub(super) fn list(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Remove `name` in `dir` and, if it is a directory, everything below it. A missing entry is not
/// an error.
pub(super) fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR | Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let child = match open_dir_at(dir, name) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    // Without CAP_DAC_OVERRIDE a read-only directory could not be emptied; we own what we remove.
    let _ = rfs::fchmod(&child, Mode::from_raw_mode(0o700));
    clear(child.as_fd(), |_| false)?;
    drop(child);
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Remove every entry of `dir` for which `keep(name)` is false; returns the removed names.
pub(super) fn clear(
    dir: BorrowedFd<'_>,
    keep: impl Fn(&[u8]) -> bool,
) -> rustix::io::Result<Vec<Vec<u8>>> {
    let mut removed = Vec::new();
    for name in list(dir)? {
        if !keep(&name) {
            remove_all(dir, &name)?;
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Copy every extended attribute of `src` onto `dst` (both open, non-`O_PATH` descriptors).
/// Attributes the filesystem or our privileges refuse are reported through `skipped`.
pub(super) fn copy_xattrs(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    mut skipped: impl FnMut(&[u8]),
) -> rustix::io::Result<()> {
    let names = match sized(|buf| match buf {
        None => rfs::flistxattr_query(src),
        Some(buf) => rfs::flistxattr(src, buf),
    }) {
        Ok(names) => names,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let value = match sized(|buf| match buf {
            None => rfs::fgetxattr_query(src, name),
            Some(buf) => rfs::fgetxattr(src, name, buf),
        }) {
            Ok(v) => v,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(e),
        };
        match rfs::fsetxattr(dst, name, &value, XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::NOTSUP | Errno::ACCESS) => skipped(name),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Run a query-then-fill xattr call (`None`: ask the size), retrying if the value grew.
fn sized(
    mut call: impl FnMut(Option<&mut [u8]>) -> rustix::io::Result<usize>,
) -> rustix::io::Result<Vec<u8>> {
    loop {
        let mut buf = vec![0u8; call(None)?];
        match call(Some(&mut buf)) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

pub(super) fn timestamps(st: &rfs::Stat) -> Timestamps {
    Timestamps {
        last_access: rfs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rfs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Context of a clone.
pub(super) struct Clone<'a> {
    pub(super) privileged: bool,
    pub(super) deferred: &'a mut Deferred,
    pub(super) warn: &'a mut dyn FnMut(WarningKind, &RelPath),
}

impl Clone<'_> {
    /// Recreate the tree below `src` inside `dst`: directories are new (same owner, mode, xattrs,
    /// times), everything else is a hardlink to the same inode. The apply never writes into an
    /// inode it did not create (files are replaced, not rewritten; hardlink entries carry no
    /// metadata), so the clone shares data with the target without ever changing it.
    pub(super) fn tree(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        at: &RelPath,
    ) -> io::Result<()> {
        for name in list(src)? {
            let path = at.join(&name);
            let st = rfs::statat(src, &name[..], AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                rfs::mkdirat(dst, &name[..], Mode::from_raw_mode(0o700))?;
                let s = open_dir_at(src, &name)?;
                let d = open_dir_at(dst, &name)?;
                self.tree(s.as_fd(), d.as_fd(), &path)?;
                self.dir_metadata(s.as_fd(), d.as_fd(), &st, &path)?;
            } else {
                match rfs::linkat(src, &name[..], dst, &name[..], AtFlags::empty()) {
                    Ok(()) => {}
                    // fs.protected_hardlinks refuses links to files we do not own; so does a
                    // file at its link limit. Copy those instead.
                    Err(Errno::PERM | Errno::MLINK) => self.copy(src, dst, &name, &st)?,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Owner, xattrs, mode and times of a cloned directory (after its children were added).
    pub(super) fn dir_metadata(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        st: &rfs::Stat,
        path: &RelPath,
    ) -> io::Result<()> {
        let warn = &mut *self.warn;
        copy_xattrs(src, dst, |_| warn(WarningKind::XattrNotRestored, path))?;
        let mode = st.st_mode & 0o7777;
        if self.privileged {
            rfs::fchown(
                dst,
                Some(rfs::Uid::from_raw(st.st_uid)),
                Some(rfs::Gid::from_raw(st.st_gid)),
            )?;
        }
        // Keep the directory writable for the apply; its real mode is set at the end.
        rfs::fchmod(dst, Mode::from_raw_mode(mode | 0o700))?;
        self.deferred.set(path.clone(), mode, Some(timestamps(st)));
        Ok(())
    }

    fn copy(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &[u8],
        st: &rfs::Stat,
    ) -> io::Result<()> {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                let from = rfs::openat(
                    src,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let to = rfs::openat(
                    dst,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW,
                    Mode::from_raw_mode(0o600),
                )?;
                io::copy(
                    &mut std::fs::File::from(from.try_clone()?),
                    &mut std::fs::File::from(to.try_clone()?),
                )?;
                copy_xattrs(from.as_fd(), to.as_fd(), |_| {})?;
                rfs::fchmod(&to, Mode::from_raw_mode(st.st_mode & 0o7777))?;
                rfs::futimens(&to, &timestamps(st))?;
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(src, name, Vec::new())?;
                rfs::symlinkat(target.as_c_str(), dst, name)?;
                rfs::utimensat(dst, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)?;
            }
            FileType::Fifo => {
                rfs::mknodat(dst, name, FileType::Fifo, Mode::from_raw_mode(0o600), 0)?;
                rfs::chmodat(
                    dst,
                    name,
                    Mode::from_raw_mode(st.st_mode & 0o7777),
                    AtFlags::empty(),
                )?;
                rfs::utimensat(dst, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)?;
            }
            _ => return Err(Errno::PERM.into()),
        }
        Ok(())
    }
}
