//! Layer diff between two full trees: the copy driver's new snapshot tree against its parent's
//! tree ([`crate::snapshot::Changes::FullTree`]), written as the same OCI layer the overlay
//! differ would write for the same change (containerd's `fs.Changes` double walk, Docker's
//! `archive.ChangesDirs`).
//!
//! # The walk
//!
//! Both trees are walked together, one directory at a time: the directory's entries are listed
//! in both trees, sorted by name, and matched by name. Only the directories on the current path
//! are held in memory, never the whole tree, and entries are written to the layer as they are
//! decided, in [`LayerPath`] order. Within a directory, whiteouts for removed names come first
//! (the OCI image spec asks for whiteouts before their siblings), then the new tree's entries
//! in byte order of their names. Memory is the listings of the directories on the current
//! path (names and `stat`s), plus one path per hard-linked inode written.
//!
//! # What is a change
//!
//! - **Added**: a name only in the new tree. A new directory is written with everything below
//!   it.
//! - **Removed**: a name only in the parent: one `.wh.<name>` marker, nothing for its children.
//! - **Type changed**: a non-directory replacing a directory (or the reverse) needs no whiteout,
//!   because a layer entry replaces whatever is at its path. A directory that replaces a
//!   non-directory also gets an opaque marker `.wh..wh..opq`, because that is what overlayfs
//!   records for it (an upperdir directory created over a whiteout is opaque), so both drivers
//!   give the same layer for the same change.
//! - **Modified non-directory**: any difference in type, mode (with setuid/setgid/sticky),
//!   owner, device number, size, mtime to the nanosecond, link count, symlink target or kept
//!   xattrs. A file whose size, mtime (nanoseconds included) and inode metadata are all equal
//!   is **unchanged, without reading its content**. The copy driver copies a parent tree with
//!   nanosecond mtimes, and every write through the file API sets the mtime to the current time,
//!   so only a change that keeps the size and then restores the exact old mtime (`touch -r`,
//!   `cp -p`/`tar -x` of same-sized different content with the very same timestamp) goes
//!   unnoticed. containerd and BuildKit compare content when both mtimes are whole seconds;
//!   that is not done here on purpose: in a tree unpacked from tar layers *every* file has a
//!   whole-second mtime, and comparing content would read the whole rootfs twice per RUN step.
//! - **Modified directory**: a difference in mode, owner or kept xattrs. A directory's mtime
//!   and size are not compared (they change whenever a child does: moby/moby#9874, BuildKit's
//!   `sameDirent`).
//! - **Parents**: every directory on the way to a written entry is written too, changed or not
//!   (Docker's `ChangesDirs` adds them "to properly save and restore filesystem permissions",
//!   containerd's `ChangeWriter` re-adds them). An unchanged directory is held back until
//!   something below it is written, then written just before it, which keeps the order.
//!
//! This is what [`super::CopyUps::DropUnchanged`] gives on the overlay driver; a tree diff has
//! no copy-ups, so [`DiffOptions::copy_ups`] is not consulted. Where the overlay differ writes
//! `d/` + `d/.wh..wh..opq` for a directory that was removed and created again, a tree diff,
//! which cannot tell that from changes in place, writes a whiteout per removed child instead:
//! the applied result is the same.
//!
//! # Hard links
//!
//! Paths of one inode (with more than one link) become tar hard links to the first of them
//! written, which is the first in sorted order; only that entry carries content and xattrs
//! (as in the overlay differ). A link added or removed changes the inode's link count, so
//! every remaining path of that inode counts as modified and the group is written whole. A
//! step that removes one link and adds another to the same inode keeps the count: the new path
//! is then written as a copy of the file, not a link (the applied content is still right).
//!
//! # Other rules, as in the overlay differ
//!
//! Sockets are skipped (a socket replacing a parent entry writes that entry's whiteout). Names
//! starting with `.wh.` are refused ([`DiffError::ReservedName`]), in either tree. Whiteout
//! markers have mode 0, owner 0:0 and the epoch (or 0) as mtime; other mtimes are clamped to
//! [`DiffOptions::source_date_epoch`]. The tree roots themselves are not entries. All xattrs are
//! kept except `security.selinux` (the host's label); a plain tree has no overlay metadata, so
//! [`DiffOptions::xattrs`] is not consulted either.
//!
//! Not responsible for: making the copy (`snapshot/tree.rs`), upperdirs (`scan.rs`), tar
//! encoding and compression (`layer.rs`, `compress/`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use super::{
    Change, ChangeKind, DiffError, DiffOptions, DiffSummary, OPAQUE_WHITEOUT, Result,
    WHITEOUT_PREFIX, write,
};
use crate::layer::{LayerPath, LayerWriter, Xattr};

