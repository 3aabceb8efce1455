//! The entry side of an apply: each tar entry becomes a filesystem object in the staging root,
//! created with `*at` calls on a directory resolved by [`Root`] and a final component that is
//! never followed. Whiteouts are converted per [`WhiteoutMode`](super::WhiteoutMode); directory modes and times are
//! deferred to the end ([`Deferred`]).
//!
//! Not responsible for: decompression or digests (`stream`), staging and commit (`mod`).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timestamps};
use rustix::io::Errno;

use super::error::{ApplyError, LayerName, Limit, Result, UnsafePathReason};
use super::resolve::{RelPath, Root, lstat_at};
use super::stream::{Budget, Budgeted, Phase};
use super::tree::{self, open_dir_at};
use super::{ApplyOptions, Limits, WarningKind, Warnings};

mod meta;
mod whiteout;

use meta::{Meta, Target};

/// Size of the buffer file content is copied through.
const COPY_BUFFER: usize = 256 * 1024;
use whiteout::WHITEOUT_PREFIX;

/// Directory modes and times, applied after every entry (creating a child changes a directory's
/// mtime, and a read-only mode would stop an unprivileged apply from creating children).
#[derive(Default)]
pub(super) struct Deferred(BTreeMap<RelPath, (u32, Option<Timestamps>)>);

impl Deferred {
    pub(super) fn set(&mut self, path: RelPath, mode: u32, times: Option<Timestamps>) {
        self.0.insert(path, (mode, times));
    }

    /// Forget `path` and everything below it (it was removed or replaced).
    fn forget_below(&mut self, path: &RelPath) {
        self.0.remove(path);
        let start = path.join(b"");
        let below: Vec<RelPath> = self
            .0
            .range(start..)
            .take_while(|(p, _)| p.starts_with(path))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            self.0.remove(&p);
        }
    }

    /// Set every recorded mode and time, children before parents. A path that no longer names a
    /// directory (replaced by a later entry) is skipped.
    pub(super) fn apply(self, root: &Root) -> io::Result<()> {
        for (path, (mode, times)) in self.0.into_iter().rev() {
            let fd = match path.split() {
                None => open_dir_at(root.fd(), b"."),
                Some((parent, name)) => {
                    root.dir(&parent).and_then(|p| open_dir_at(p.as_fd(), name))
                }
            };
            let fd = match fd {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(e.into()),
            };
            rfs::fchmod(&fd, Mode::from_raw_mode(mode))?;
            if let Some(times) = times {
                rfs::futimens(&fd, &times)?;
            }
        }
        Ok(())
    }
}

pub(super) struct Unpacker<'a> {
    pub(super) root: &'a Root,
    pub(super) layer: &'a LayerName,
    pub(super) opts: &'a ApplyOptions,
    pub(super) privileged: bool,
    pub(super) deferred: &'a mut Deferred,
    pub(super) warnings: &'a mut Warnings,
    /// Paths created by this layer: whiteouts and opaque markers hide only lower layers' entries
    /// (OCI image-spec `layer.md`, "Whiteouts"), whatever the order within the tar.
    unpacked: HashSet<RelPath>,
    parent_cache: Option<(RelPath, Rc<OwnedFd>)>,
    our_ids: (u32, u32),
    /// File content goes through this buffer (allocated once).
    buffer: Vec<u8>,
}

impl<'a> Unpacker<'a> {
    pub(super) fn new(
        root: &'a Root,
        layer: &'a LayerName,
        opts: &'a ApplyOptions,
        deferred: &'a mut Deferred,
        warnings: &'a mut Warnings,
    ) -> Self {
        Self {
            root,
            layer,
            opts,
            privileged: rustix::process::geteuid().is_root(),
            deferred,
            warnings,
            unpacked: HashSet::new(),
            parent_cache: None,
            our_ids: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            buffer: Vec::new(),
        }
    }

    fn name(&self) -> Box<LayerName> {
        Box::new(self.layer.clone())
    }

    fn fs(&self, op: &'static str, path: &RelPath) -> impl FnOnce(Errno) -> ApplyError + use<> {
        let (layer, path) = (self.name(), path.to_string());
        move |e| ApplyError::Fs {
            layer,
            op,
            path,
            source: e.into(),
        }
    }

    fn io(&self, op: &'static str, path: &RelPath) -> impl FnOnce(io::Error) -> ApplyError + use<> {
        let (layer, path) = (self.name(), path.to_string());
        move |source| ApplyError::Fs {
            layer,
            op,
            path,
            source,
        }
    }

