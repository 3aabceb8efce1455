//! Walking the upperdir into sorted [`Change`]s: whiteouts and opaque directories translated,
//! hard links grouped, and (with [`CopyUps::DropUnchanged`]) unchanged copy-ups dropped by
//! looking each path up in the lower view.

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::xattr::{self, UpperXattrs};
use super::{
    Change, ChangeKind, CopyUps, DiffError, DiffOptions, OPAQUE_WHITEOUT, OverlayXattrs, Result,
    WHITEOUT_PREFIX,
};
use crate::layer::LayerPath;

/// What the lower view has at the directory being walked.
#[derive(Debug, Clone)]
enum Lower {
    /// [`CopyUps::Keep`]: the lower is never consulted, so nothing is known about it.
    Unknown,
    /// Nothing of the lower shows here (the directory is new, or opaque).
    Absent,
    /// A real directory (never a symlink) of the lower view.
    Dir(PathBuf),
}

/// What the lower view has at one name.
enum LowerEntry {
    Unknown,
    Absent,
    Present { path: PathBuf, meta: Metadata },
}

impl Lower {
    fn child(&self, name: &str) -> Result<LowerEntry> {
        let Lower::Dir(dir) = self else {
            return Ok(match self {
                Lower::Unknown => LowerEntry::Unknown,
                _ => LowerEntry::Absent,
            });
        };
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => Ok(LowerEntry::Present { path, meta }),
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                Ok(LowerEntry::Absent)
            }
            Err(source) => Err(DiffError::Lower { path, source }),
        }
    }
}

struct Found {
    change: Change,
    /// `(dev, ino)` of a non-directory with more than one link.
    inode: Option<(u64, u64)>,
}

struct Scanner<'o> {
    options: &'o DiffOptions<'o>,
    ns: OverlayXattrs,
    whiteout_mtime: u64,
    found: Vec<Found>,
}

pub(super) fn scan(upperdir: &Path, options: &DiffOptions<'_>) -> Result<Vec<Change>> {
    let lower = match options.copy_ups {
        CopyUps::Keep => Lower::Unknown,
        CopyUps::DropUnchanged { lower } => Lower::Dir(lower.to_owned()),
    };
    let mut scanner = Scanner {
        options,
        ns: options.xattrs,
        whiteout_mtime: options.source_date_epoch.unwrap_or(0),
        found: Vec::new(),
    };
    scanner.dir(None, upperdir, &lower)?;
    let mut found = scanner.found;
    found.sort_unstable_by(|a, b| a.change.path.cmp(&b.change.path));
    Ok(link_hardlinks(found))
}

/// Later paths of one inode become hard links to the first path in sorted order.
fn link_hardlinks(found: Vec<Found>) -> Vec<Change> {
    let mut first: HashMap<(u64, u64), LayerPath> = HashMap::new();
    found
        .into_iter()
        .map(|Found { mut change, inode }| {
            if let Some(inode) = inode {
                if let Some(target) = first.get(&inode) {
                    change.kind = ChangeKind::Hardlink {
                        target: target.clone(),
                    };
                    // The inode's xattrs travel with its first path.
                    change.xattrs.clear();
                } else {
                    first.insert(inode, change.path.clone());
                }
            }
            change
        })
        .collect()
}