/// The host's SELinux label is not content (Docker and BuildKit never emit it either).
const SELINUX: &str = "security.selinux";

/// Append to `layer` the changes that turn the tree at `parent` (an empty tree when `None`)
/// into the tree at `tree`, in layer order (module docs); the caller then finishes `layer`.
///
/// Both trees must stay unchanged while they are read. Errors about `tree` are
/// [`DiffError::Read`], about `parent` [`DiffError::Lower`].
pub fn diff_trees<W: Write>(
    parent: Option<&Path>,
    tree: &Path,
    options: &DiffOptions<'_>,
    layer: &mut LayerWriter<W>,
) -> Result<DiffSummary> {
    let mut walk = Walk {
        layer,
        epoch: options.source_date_epoch,
        pending: Vec::new(),
        links: HashMap::new(),
        summary: DiffSummary::default(),
    };
    walk.dir(None, tree, parent)?;
    Ok(walk.summary)
}

/// One directory's entries in the new tree, sorted by name.
struct NewEntry {
    name: String,
    meta: Metadata,
}

/// One directory's entries in the parent tree, sorted by name (not necessarily UTF-8).
struct OldEntry {
    name: OsString,
    meta: Metadata,
}

struct Walk<'l, W: Write> {
    layer: &'l mut LayerWriter<W>,
    epoch: Option<u64>,
    /// Unchanged directories on the current path, not written yet (outermost first).
    pending: Vec<Change>,
    /// First written path of each inode with several links.
    links: HashMap<(u64, u64), LayerPath>,
    summary: DiffSummary,
}

