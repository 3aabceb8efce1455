//! OCI whiteouts (image-spec `layer.md`, "Whiteouts"): `.wh.NAME` and `.wh..wh..opq`, converted
//! per [`WhiteoutMode`]. A whiteout names one entry of its own directory; anything else is refused.
//! Whiteouts hide only lower layers' entries, never entries of the same layer.

use std::os::fd::AsFd;

use rustix::fs::{self as rfs, FileType, Mode, XattrFlags};
use rustix::io::Errno;

use super::super::error::{ApplyError, Result, UnsafePathReason};
use super::super::resolve::RelPath;
use super::super::tree::{self, open_dir_at};
use super::super::{WarningKind, WhiteoutMode};
use super::Unpacker;

pub(super) const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

impl Unpacker<'_> {
    pub(super) fn whiteout(&mut self, path: &RelPath, parent: &RelPath, name: &[u8]) -> Result<()> {
        if name == OPAQUE_MARKER {
            return self.opaque(parent);
        }
        if name.starts_with(AUFS_META_PREFIX) {
            // AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): no meaning outside AUFS.
            self.warnings.add(WarningKind::AufsMetadataIgnored, path);
            return Ok(());
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(ApplyError::UnsafePath {
                layer: self.name(),
                path: path.to_string(),
                reason: UnsafePathReason::WhiteoutOutsideDirectory,
            });
        }
        let hidden_path = parent.join(hidden);
        if self.unpacked.contains(&hidden_path) {
            return Ok(());
        }
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                if !self.privileged {
                    return Err(ApplyError::NotPrivileged {
                        layer: self.name(),
                        path: path.to_string(),
                        what: "an overlay whiteout (a 0/0 character device)",
                    });
                }
                let dir = self.parent(parent)?;
                self.remove_existing(dir.as_fd(), hidden, &hidden_path)?;
                rfs::mknodat(
                    &*dir,
                    hidden,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rfs::makedev(0, 0),
                )
                .map_err(self.fs("creating whiteout", &hidden_path))?;
            }
            WhiteoutMode::Delete => {
                let Some(dir) = self.existing_dir(parent)? else {
                    return Ok(());
                };
                self.remove_existing(dir.as_fd(), hidden, &hidden_path)?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir_path: &RelPath) -> Result<()> {
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let dir = self.parent(dir_path)?;
                let fd = open_dir_at(dir.as_fd(), b".").map_err(self.fs("opening", dir_path))?;
                match rfs::fsetxattr(&fd, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty()) {
                    Ok(()) => {}
                    Err(Errno::PERM) if !self.privileged => {
                        return Err(ApplyError::NotPrivileged {
                            layer: self.name(),
                            path: dir_path.to_string(),
                            what: "the trusted.overlay.opaque xattr",
                        });
                    }
                    Err(e) => return Err(self.fs("marking opaque", dir_path)(e)),
                }
            }
            WhiteoutMode::Delete => {
                let Some(dir) = self.existing_dir(dir_path)? else {
                    return Ok(());
                };
                let fd = open_dir_at(dir.as_fd(), b".").map_err(self.fs("opening", dir_path))?;
                let unpacked = &self.unpacked;
                let removed =
                    tree::clear(fd.as_fd(), |child| unpacked.contains(&dir_path.join(child)))
                        .map_err(self.fs("clearing opaque directory", dir_path))?;
                for child in removed {
                    self.deferred.forget_below(&dir_path.join(&child));
                }
                self.parent_cache = None;
            }
        }
        Ok(())
    }
}