    fn read_error(&self, source: io::Error, budget: &Budget) -> ApplyError {
        read_error(self.layer, &self.opts.limits, budget, source)
    }

    /// Unpack every entry; returns how many there were.
    pub(super) fn run<R: Read>(
        &mut self,
        archive: &mut tar::Archive<Budgeted<R>>,
        budget: &Budget,
    ) -> Result<u64> {
        let mut entries = archive.entries().map_err(|e| self.read_error(e, budget))?;
        let mut count = 0u64;
        loop {
            budget.set_phase(Phase::Header);
            let next = entries.next();
            budget.set_phase(Phase::Content);
            let mut entry = match next {
                None => break,
                Some(Ok(entry)) => entry,
                Some(Err(e)) => return Err(self.read_error(e, budget)),
            };
            count += 1;
            if count > self.opts.limits.max_entries {
                return Err(ApplyError::LimitExceeded {
                    layer: self.name(),
                    limit: Limit::Entries,
                    max: self.opts.limits.max_entries,
                });
            }
            self.entry(&mut entry, budget)?;
            // Whatever the entry type, its declared content is part of the stream: skip it here,
            // under the total budget, so the parser's header phase reads only headers.
            io::copy(&mut entry, &mut io::sink()).map_err(|e| self.read_error(e, budget))?;
        }
        Ok(count)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, budget: &Budget) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path = RelPath::normalize(&raw).map_err(|reason| ApplyError::UnsafePath {
            layer: self.name(),
            path: shown.clone(),
            reason,
        })?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let meta = self.meta(entry, &path)?;
        let Some((parent, name)) = path.split() else {
            if kind.is_dir() {
                return self.root_dir(&meta);
            }
            return Err(ApplyError::UnsafePath {
                layer: self.name(),
                path: shown,
                reason: UnsafePathReason::Empty,
            });
        };
        let name = name.to_vec();
        if name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&path, &parent, &name);
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file(entry, &path, &parent, &name, &meta, budget)
            }
            tar::EntryType::Directory => self.directory(&path, &parent, &name, &meta),
            tar::EntryType::Symlink => {
                let target = self.link_name(entry, &path)?;
                self.symlink(&path, &parent, &name, &target, &meta)
            }
            tar::EntryType::Link => {
                let target = self.link_name(entry, &path)?;
                self.hardlink(&path, &parent, &name, &target)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let header = entry.header();
                let dev = |v: io::Result<Option<u32>>| v.ok().flatten().unwrap_or(0);
                let (major, minor) = (dev(header.device_major()), dev(header.device_minor()));
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                self.special(
                    &path,
                    &parent,
                    &name,
                    file_type,
                    rfs::makedev(major, minor),
                    &meta,
                )
            }
            other => Err(ApplyError::UnsupportedEntry {
                layer: self.name(),
                path: shown,
                type_flag: other.as_byte() as char,
            }),
        }
    }

    fn link_name<R: Read>(&self, entry: &tar::Entry<'_, R>, path: &RelPath) -> Result<Vec<u8>> {
        match entry.link_name_bytes() {
            Some(target) if !target.is_empty() && !target.contains(&0) => Ok(target.into_owned()),
            _ => Err(ApplyError::BadHeader {
                layer: self.name(),
                path: path.to_string(),
                field: "linkname",
            }),
        }
    }

    /// The directory `parent`, created if missing, from a one-entry cache (tar entries of one
    /// directory are usually adjacent).
    fn parent(&mut self, parent: &RelPath) -> Result<Rc<OwnedFd>> {
        if let Some((cached, fd)) = &self.parent_cache
            && cached == parent
        {
            return Ok(fd.clone());
        }
        let (fd, created) = self
            .root
            .dir_creating(parent)
            .map_err(|e| ApplyError::Resolve {
                layer: self.name(),
                path: parent.to_string(),
                source: e.into(),
            })?;
        for path in created {
            self.deferred.set(path.clone(), 0o755, None);
            self.unpacked.insert(path);
        }
        let fd = Rc::new(fd);
        self.parent_cache = Some((parent.clone(), fd.clone()));
        Ok(fd)
    }

    /// Remove whatever `name` is in `dir` (recursively for a directory), never following it.
    fn remove_existing(&mut self, dir: BorrowedFd<'_>, name: &[u8], path: &RelPath) -> Result<()> {
        let Some(st) = lstat_at(dir, name).map_err(self.fs("inspecting", path))? else {
            return Ok(());
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                tree::remove_all(dir, name).map_err(self.fs("removing directory", path))?;
                self.deferred.forget_below(path);
                self.parent_cache = None;
            }
            kind => {
                rfs::unlinkat(dir, name, AtFlags::empty()).map_err(self.fs("removing", path))?;
                if kind == FileType::Symlink {
                    self.parent_cache = None;
                }
            }
        }
        Ok(())
    }

    fn root_dir(&mut self, meta: &Meta) -> Result<()> {
        let root = RelPath::root();
        let fd = open_dir_at(self.root.fd(), b".").map_err(self.fs("opening", &root))?;
        self.owner(fd.as_fd(), meta, &root)?;
        self.xattrs(Target::Fd(fd.as_fd()), meta, &root)?;
        self.deferred.set(root, meta.mode, Some(meta.times()));
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &RelPath,
        parent: &RelPath,
        name: &[u8],
        meta: &Meta,
        budget: &Budget,
    ) -> Result<()> {
        let dir = self.parent(parent)?;
        // O_EXCL | O_NOFOLLOW: we only ever write into an inode we just created. Whatever holds
        // the name already (a lower layer's file, a symlink, a directory) makes the create fail
        // with EEXIST and is removed, never followed, before the one retry; in a fresh tree that
        // saves an lstat per file.
        let create = |dir: &OwnedFd| {
            rfs::openat(
                dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        let fd = match create(&dir) {
            Err(Errno::EXIST) => {
                self.remove_existing(dir.as_fd(), name, path)?;
                create(&dir)
            }
            other => other,
        }
        .map_err(self.fs("creating file", path))?;
        let mut file = std::fs::File::from(fd);
        if self.buffer.is_empty() {
            self.buffer = vec![0u8; COPY_BUFFER];
        }
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(e, budget)),
            };
            file.write_all(&self.buffer[..n])
                .map_err(self.io("writing", path))?;
        }
        // chown clears setuid/setgid and security.capability: owner, then mode, then xattrs.
        self.owner(file.as_fd(), meta, path)?;
        rfs::fchmod(&file, Mode::from_raw_mode(meta.mode)).map_err(self.fs("chmod", path))?;
        self.xattrs(Target::Fd(file.as_fd()), meta, path)?;
        rfs::futimens(&file, &meta.times()).map_err(self.fs("setting times of", path))?;
        self.unpacked.insert(path.clone());
        Ok(())
    }

    fn directory(
        &mut self,
        path: &RelPath,
        parent: &RelPath,
        name: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        let dir = self.parent(parent)?;
        let existing = lstat_at(dir.as_fd(), name).map_err(self.fs("inspecting", path))?;
        let is_dir = existing
            .as_ref()
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if !is_dir {
            self.remove_existing(dir.as_fd(), name, path)?;
            rfs::mkdirat(&*dir, name, Mode::from_raw_mode(0o700))
                .map_err(self.fs("creating directory", path))?;
        }
        let fd = open_dir_at(dir.as_fd(), name).map_err(self.fs("opening directory", path))?;
        self.owner(fd.as_fd(), meta, path)?;
        self.xattrs(Target::Fd(fd.as_fd()), meta, path)?;
        self.deferred
            .set(path.clone(), meta.mode, Some(meta.times()));
        self.unpacked.insert(path.clone());
        Ok(())
    }

    fn symlink(
        &mut self,
        path: &RelPath,
        parent: &RelPath,
        name: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        let dir = self.parent(parent)?;
        self.remove_existing(dir.as_fd(), name, path)?;
        // The link's text is data: it is never resolved here, only by later lookups in the root.
        rfs::symlinkat(target, &*dir, name).map_err(self.fs("creating symlink", path))?;
        self.parent_cache = None;
        self.owner_at(dir.as_fd(), name, meta, path)?;
        self.xattrs(Target::At(dir.as_fd(), name), meta, path)?;
        rfs::utimensat(&*dir, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(self.fs("setting times of", path))?;
        self.unpacked.insert(path.clone());
        Ok(())
    }

    fn hardlink(
        &mut self,
        path: &RelPath,
        parent: &RelPath,
        name: &[u8],
        raw: &[u8],
    ) -> Result<()> {
        let shown = String::from_utf8_lossy(raw).into_owned();
        let refuse = |reason| ApplyError::UnsafePath {
            layer: self.name(),
            path: format!("{path} -> {shown}"),
            reason,
        };
        let target = RelPath::normalize(raw).map_err(refuse)?;
        if target == *path {
            return Err(refuse(UnsafePathReason::SelfLink));
        }
        let Some((tparent, tname)) = target.split() else {
            return Err(refuse(UnsafePathReason::Empty));
        };
        let layer = self.name();
        let fail = |source: Errno| ApplyError::Hardlink {
            layer: layer.clone(),
            path: path.to_string(),
            target: target.to_string(),
            source: source.into(),
        };
        // The target's directory is resolved inside the root like any other path, and its last
        // component is linked as it is (linkat without AT_SYMLINK_FOLLOW): a hardlink can only
        // name an inode that is already inside the root.
        let tdir = self.root.dir(&tparent).map_err(fail)?;
        let tst = lstat_at(tdir.as_fd(), tname)
            .map_err(fail)?
            .ok_or_else(|| fail(Errno::NOENT))?;
        if FileType::from_raw_mode(tst.st_mode) == FileType::Directory {
            return Err(fail(Errno::PERM));
        }
        let dir = self.parent(parent)?;
        if let Some(st) = lstat_at(dir.as_fd(), name).map_err(self.fs("inspecting", path))? {
            if (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino) {
                self.unpacked.insert(path.clone());
                return Ok(());
            }
            self.remove_existing(dir.as_fd(), name, path)?;
        }
        rfs::linkat(&tdir, tname, &*dir, name, AtFlags::empty()).map_err(fail)?;
        self.unpacked.insert(path.clone());
        Ok(())
    }

    fn special(
        &mut self,
        path: &RelPath,
        parent: &RelPath,
        name: &[u8],
        file_type: FileType,
        dev: rfs::Dev,
        meta: &Meta,
    ) -> Result<()> {
        if file_type != FileType::Fifo && !self.privileged {
            self.warnings.add(WarningKind::DeviceNotCreated, path);
            return Ok(());
        }
        let dir = self.parent(parent)?;
        self.remove_existing(dir.as_fd(), name, path)?;
        rfs::mknodat(&*dir, name, file_type, Mode::from_raw_mode(0o600), dev)
            .map_err(self.fs("creating device node", path))?;
        self.owner_at(dir.as_fd(), name, meta, path)?;
        // chmodat follows a symlink, but `name` is the node we just made in our private staging
        // directory, which nobody else can write.
        rfs::chmodat(
            &*dir,
            name,
            Mode::from_raw_mode(meta.mode),
            AtFlags::empty(),
        )
        .map_err(self.fs("chmod", path))?;
        self.xattrs(Target::At(dir.as_fd(), name), meta, path)?;
        rfs::utimensat(&*dir, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(self.fs("setting times of", path))?;
        self.unpacked.insert(path.clone());
        Ok(())
    }

    /// `path` as a directory if it resolves to one; `None` if it does not exist.
    fn existing_dir(&self, path: &RelPath) -> Result<Option<OwnedFd>> {
        match self.root.dir(path) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(ApplyError::Resolve {
                layer: self.name(),
                path: path.to_string(),
                source: e.into(),
            }),
        }
    }
}

/// A failed read of the layer stream: a [`Limit`] if the budget refused it, else the I/O error.
pub(super) fn read_error(
    layer: &LayerName,
    limits: &Limits,
    budget: &Budget,
    source: io::Error,
) -> ApplyError {
    match budget.exceeded() {
        Some(limit) => ApplyError::LimitExceeded {
            layer: Box::new(layer.clone()),
            limit,
            max: match limit {
                Limit::Entries => limits.max_entries,
                Limit::UncompressedSize => limits.max_uncompressed_size,
                Limit::EntryMetadata => limits.max_entry_metadata,
            },
        },
        None => ApplyError::Read {
            layer: Box::new(layer.clone()),
            uncompressed_offset: budget.total(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_everything_below_a_removed_directory() {
        let p = |s: &str| RelPath::normalize(s.as_bytes()).unwrap();
        let mut d = Deferred::default();
        for s in ["a", "a/b", "a/b/c", "a-b", "a.b", "ab"] {
            d.set(p(s), 0o755, None);
        }
        d.forget_below(&p("a"));
        let left: Vec<String> = d.0.keys().map(ToString::to_string).collect();
        assert_eq!(left, ["a-b", "a.b", "ab"]);
    }
}