impl<W: Write> Walk<'_, W> {
    /// Diff one directory: `new` in the new tree at layer path `rel` (`None`: the root), and
    /// `old`, the directory at the same path in the parent, if there is one.
    fn dir(&mut self, rel: Option<&LayerPath>, new: &Path, old: Option<&Path>) -> Result<()> {
        let new_entries = list_new(rel, new)?;
        let old_entries = match old {
            Some(old) => list_old(old)?,
            None => Vec::new(),
        };
        let find_new = |name: &[u8]| {
            new_entries
                .binary_search_by(|e| e.name.as_bytes().cmp(name))
                .ok()
                .map(|i| &new_entries[i])
        };
        for entry in &old_entries {
            if entry.meta.file_type().is_socket() {
                // Never in a layer, so nothing to remove.
                continue;
            }
            let gone =
                find_new(entry.name.as_bytes()).is_none_or(|new| new.meta.file_type().is_socket());
            if gone {
                let Some(name) = entry.name.to_str() else {
                    return Err(DiffError::NonUtf8Name {
                        path: old.unwrap_or(new).join(&entry.name),
                    });
                };
                let marker = child(rel, &format!("{WHITEOUT_PREFIX}{name}"))?;
                if name.starts_with(WHITEOUT_PREFIX) {
                    return Err(DiffError::ReservedName { path: marker });
                }
                self.marker(marker, ChangeKind::Whiteout)?;
            }
        }
        for entry in &new_entries {
            let before = old.and_then(|old| {
                old_entries
                    .binary_search_by(|e| e.name.as_bytes().cmp(entry.name.as_bytes()))
                    .ok()
                    .map(|i| (old.join(&entry.name), &old_entries[i].meta))
            });
            self.entry(rel, entry, &new.join(&entry.name), before)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        rel: Option<&LayerPath>,
        entry: &NewEntry,
        host: &Path,
        old: Option<(PathBuf, &Metadata)>,
    ) -> Result<()> {
        let meta = &entry.meta;
        let ft = meta.file_type();
        if ft.is_socket() {
            return Ok(());
        }
        let path = child(rel, &entry.name)?;
        let xattrs = read_xattrs(host, Tree::New)?;
        let change = |kind| Change {
            path: path.clone(),
            kind,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: clamp(meta.mtime(), self.epoch),
            xattrs: xattrs.clone(),
        };
        if ft.is_dir() {
            let dir = change(ChangeKind::Directory);
            match old {
                Some((old_path, old_meta)) if old_meta.is_dir() => {
                    if same_dir(meta, &xattrs, &old_path, old_meta)? {
                        self.pending.push(dir);
                        let depth = self.pending.len();
                        self.dir(Some(&path), host, Some(&old_path))?;
                        // Still pending: nothing below changed, so it is not written at all.
                        if self.pending.len() == depth {
                            self.pending.pop();
                        }
                    } else {
                        self.emit(&dir)?;
                        self.dir(Some(&path), host, Some(&old_path))?;
                    }
                }
                Some(_) => {
                    // Replaces a non-directory: opaque, as overlayfs records it.
                    self.emit(&dir)?;
                    self.marker(
                        child(Some(&path), OPAQUE_WHITEOUT)?,
                        ChangeKind::OpaqueWhiteout,
                    )?;
                    self.dir(Some(&path), host, None)?;
                }
                None => {
                    self.emit(&dir)?;
                    self.dir(Some(&path), host, None)?;
                }
            }
            return Ok(());
        }
        if let Some((old_path, old_meta)) = &old
            && !old_meta.is_dir()
            && same_non_dir(host, meta, &xattrs, old_path, old_meta)?
        {
            return Ok(());
        }
        let kind = if ft.is_file() {
            ChangeKind::File {
                size: meta.len(),
                source: host.to_owned(),
            }
        } else if ft.is_symlink() {
            let target = read_link(host, Tree::New)?;
            let Some(target) = target.to_str().map(str::to_owned) else {
                return Err(DiffError::NonUtf8Target {
                    path: host.to_owned(),
                });
            };
            ChangeKind::Symlink { target }
        } else {
            ChangeKind::Node(super::special_node(meta))
        };
        let mut change = change(kind);
        if meta.nlink() > 1 {
            let inode = (meta.dev(), meta.ino());
            if let Some(target) = self.links.get(&inode) {
                change.kind = ChangeKind::Hardlink {
                    target: target.clone(),
                };
                // The inode's xattrs travel with its first path.
                change.xattrs.clear();
            } else {
                self.links.insert(inode, path.clone());
            }
        }
        self.emit(&change)
    }

    /// Write a whiteout or opaque marker (fixed metadata, as the overlay differ writes them).
    fn marker(&mut self, path: LayerPath, kind: ChangeKind) -> Result<()> {
        self.emit(&Change {
            path,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: self.epoch.unwrap_or(0),
            xattrs: Vec::new(),
        })
    }

    /// Write `change`, after the unchanged directories above it that are not written yet.
    fn emit(&mut self, change: &Change) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        for dir in pending.iter().chain(std::iter::once(change)) {
            let written = write::write(std::slice::from_ref(dir), self.layer, &|_| None)?;
            self.summary.entries += written.entries;
            self.summary.whiteouts += written.whiteouts;
            self.summary.content_bytes += written.content_bytes;
        }
        Ok(())
    }
}

/// Which tree a path is in, for the error that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    New,
    Parent,
}

impl Tree {
    fn err(self, path: &Path) -> impl FnOnce(io::Error) -> DiffError + '_ {
        move |source| match self {
            Tree::New => DiffError::Read {
                path: path.to_owned(),
                source,
            },
            Tree::Parent => DiffError::Lower {
                path: path.to_owned(),
                source,
            },
        }
    }
}

/// The new tree's entries of `dir`, sorted by name; names must be UTF-8 and not whiteouts.
fn list_new(rel: Option<&LayerPath>, dir: &Path) -> Result<Vec<NewEntry>> {
    let mut out = Vec::new();
    for dirent in std::fs::read_dir(dir).map_err(Tree::New.err(dir))? {
        let dirent = dirent.map_err(Tree::New.err(dir))?;
        let Ok(name) = dirent.file_name().into_string() else {
            return Err(DiffError::NonUtf8Name {
                path: dirent.path(),
            });
        };
        if name.starts_with(WHITEOUT_PREFIX) {
            return Err(DiffError::ReservedName {
                path: child(rel, &name)?,
            });
        }
        // `fstatat` relative to the directory, without following a symlink.
        let meta = dirent.metadata().map_err(Tree::New.err(&dirent.path()))?;
        out.push(NewEntry { name, meta });
    }
    out.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(out)
}