impl Scanner<'_> {
    /// Walk one upperdir directory; returns whether anything at or below it was kept.
    fn dir(&mut self, rel: Option<&LayerPath>, host: &Path, lower: &Lower) -> Result<bool> {
        let read_err = |source| DiffError::Read {
            path: host.to_owned(),
            source,
        };
        let mut kept_any = false;
        for dirent in std::fs::read_dir(host).map_err(read_err)? {
            let dirent = dirent.map_err(read_err)?;
            let host_path = dirent.path();
            let Some(name) = dirent.file_name().to_str().map(str::to_owned) else {
                return Err(DiffError::NonUtf8Name { path: host_path });
            };
            let path = match rel {
                Some(parent) => parent.join(&name).map_err(|source| DiffError::Path {
                    parent: parent.to_string(),
                    source,
                })?,
                None => LayerPath::new(&name).map_err(|source| DiffError::Path {
                    parent: String::new(),
                    source,
                })?,
            };
            if name.starts_with(WHITEOUT_PREFIX) {
                return Err(DiffError::ReservedName { path });
            }
            // `fstatat` on the directory's fd, without following a symlink.
            let meta = dirent.metadata().map_err(|source| DiffError::Read {
                path: host_path.clone(),
                source,
            })?;
            kept_any |= self.entry(rel, path, &name, &host_path, &meta, lower)?;
        }
        Ok(kept_any)
    }

    fn entry(
        &mut self,
        parent: Option<&LayerPath>,
        path: LayerPath,
        name: &str,
        host: &Path,
        meta: &Metadata,
        lower: &Lower,
    ) -> Result<bool> {
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            // A whiteout. Whiteouts share one inode since Linux 5.8, so this comes before any
            // hard-link grouping. With a lower view, one for a name the lower lacks is dropped.
            if matches!(lower.child(name)?, LowerEntry::Absent) {
                return Ok(false);
            }
            let marker = whiteout_path(parent, &format!("{WHITEOUT_PREFIX}{name}"))?;
            self.push_marker(marker, ChangeKind::Whiteout);
            return Ok(true);
        }
        if ft.is_socket() {
            return Ok(false);
        }
        let UpperXattrs { kept, opaque } = xattr::read_upper(host, self.ns)?;
        let lower_entry = lower.child(name)?;
        let mtime = self.clamp(meta.mtime());
        let change = |kind| Change {
            path: path.clone(),
            kind,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime,
            xattrs: kept.clone(),
        };
        if ft.is_dir() {
            let (below, opaque_marker, unchanged) = match &lower_entry {
                LowerEntry::Unknown => (Lower::Unknown, opaque, false),
                LowerEntry::Absent => (Lower::Absent, false, false),
                LowerEntry::Present { path, meta: lmeta } => {
                    let is_dir = lmeta.file_type().is_dir();
                    let below = if is_dir && !opaque {
                        Lower::Dir(path.clone())
                    } else {
                        Lower::Absent
                    };
                    let unchanged =
                        is_dir && !opaque && same_dir(meta, &kept, lmeta, path, self.ns)?;
                    (below, opaque, unchanged)
                }
            };
            let kept_below = self.dir(Some(&path), host, &below)?;
            if unchanged && !kept_below {
                return Ok(false);
            }
            let dir = change(ChangeKind::Directory);
            self.found.push(Found {
                change: dir,
                inode: None,
            });
            if opaque_marker {
                let marker = whiteout_path(Some(&path), OPAQUE_WHITEOUT)?;
                self.push_marker(marker, ChangeKind::OpaqueWhiteout);
            }
            return Ok(true);
        }
        let kind = if ft.is_file() {
            ChangeKind::File {
                size: meta.len(),
                source: host.to_owned(),
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(host).map_err(|source| DiffError::Read {
                path: host.to_owned(),
                source,
            })?;
            let Some(target) = target.to_str().map(str::to_owned) else {
                return Err(DiffError::NonUtf8Target {
                    path: host.to_owned(),
                });
            };
            ChangeKind::Symlink { target }
        } else {
            ChangeKind::Node(super::special_node(meta))
        };
        let linked = meta.nlink() > 1;
        // Another link may be new in this step, so a linked inode is never "unchanged".
        if !linked
            && let LowerEntry::Present {
                path: lpath,
                meta: lmeta,
            } = &lower_entry
            && same_non_dir(host, meta, &kept, lpath, lmeta, self.ns)?
        {
            return Ok(false);
        }
        self.found.push(Found {
            change: change(kind),
            inode: linked.then(|| (meta.dev(), meta.ino())),
        });
        Ok(true)
    }

    fn push_marker(&mut self, path: LayerPath, kind: ChangeKind) {
        self.found.push(Found {
            change: Change {
                path,
                kind,
                mode: 0,
                uid: 0,
                gid: 0,
                mtime: self.whiteout_mtime,
                xattrs: Vec::new(),
            },
            inode: None,
        });
    }

    fn clamp(&self, mtime: i64) -> u64 {
        let mtime = u64::try_from(mtime).unwrap_or(0);
        match self.options.source_date_epoch {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        }
    }
}

fn whiteout_path(parent: Option<&LayerPath>, name: &str) -> Result<LayerPath> {
    match parent {
        Some(parent) => parent.join(name),
        None => LayerPath::new(name),
    }
    .map_err(|source| DiffError::Path {
        parent: parent.map(ToString::to_string).unwrap_or_default(),
        source,
    })
}

/// BuildKit's `sameDirent` for directories: type, mode, owner and xattrs; a directory's mtime
/// changes with its children and is not compared.
fn same_dir(
    upper: &Metadata,
    upper_xattrs: &[crate::layer::Xattr],
    lower: &Metadata,
    lower_path: &Path,
    ns: OverlayXattrs,
) -> Result<bool> {
    Ok(upper.mode() == lower.mode()
        && upper.uid() == lower.uid()
        && upper.gid() == lower.gid()
        && xattr::read_kept(lower_path, ns)? == upper_xattrs)
}

/// BuildKit's `sameDirent` for non-directories: type, mode, owner, device number, size and
/// mtime; when both mtimes are whole seconds (a layer unpacked from tar, and an unchanged
/// copy-up of it) the content or link target decides.
fn same_non_dir(
    upper_path: &Path,
    upper: &Metadata,
    upper_xattrs: &[crate::layer::Xattr],
    lower_path: &Path,
    lower: &Metadata,
    ns: OverlayXattrs,
) -> Result<bool> {
    let same_stat = upper.mode() == lower.mode()
        && upper.uid() == lower.uid()
        && upper.gid() == lower.gid()
        && upper.rdev() == lower.rdev()
        && upper.size() == lower.size()
        && upper.mtime() == lower.mtime()
        && upper.mtime_nsec() == lower.mtime_nsec();
    if !same_stat || xattr::read_kept(lower_path, ns)? != upper_xattrs {
        return Ok(false);
    }
    if upper.mtime_nsec() != 0 {
        return Ok(true);
    }
    let ft = upper.file_type();
    if ft.is_symlink() {
        let read = |p: &Path| {
            std::fs::read_link(p).map_err(|source| DiffError::Read {
                path: p.to_owned(),
                source,
            })
        };
        return Ok(read(upper_path)? == read(lower_path)?);
    }
    if ft.is_file() && upper.size() > 0 {
        return same_content(upper_path, lower_path);
    }
    Ok(true)
}

fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let open = |p: &Path| {
        fs_err::File::open(p).map_err(|source| DiffError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|source| DiffError::Read {
            path: a.to_owned(),
            source,
        })?;
        let nb = read_full(&mut fb, &mut bb).map_err(|source| DiffError::Read {
            path: b.to_owned(),
            source,
        })?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
