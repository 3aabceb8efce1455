//! Entry metadata: reading owner, mode, time and xattrs from the tar header and its PAX records,
//! and restoring them (owner before mode, both before xattrs, since `chown` clears setuid/setgid
//! and `security.capability`).

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{self as rfs, AtFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::super::WarningKind;
use super::super::error::{ApplyError, Result};
use super::super::resolve::RelPath;
use super::Unpacker;

const CAPABILITY_XATTR: &[u8] = b"security.capability";
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// An entry's metadata, with PAX records applied.
pub(super) struct Meta {
    pub(super) mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    pub(super) fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.mtime,
            last_modification: self.mtime,
        }
    }
}

impl Unpacker<'_> {
    pub(super) fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &RelPath,
    ) -> Result<Meta> {
        let bad = |field| ApplyError::BadHeader {
            layer: self.name(),
            path: path.to_string(),
            field,
        };
        let header = entry.header();
        let mode = header.mode().map_err(|_| bad("mode"))? & 0o7777;
        let mut uid = header.uid().map_err(|_| bad("uid"))?;
        let mut gid = header.gid().map_err(|_| bad("gid"))?;
        let mut mtime = Timespec {
            tv_sec: header.mtime().map_err(|_| bad("mtime"))? as i64,
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|_| bad("pax"))? {
            for ext in pax {
                let ext = ext.map_err(|_| bad("pax"))?;
                let (key, value) = (ext.key_bytes(), ext.value_bytes());
                let number = || -> Option<u64> { std::str::from_utf8(value).ok()?.parse().ok() };
                match key {
                    b"uid" => uid = number().ok_or_else(|| bad("uid"))?,
                    b"gid" => gid = number().ok_or_else(|| bad("gid"))?,
                    b"mtime" => mtime = parse_pax_time(value).ok_or_else(|| bad("mtime"))?,
                    _ => {
                        if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                            xattrs.push((name.to_vec(), value.to_vec()));
                        }
                    }
                }
            }
        }
        // (uid_t)-1 means "leave unchanged" to chown(2): refuse it rather than silently keep ours.
        let id = |v: u64, field| {
            u32::try_from(v)
                .ok()
                .filter(|&v| v != u32::MAX)
                .ok_or_else(|| bad(field))
        };
        Ok(Meta {
            mode,
            uid: id(uid, "uid")?,
            gid: id(gid, "gid")?,
            mtime,
            xattrs,
        })
    }

    pub(super) fn owner(&mut self, fd: BorrowedFd<'_>, meta: &Meta, path: &RelPath) -> Result<()> {
        if self.privileged {
            rfs::fchown(
                fd,
                Some(rfs::Uid::from_raw(meta.uid)),
                Some(rfs::Gid::from_raw(meta.gid)),
            )
            .map_err(self.fs("chown", path))
        } else {
            self.ownership_skipped(meta, path);
            Ok(())
        }
    }

    pub(super) fn owner_at(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        meta: &Meta,
        path: &RelPath,
    ) -> Result<()> {
        if self.privileged {
            rfs::chownat(
                dir,
                name,
                Some(rfs::Uid::from_raw(meta.uid)),
                Some(rfs::Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(self.fs("chown", path))
        } else {
            self.ownership_skipped(meta, path);
            Ok(())
        }
    }

    fn ownership_skipped(&mut self, meta: &Meta, path: &RelPath) {
        if (meta.uid, meta.gid) != self.our_ids {
            self.warnings.add(WarningKind::OwnershipNotRestored, path);
        }
    }

    pub(super) fn xattrs(&mut self, target: Target<'_>, meta: &Meta, path: &RelPath) -> Result<()> {
        for (name, value) in &meta.xattrs {
            // overlayfs reads trusted.overlay.* (and user.overlay.* with `userxattr`) from the
            // upper directory: `redirect` and `metacopy` would let a layer point lookups at
            // arbitrary lower paths. Only whiteout conversion may set them.
            if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                self.warnings.add(WarningKind::OverlayXattrIgnored, path);
                continue;
            }
            let result = match target {
                Target::Fd(fd) => rfs::fsetxattr(fd, &name[..], value, XattrFlags::empty()),
                Target::At(dir, entry) => {
                    // No fd-based call sets an xattr on a symlink or device node without opening
                    // it; go through our own directory descriptor's /proc entry, with the
                    // final component not followed (lsetxattr).
                    let dir_path = PathBuf::from("/proc/self/fd")
                        .join(std::os::fd::AsRawFd::as_raw_fd(&dir).to_string());
                    let full = dir_path.join(OsStr::from_bytes(entry));
                    rfs::lsetxattr(&full, &name[..], value, XattrFlags::empty())
                }
            };
            match result {
                Ok(()) => {}
                Err(Errno::PERM | Errno::NOTSUP | Errno::ACCESS) if name != CAPABILITY_XATTR => {
                    self.warnings.add(WarningKind::XattrNotRestored, path);
                }
                Err(e) => return Err(self.fs("setting xattr on", path)(e)),
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

/// A PAX time: decimal seconds with an optional fraction (`1700000000.5`).
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let tv_nsec = if tv_sec < 0 { 0 } else { digits.parse().ok()? };
    Some(Timespec { tv_sec, tv_nsec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pax_times() {
        let t = parse_pax_time(b"1700000000.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 250_000_000));
        let t = parse_pax_time(b"42").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (42, 0));
        assert!(parse_pax_time(b"4x").is_none());
        assert!(parse_pax_time(b"1.2.3").is_none());
    }
}