/// The parent tree's entries of `dir`, sorted by name.
fn list_old(dir: &Path) -> Result<Vec<OldEntry>> {
    let mut out = Vec::new();
    for dirent in std::fs::read_dir(dir).map_err(Tree::Parent.err(dir))? {
        let dirent = dirent.map_err(Tree::Parent.err(dir))?;
        let meta = dirent
            .metadata()
            .map_err(Tree::Parent.err(&dirent.path()))?;
        out.push(OldEntry {
            name: dirent.file_name(),
            meta,
        });
    }
    out.sort_unstable_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(out)
}

fn child(parent: Option<&LayerPath>, name: &str) -> Result<LayerPath> {
    match parent {
        Some(parent) => parent.join(name),
        None => LayerPath::new(name),
    }
    .map_err(|source| DiffError::Path {
        parent: parent.map(ToString::to_string).unwrap_or_default(),
        source,
    })
}

fn clamp(mtime: i64, epoch: Option<u64>) -> u64 {
    let mtime = u64::try_from(mtime).unwrap_or(0);
    epoch.map_or(mtime, |epoch| mtime.min(epoch))
}

/// Directories: type, mode, owner and xattrs; mtime and size follow the children.
fn same_dir(new: &Metadata, new_xattrs: &[Xattr], old_path: &Path, old: &Metadata) -> Result<bool> {
    Ok(new.mode() == old.mode()
        && new.uid() == old.uid()
        && new.gid() == old.gid()
        && read_xattrs(old_path, Tree::Parent)? == new_xattrs)
}

/// Non-directories: type, mode, owner, device, size, mtime (ns), link count, xattrs, and the
/// target of a symlink. Never the content (module docs).
fn same_non_dir(
    new_path: &Path,
    new: &Metadata,
    new_xattrs: &[Xattr],
    old_path: &Path,
    old: &Metadata,
) -> Result<bool> {
    let same_stat = new.mode() == old.mode()
        && new.uid() == old.uid()
        && new.gid() == old.gid()
        && new.rdev() == old.rdev()
        && new.size() == old.size()
        && new.mtime() == old.mtime()
        && new.mtime_nsec() == old.mtime_nsec()
        && new.nlink() == old.nlink();
    if !same_stat || read_xattrs(old_path, Tree::Parent)? != new_xattrs {
        return Ok(false);
    }
    if new.file_type().is_symlink() {
        return Ok(read_link(new_path, Tree::New)? == read_link(old_path, Tree::Parent)?);
    }
    Ok(true)
}

fn read_link(path: &Path, tree: Tree) -> Result<PathBuf> {
    std::fs::read_link(path).map_err(tree.err(path))
}

/// An entry's xattrs without `security.selinux`, sorted by name, without following a symlink.
/// A name that is not UTF-8 is refused in the new tree (a layer cannot carry it) and, in the
/// parent, kept lossily so that it still compares unequal.
fn read_xattrs(path: &Path, tree: Tree) -> Result<Vec<Xattr>> {
    let mut out = Vec::new();
    for raw in list_xattrs(path)?
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let name = match (std::str::from_utf8(raw), tree) {
            (Ok(name), _) => name,
            (Err(_), Tree::New) => {
                return Err(DiffError::NonUtf8Xattr {
                    path: path.to_owned(),
                    name: raw.to_vec(),
                });
            }
            (Err(_), Tree::Parent) => {
                out.push(Xattr {
                    name: String::from_utf8_lossy(raw).into_owned(),
                    value: Vec::new(),
                });
                continue;
            }
        };
        if name == SELINUX {
            continue;
        }
        if let Some(value) = get_xattr(path, name)? {
            out.push(Xattr {
                name: name.to_owned(),
                value,
            });
        }
    }
    out.sort();
    Ok(out)
}

/// `llistxattr`: NUL-separated names. One syscall when there are few or none.
fn list_xattrs(path: &Path) -> Result<Vec<u8>> {
    let err = |source: Errno| DiffError::Xattr {
        path: path.to_owned(),
        name: "(list)".to_owned(),
        source: source.into(),
    };
    let mut small = [0u8; 1024];
    match rustix::fs::llistxattr(path, &mut small[..]) {
        Ok(n) => return Ok(small[..n].to_vec()),
        // Filesystems without xattr support have none.
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(err(e)),
    }
    loop {
        let size = rustix::fs::llistxattr_query(path).map_err(err)?;
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // Grew between the two calls.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(err(e)),
        }
    }
}

