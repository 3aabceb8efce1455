//! Root-bounded paths: the lexical normalisation of names taken from a layer ([`RelPath`]) and the
//! resolution of a parent directory inside the root ([`Root`]), either by the kernel
//! (`openat2(2)` with `RESOLVE_IN_ROOT` or `RESOLVE_BENEATH`, plus `RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV`) or, where `openat2` is missing or filtered, by an equivalent walk in user
//! space over file descriptors. The security argument is in the [module docs](super).
//!
//! Not responsible for: the final component of an entry's path, which callers always handle with
//! a non-following `*at` call on the directory returned here.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::error::UnsafePathReason;

/// Linux's `PATH_MAX`: a longer name could not be passed to a system call anyway.
const PATH_MAX: usize = 4096;
/// Linux's `MAXSYMLINKS` (the limit behind `ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// A clean path relative to the apply root: no leading `/`, no empty, `.` or `..` components.
/// The empty path is the root itself.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct RelPath(Vec<u8>);

impl RelPath {
    /// Normalise a name from a layer. A leading `/` is dropped (an absolute name is taken
    /// relative to the root, as every tar extractor and containerd do); `.` components and
    /// repeated `/` are dropped; a `..` component is refused outright.
    pub(super) fn normalize(raw: &[u8]) -> Result<Self, UnsafePathReason> {
        if raw.len() > PATH_MAX {
            return Err(UnsafePathReason::TooLong);
        }
        let mut out = Vec::with_capacity(raw.len());
        for component in raw.split(|&b| b == b'/') {
            match component {
                b"" | b"." => {}
                b".." => return Err(UnsafePathReason::ParentComponent),
                c => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(c);
                }
            }
        }
        Ok(Self(out))
    }

    pub(super) fn root() -> Self {
        Self(Vec::new())
    }

    pub(super) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `(parent, final component)`; `None` for the root.
    pub(super) fn split(&self) -> Option<(RelPath, &[u8])> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => (RelPath(self.0[..i].to_vec()), &self.0[i + 1..]),
            None => (RelPath::root(), &self.0[..]),
        })
    }

    /// `self/name`, for a single component `name`.
    pub(super) fn join(&self, name: &[u8]) -> RelPath {
        let mut out = self.0.clone();
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(name);
        RelPath(out)
    }

    /// Whether `self` is `other` or lies below it.
    pub(super) fn starts_with(&self, other: &RelPath) -> bool {
        other.0.is_empty()
            || (self.0.starts_with(&other.0)
                && (self.0.len() == other.0.len() || self.0[other.0.len()] == b'/'))
    }

    fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// How symlinks met while resolving a parent directory are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SymlinkResolution {
    /// As if the root were `/` (`RESOLVE_IN_ROOT`): an absolute link target starts again at the
    /// root and `..` stops at it. This is how the container will see the tree, and what Docker
    /// (`FollowSymlinkInScope`) and containerd (`fs.RootPath`) do, race-free.
    #[default]
    InRoot,
    /// Refuse any resolution that would leave the root even transiently, including every absolute
    /// symlink (`RESOLVE_BENEATH`). Stricter; refuses some layers that Docker accepts (an entry
    /// below `var/run -> /run`, say).
    Beneath,
}

/// Who resolves paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolver {
    /// The kernel (`openat2`) when it is available, else [`Resolver::Userspace`].
    #[default]
    Auto,
    /// Always the user-space walk (for kernels before 5.6 and sandboxes whose seccomp filter
    /// refuses `openat2`; also lets tests exercise the fallback).
    Userspace,
}

/// The apply root: an `O_PATH` directory descriptor every operation is relative to.
pub(super) struct Root {
    fd: OwnedFd,
    dev: u64,
    symlinks: SymlinkResolution,
    kernel: bool,
}