/// `lgetxattr`; `None` if the xattr disappeared since it was listed.
fn get_xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let err = |source: Errno| DiffError::Xattr {
        path: path.to_owned(),
        name: name.to_owned(),
        source: source.into(),
    };
    let mut small = [0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut small[..]) {
        Ok(n) => return Ok(Some(small[..n].to_vec())),
        Err(Errno::NODATA) => return Ok(None),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(err(e)),
    }
    loop {
        let size = match rustix::fs::lgetxattr_query(path, name) {
            Ok(size) => size,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => continue,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, XattrFlags};

    use super::*;
    use crate::layer::Compression;

    /// `parent/` and `tree/` in a temp dir; `tree` starts as `cp -a` of `parent`.
    struct Trees {
        dir: tempfile::TempDir,
    }

    impl Trees {
        fn new(fill: impl FnOnce(&Path)) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let parent = dir.path().join("parent");
            fs_err::create_dir(&parent).unwrap();
            fill(&parent);
            let status = Command::new("cp")
                .arg("-a")
                .arg(&parent)
                .arg(dir.path().join("tree"))
                .status()
                .unwrap();
            assert!(status.success(), "cp -a");
            Self { dir }
        }
        fn parent(&self) -> PathBuf {
            self.dir.path().join("parent")
        }
        fn tree(&self) -> PathBuf {
            self.dir.path().join("tree")
        }
        fn diff(&self, options: &DiffOptions<'_>) -> (Vec<Entry>, DiffSummary) {
            layer(Some(&self.parent()), &self.tree(), options)
        }
        fn paths(&self) -> Vec<String> {
            self.diff(&DiffOptions::default())
                .0
                .into_iter()
                .map(|e| e.path)
                .collect()
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Entry {
        path: String,
        kind: char,
        link: String,
        mode: u32,
        mtime: u64,
        content: Vec<u8>,
    }

    fn layer(
        parent: Option<&Path>,
        tree: &Path,
        options: &DiffOptions<'_>,
    ) -> (Vec<Entry>, DiffSummary) {
        let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed);
        let summary = diff_trees(parent, tree, options, &mut w).unwrap();
        let bytes = w.finish().unwrap().0;
        let mut out = Vec::new();
        for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header();
            let kind = match h.entry_type() {
                tar::EntryType::Directory => 'd',
                tar::EntryType::Regular => 'f',
                tar::EntryType::Symlink => 'l',
                tar::EntryType::Link => 'h',
                tar::EntryType::Fifo => 'p',
                other => panic!("unexpected {other:?}"),
            };
            let (mode, mtime) = (h.mode().unwrap(), h.mtime().unwrap());
            let path = e.path().unwrap().to_str().unwrap().to_owned();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            out.push(Entry {
                path,
                kind,
                link,
                mode,
                mtime,
                content,
            });
        }
        (out, summary)
    }

    fn write(path: impl AsRef<Path>, content: &str) {
        fs_err::write(path.as_ref(), content).unwrap();
    }

    fn set_mtime(path: &Path, sec: i64, nsec: i64) {
        let t = Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        };
        let times = Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    /// A little of everything, for the "nothing changed" checks.
    fn rich(p: &Path) {
        fs_err::create_dir_all(p.join("etc/conf.d")).unwrap();
        write(p.join("etc/hosts"), "127.0.0.1 localhost");
        write(p.join("etc/conf.d/a"), "a");
        fs_err::hard_link(p.join("etc/conf.d/a"), p.join("etc/conf.d/a-link")).unwrap();
        std::os::unix::fs::symlink("hosts", p.join("etc/alias")).unwrap();
        rustix::fs::mknodat(
            CWD,
            p.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        rustix::fs::lsetxattr(p.join("etc/hosts"), "user.k", b"v", XattrFlags::empty()).unwrap();
        write(p.join("whole-second"), "w");
        set_mtime(&p.join("whole-second"), 1_000, 0);
    }

    #[test]
    fn an_unchanged_copy_is_an_empty_layer() {
        let t = Trees::new(rich);
        let (entries, summary) = t.diff(&DiffOptions::default());
        assert_eq!(entries, []);
        assert_eq!(summary, DiffSummary::default());
    }

    #[test]
    fn without_parent_everything_is_added() {
        let t = Trees::new(rich);
        let (entries, summary) = layer(None, &t.tree(), &DiffOptions::default());
        let got: Vec<(&str, char, &str)> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind, e.link.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("etc/", 'd', ""),
                ("etc/alias", 'l', "hosts"),
                ("etc/conf.d/", 'd', ""),
                ("etc/conf.d/a", 'f', ""),
                ("etc/conf.d/a-link", 'h', "etc/conf.d/a"),
                ("etc/hosts", 'f', ""),
                ("fifo", 'p', ""),
                ("whole-second", 'f', ""),
            ]
        );
        assert_eq!(entries[5].content, b"127.0.0.1 localhost");
        assert_eq!(summary.entries, 8);
        assert_eq!(summary.content_bytes, 1 + 19 + 1);
    }

    #[test]
    fn whiteouts_come_first_and_unchanged_parents_only_above_changes() {
        let t = Trees::new(|p| {
            fs_err::create_dir_all(p.join("d")).unwrap();
            fs_err::create_dir_all(p.join("x/y/z")).unwrap();
            fs_err::create_dir_all(p.join("x/quiet/deeper")).unwrap();
            for f in ["d/a", "d/b", "d/kept", "x/y/z/f", "x/quiet/deeper/g"] {
                write(p.join(f), "old");
            }
        });
        let n = t.tree();
        fs_err::remove_file(n.join("d/a")).unwrap();
        fs_err::remove_file(n.join("d/b")).unwrap();
        // Byte-wise these sort before `.wh.`; the markers must still come first.
        write(n.join("d/-dash"), "new");
        write(n.join("d/.a"), "new");
        write(n.join("x/y/z/f"), "changed");
        // A file created and removed again: the directory's mtime moved, nothing else.
        write(n.join("x/quiet/tmp"), "t");
        fs_err::remove_file(n.join("x/quiet/tmp")).unwrap();
        assert_eq!(
            t.paths(),
            [
                "d/", "d/.wh.a", "d/.wh.b", "d/-dash", "d/.a", "x/", "x/y/", "x/y/z/", "x/y/z/f"
            ]
        );
    }

    #[test]
    fn a_removed_directory_is_one_whiteout() {
        let t = Trees::new(|p| {
            fs_err::create_dir_all(p.join("gone/sub/deeper")).unwrap();
            write(p.join("gone/sub/deeper/f"), "f");
            write(p.join("gone/g"), "g");
        });
        fs_err::remove_dir_all(t.tree().join("gone")).unwrap();
        let (entries, summary) = t.diff(&DiffOptions::default());
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].path.as_str(), entries[0].kind, entries[0].mode),
            (".wh.gone", 'f', 0)
        );
        assert_eq!((summary.entries, summary.whiteouts), (1, 1));
    }

    #[test]
    fn type_changes_are_written_as_overlay_writes_them() {
        let t = Trees::new(|p| {
            fs_err::create_dir_all(p.join("d/sub")).unwrap();
            write(p.join("d/sub/x"), "x");
            write(p.join("p"), "file");
            std::os::unix::fs::symlink("p", p.join("s")).unwrap();
        });
        let n = t.tree();
        fs_err::remove_dir_all(n.join("d")).unwrap();
        write(n.join("d"), "now a file");
        fs_err::remove_file(n.join("p")).unwrap();
        fs_err::create_dir(n.join("p")).unwrap();
        write(n.join("p/y"), "y");
        fs_err::remove_file(n.join("s")).unwrap();
        fs_err::create_dir(n.join("s")).unwrap();
        let (entries, _) = t.diff(&DiffOptions::default());
        let got: Vec<(&str, char)> = entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
        assert_eq!(
            got,
            [
                ("d", 'f'),
                ("p/", 'd'),
                ("p/.wh..wh..opq", 'f'),
                ("p/y", 'f'),
                ("s/", 'd'),
                ("s/.wh..wh..opq", 'f'),
            ]
        );
    }

    #[test]
    fn metadata_decides_what_changed() {
        let t = Trees::new(|p| {
            for f in ["chmod", "touched", "grown", "same", "xattr"] {
                write(p.join(f), "12345");
                set_mtime(&p.join(f), 1_700_000_000, 123_456_789);
            }
            std::os::unix::fs::symlink("aaa", p.join("link")).unwrap();
            fs_err::create_dir(p.join("dir")).unwrap();
        });
        let n = t.tree();
        fs_err::set_permissions(n.join("chmod"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        // One nanosecond is a change.
        set_mtime(&n.join("touched"), 1_700_000_000, 123_456_790);
        write(n.join("grown"), "123456");
        set_mtime(&n.join("grown"), 1_700_000_000, 123_456_789);
        rustix::fs::lsetxattr(n.join("xattr"), "user.new", b"1", XattrFlags::empty()).unwrap();
        // Same length, same mtime: the target decides.
        fs_err::remove_file(n.join("link")).unwrap();
        std::os::unix::fs::symlink("bbb", n.join("link")).unwrap();
        let old = fs_err::symlink_metadata(t.parent().join("link")).unwrap();
        set_mtime(&n.join("link"), old.mtime(), old.mtime_nsec());
        fs_err::set_permissions(n.join("dir"), std::fs::Permissions::from_mode(0o700)).unwrap();
        // Same size, mtime restored to the nanosecond: unchanged, content is not read (the
        // documented caveat).
        write(n.join("same"), "54321");
        set_mtime(&n.join("same"), 1_700_000_000, 123_456_789);
        let (entries, _) = t.diff(&DiffOptions::default());
        let got: Vec<(&str, u32)> = entries.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(
            got,
            [
                ("chmod", 0o4755),
                ("dir/", 0o700),
                ("grown", 0o644),
                ("link", 0o777),
                ("touched", 0o644),
                ("xattr", 0o644),
            ]
        );
    }

    #[test]
    fn hard_links_are_written_whole_when_their_link_count_changes() {
        let t = Trees::new(|p| {
            fs_err::create_dir(p.join("bin")).unwrap();
            write(p.join("bin/z-existing"), "e");
            write(p.join("bin/pair-1"), "p");
            fs_err::hard_link(p.join("bin/pair-1"), p.join("bin/pair-2")).unwrap();
        });
        let n = t.tree();
        fs_err::hard_link(n.join("bin/z-existing"), n.join("bin/a-new-link")).unwrap();
        fs_err::create_dir(n.join("new")).unwrap();
        write(n.join("new/z-original"), "shared");
        fs_err::hard_link(n.join("new/z-original"), n.join("new/a-link")).unwrap();
        fs_err::hard_link(n.join("new/z-original"), n.join("top-link")).unwrap();
        let (entries, _) = t.diff(&DiffOptions::default());
        let got: Vec<(&str, char, &str)> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind, e.link.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("bin/", 'd', ""),
                ("bin/a-new-link", 'f', ""),
                ("bin/z-existing", 'h', "bin/a-new-link"),
                ("new/", 'd', ""),
                ("new/a-link", 'f', ""),
                ("new/z-original", 'h', "new/a-link"),
                ("top-link", 'h', "new/a-link"),
            ]
        );
        assert_eq!(entries[1].content, b"e");
    }

    #[test]
    fn source_date_epoch_clamps_mtimes_and_dates_whiteouts() {
        let t = Trees::new(|p| write(p.join("gone"), "x"));
        let n = t.tree();
        fs_err::remove_file(n.join("gone")).unwrap();
        write(n.join("new"), "n");
        write(n.join("ancient"), "a");
        set_mtime(&n.join("ancient"), 1_000, 5);
        let epoch = 1_700_000_000;
        let options = DiffOptions {
            source_date_epoch: Some(epoch),
            ..DiffOptions::default()
        };
        let (entries, _) = t.diff(&options);
        let got: Vec<(&str, u64)> = entries.iter().map(|e| (e.path.as_str(), e.mtime)).collect();
        assert_eq!(
            got,
            [(".wh.gone", epoch), ("ancient", 1_000), ("new", epoch)]
        );
    }

    #[test]
    fn reserved_names_are_refused_and_sockets_skipped() {
        let t = Trees::new(|p| write(p.join("was-a-file"), "x"));
        let n = t.tree();
        fs_err::remove_file(n.join("was-a-file")).unwrap();
        let _a = std::os::unix::net::UnixListener::bind(n.join("was-a-file")).unwrap();
        let _b = std::os::unix::net::UnixListener::bind(n.join("sock")).unwrap();
        assert_eq!(t.paths(), [".wh.was-a-file"]);

        write(n.join(".wh.sneaky"), "x");
        let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed);
        match diff_trees(Some(&t.parent()), &n, &DiffOptions::default(), &mut w) {
            Err(DiffError::ReservedName { path }) => assert_eq!(path.as_str(), ".wh.sneaky"),
            other => panic!("expected ReservedName, got {other:?}"),
        }
    }
}