impl Root {
    pub(super) fn new(
        fd: OwnedFd,
        symlinks: SymlinkResolution,
        resolver: Resolver,
    ) -> rustix::io::Result<Self> {
        let dev = rfs::fstat(&fd)?.st_dev;
        let mut root = Self {
            fd,
            dev,
            symlinks,
            kernel: resolver == Resolver::Auto,
        };
        if root.kernel {
            // Probe once: ENOSYS (kernel < 5.6) or EPERM (seccomp) selects the fallback.
            match root.openat2(b".") {
                Ok(_) => {}
                Err(Errno::NOSYS | Errno::PERM | Errno::INVAL) => root.kernel = false,
                Err(e) => return Err(e),
            }
        }
        Ok(root)
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the kernel resolves paths (else the user-space walk does).
    pub(super) fn uses_kernel(&self) -> bool {
        self.kernel
    }

    /// An `O_PATH` descriptor of the directory `path` resolves to, following symlinks in every
    /// component under the [`SymlinkResolution`] policy, never leaving the root.
    pub(super) fn dir(&self, path: &RelPath) -> rustix::io::Result<OwnedFd> {
        if self.kernel {
            let p = if path.is_root() {
                b"."
            } else {
                path.as_bytes()
            };
            self.openat2(p)
        } else {
            self.walk(path)
        }
    }

    /// Like [`Root::dir`], creating missing directories (mode 0755) component by component.
    /// Returns the descriptor and the paths it created.
    pub(super) fn dir_creating(
        &self,
        path: &RelPath,
    ) -> rustix::io::Result<(OwnedFd, Vec<RelPath>)> {
        match self.dir(path) {
            Err(Errno::NOENT) => {}
            other => return other.map(|fd| (fd, Vec::new())),
        }
        let mut created = Vec::new();
        let mut prefix = RelPath::root();
        let mut cur = self.dir(&prefix)?;
        for component in path.components() {
            let next = prefix.join(component);
            cur = match self.dir(&next) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    // mkdirat never follows its final component: if `component` is a dangling
                    // symlink this fails with EEXIST and we report the original ENOENT.
                    match rfs::mkdirat(&cur, component, Mode::from_raw_mode(0o755)) {
                        Ok(()) => created.push(next.clone()),
                        Err(Errno::EXIST) => return Err(Errno::NOENT),
                        Err(e) => return Err(e),
                    }
                    self.dir(&next)?
                }
                Err(e) => return Err(e),
            };
            prefix = next;
        }
        Ok((cur, created))
    }

    fn openat2(&self, path: &[u8]) -> rustix::io::Result<OwnedFd> {
        let scope = match self.symlinks {
            SymlinkResolution::InRoot => ResolveFlags::IN_ROOT,
            SymlinkResolution::Beneath => ResolveFlags::BENEATH,
        };
        let flags = scope | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        let oflags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        // EAGAIN: a rename raced with a `..` lookup and the kernel refused to guess; retry.
        let mut attempts = 0;
        loop {
            match rfs::openat2(&self.fd, path, oflags, Mode::empty(), flags) {
                Err(Errno::AGAIN) if attempts < 16 => attempts += 1,
                other => return other,
            }
        }
    }

    /// The user-space equivalent of `openat2` for directories: one component at a time, each
    /// opened `O_PATH | O_NOFOLLOW` relative to the descriptor of its parent; symlinks are read
    /// through the descriptor of the link itself (no window in which the link can be swapped),
    /// `..` pops our own stack of descriptors (never the kernel's `..`, so a directory moved
    /// concurrently cannot carry us above the root), and every directory must be on the root's
    /// device (no mount points).
    fn walk(&self, path: &RelPath) -> rustix::io::Result<OwnedFd> {
        let mut stack: Vec<OwnedFd> = vec![self.dup_root()?];
        let mut queue: VecDeque<Vec<u8>> = path.components().map(<[u8]>::to_vec).collect();
        let mut links = 0;
        while let Some(component) = queue.pop_front() {
            match &component[..] {
                b"" | b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    } else if self.symlinks == SymlinkResolution::Beneath {
                        return Err(Errno::XDEV);
                    }
                    continue;
                }
                _ => {}
            }
            let parent = stack.last().expect("the stack always holds the root");
            let fd = rfs::openat(
                parent,
                &component[..],
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let st = rfs::fstat(&fd)?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    if st.st_dev != self.dev {
                        return Err(Errno::XDEV);
                    }
                    stack.push(fd);
                }
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    let target = rfs::readlinkat(&fd, c"", Vec::new())?.into_bytes();
                    if target.first() == Some(&b'/') {
                        if self.symlinks == SymlinkResolution::Beneath {
                            return Err(Errno::XDEV);
                        }
                        stack.truncate(1);
                    }
                    for c in target.rsplit(|&b| b == b'/') {
                        queue.push_front(c.to_vec());
                    }
                }
                _ => return Err(Errno::NOTDIR),
            }
        }
        Ok(stack.pop().expect("the stack always holds the root"))
    }

    fn dup_root(&self) -> rustix::io::Result<OwnedFd> {
        rfs::openat(
            &self.fd,
            c".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }
}

/// `lstat` of `name` in `dir`; `None` if it does not exist.
pub(super) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<Option<rfs::Stat>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, UnsafePathReason> {
        RelPath::normalize(s.as_bytes()).map(|p| p.to_string())
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(norm("./a/b/").unwrap(), "a/b");
        assert_eq!(norm("/etc//passwd").unwrap(), "etc/passwd");
        assert_eq!(norm("./").unwrap(), "");
        assert_eq!(norm("a/./b").unwrap(), "a/b");
        assert_eq!(norm("../a"), Err(UnsafePathReason::ParentComponent));
        assert_eq!(norm("a/../../b"), Err(UnsafePathReason::ParentComponent));
        assert_eq!(norm("a/.."), Err(UnsafePathReason::ParentComponent));
        assert_eq!(
            RelPath::normalize(&vec![b'a'; 5000]),
            Err(UnsafePathReason::TooLong)
        );
    }

    #[test]
    fn splits_joins_and_prefixes() {
        let p = RelPath::normalize(b"a/b/c").unwrap();
        let (parent, name) = p.split().unwrap();
        assert_eq!(parent.to_string(), "a/b");
        assert_eq!(name, b"c");
        assert_eq!(parent.join(b"c"), p);
        assert!(p.starts_with(&parent));
        assert!(p.starts_with(&RelPath::root()));
        assert!(!RelPath::normalize(b"a/bc").unwrap().starts_with(&parent));
        assert!(RelPath::root().split().is_none());
        let top = RelPath::normalize(b"x").unwrap();
        assert_eq!(top.split().unwrap().0, RelPath::root());
    }

    fn root_of(dir: &std::path::Path, symlinks: SymlinkResolution, resolver: Resolver) -> Root {
        let fd = rfs::open(dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        Root::new(fd, symlinks, resolver).unwrap()
    }

    #[test]
    fn both_resolvers_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path();
        std::fs::create_dir(top.join("real")).unwrap();
        std::os::unix::fs::symlink("/real", top.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../real", top.join("up")).unwrap();
        std::os::unix::fs::symlink("loop", top.join("loop")).unwrap();
        std::os::unix::fs::symlink("/", top.join("slash")).unwrap();
        for resolver in [Resolver::Auto, Resolver::Userspace] {
            let in_root = root_of(top, SymlinkResolution::InRoot, resolver);
            let beneath = root_of(top, SymlinkResolution::Beneath, resolver);
            let ino = |fd: OwnedFd| rfs::fstat(fd).unwrap().st_ino;
            let real = std::fs::metadata(top.join("real")).unwrap();
            let real_ino = std::os::unix::fs::MetadataExt::ino(&real);
            for p in ["abs", "up", "real"] {
                let p = RelPath::normalize(p.as_bytes()).unwrap();
                assert_eq!(ino(in_root.dir(&p).unwrap()), real_ino, "{resolver:?} {p}");
            }
            let slash = RelPath::normalize(b"slash").unwrap();
            let root_ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(top).unwrap());
            assert_eq!(ino(in_root.dir(&slash).unwrap()), root_ino);
            let abs = RelPath::normalize(b"abs").unwrap();
            assert_eq!(beneath.dir(&abs).err(), Some(Errno::XDEV), "{resolver:?}");
            let up = RelPath::normalize(b"up").unwrap();
            assert_eq!(beneath.dir(&up).err(), Some(Errno::XDEV), "{resolver:?}");
            let lp = RelPath::normalize(b"loop").unwrap();
            assert_eq!(in_root.dir(&lp).err(), Some(Errno::LOOP), "{resolver:?}");
        }
    }
}
