//! Root-bounded file operations on a snapshot's writable rootfs (a mounted overlay or a copy
//! tree), for the file steps (COPY, WORKDIR).
//!
//! Every operation works on a directory descriptor of the entry's parent, opened with
//! `openat2(2)` and `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV` from the
//! rootfs's descriptor: the kernel resolves `..` and symlinks as if the rootfs were `/`, so no
//! path (however the image's symlinks are laid out) reaches outside it, and there is no window
//! between checking a path and using it. The final component is never followed: files are
//! created `O_CREAT | O_EXCL | O_NOFOLLOW`, owners and times are set `AT_SYMLINK_NOFOLLOW`,
//! modes with `fchmod` on a descriptor we opened (after `fchown`, which clears setuid bits).
//!
//! [`InRoot::resolve`] turns an image path into the real path the image has for it (following
//! the image's symlinks inside the root, e.g. `/bin/x` → `usr/bin/x` in merged-/usr images), so
//! that the layer names the path where the files really land.
//!
//! Not responsible for: deciding what to write (the steps), mounting (the snapshotter).

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use snapshotter::layer::LayerPath;

/// Longest chain of symlinks [`InRoot::resolve`] follows (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// A failed operation inside the rootfs.
#[derive(Debug, thiserror::Error)]
pub enum InRootError {
    #[error("cannot {op} `/{path}` in the image filesystem")]
    Op {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the image filesystem at `{path}`")]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot overwrite directory `/{0}` with a non-directory")]
    OverwriteDirectory(String),
    #[error("cannot create directory `/{0}`: a non-directory is in the way")]
    NotADirectory(String),
}

type Result<T> = std::result::Result<T, InRootError>;

/// What is at a path, not following a final symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub kind: StatKind,
    /// Permission bits plus setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

/// File types a file step meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    Directory,
    File,
    Symlink,
    Other,
}

/// A rootfs opened for root-bounded operations.
#[derive(Debug)]
pub struct InRoot {
    root: OwnedFd,
}

fn op_err<'a>(op: &'static str, path: &'a LayerPath) -> impl FnOnce(Errno) -> InRootError + 'a {
    move |e| InRootError::Op {
        op,
        path: path.as_str().to_owned(),
        source: e.into(),
    }
}

fn ts(secs: i64) -> Timespec {
    Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    }
}

impl InRoot {
    /// Open the directory `path` as the root.
    pub fn open(path: &Path) -> Result<Self> {
        let root = rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| InRootError::OpenRoot {
            path: path.to_owned(),
            source: e.into(),
        })?;
        Ok(Self { root })
    }

    /// The parent directory of `path` (resolved in the root) and the final name.
    fn parent<'p>(&self, path: &'p LayerPath) -> Result<(OwnedFd, &'p str)> {
        let (dir, name) = match path.as_str().rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => (".", path.as_str()),
        };
        let fd = rfs::openat2(
            &self.root,
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
        )
        .map_err(op_err("open the parent directory of", path))?;
        Ok((fd, name))
    }

    /// Metadata of `path` (a final symlink is not followed); `None` when nothing is there.
    pub fn lstat(&self, path: &LayerPath) -> Result<Option<Stat>> {
        let (dir, name) = match self.parent(path) {
            Ok(p) => p,
            Err(InRootError::Op { source, .. })
                if [Errno::NOENT, Errno::NOTDIR]
                    .iter()
                    .any(|e| source.raw_os_error() == Some(e.raw_os_error())) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let ft = rfs::FileType::from_raw_mode(st.st_mode);
                let kind = match ft {
                    rfs::FileType::Directory => StatKind::Directory,
                    rfs::FileType::RegularFile => StatKind::File,
                    rfs::FileType::Symlink => StatKind::Symlink,
                    _ => StatKind::Other,
                };
                Ok(Some(Stat {
                    kind,
                    mode: st.st_mode & 0o7777,
                    uid: u64::from(st.st_uid),
                    gid: u64::from(st.st_gid),
                    mtime: st.st_mtime,
                    size: u64::try_from(st.st_size).unwrap_or(0),
                    dev: st.st_dev,
                    ino: st.st_ino,
                    nlink: st.st_nlink,
                }))
            }
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
            Err(e) => Err(op_err("stat", path)(e)),
        }
    }

    /// The target of the symlink at `path`.
    pub fn read_link(&self, path: &LayerPath) -> Result<String> {
        let (dir, name) = self.parent(path)?;
        let target = rfs::readlinkat(&dir, name, Vec::new()).map_err(op_err("read link", path))?;
        Ok(target.to_string_lossy().into_owned())
    }

    /// Resolve the symlinks of the image path `path` inside the root, lexically (as the
    /// kernel's `RESOLVE_IN_ROOT` would), and return the real relative path (`""` for `/`).
    /// A missing component ends resolution (the rest is appended as is); loops stop after 40
    /// links.
    pub fn resolve(&self, path: &str) -> Result<String> {
        let mut resolved: Vec<String> = Vec::new();
        let mut pending: Vec<String> = components(path).rev().collect();
        let mut links = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                resolved.pop();
                continue;
            }
            resolved.push(c);
            let Ok(here) = LayerPath::new(&resolved.join("/")) else {
                continue;
            };
            match self.lstat(&here)? {
                Some(st) if st.kind == StatKind::Symlink && links < MAX_SYMLINKS => {
                    links += 1;
                    let target = self.read_link(&here)?;
                    resolved.pop();
                    if target.starts_with('/') {
                        resolved.clear();
                    }
                    pending.extend(components(&target).rev());
                }
                Some(_) => {}
                // A missing name: what follows is missing too, until a `..` climbs back.
                None => {}
            }
        }
        Ok(resolved.join("/"))
    }

    /// Create the directory `path` (or keep an existing one) with exactly this metadata; a
    /// non-directory in the way is replaced, as a layer entry would replace it.
    pub fn make_dir(&self, path: &LayerPath, mode: u32, uid: u64, gid: u64) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory => {}
            Ok(_) => {
                rfs::unlinkat(&dir, name, AtFlags::empty()).map_err(op_err("remove", path))?;
                rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                    .map_err(op_err("create directory", path))?;
            }
            Err(Errno::NOENT) => rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                .map_err(op_err("create directory", path))?,
            Err(e) => return Err(op_err("stat", path)(e)),
        }
        let fd = rfs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(op_err("open directory", path))?;
        set_owner_mode(&fd, path, mode, uid, gid)
    }

    /// Create the regular file `path` from `content` (replacing a non-directory there).
    pub fn write_file(
        &self,
        path: &LayerPath,
        content: &mut dyn Read,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: i64,
    ) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        self.clear_for_non_dir(&dir, name, path)?;
        let fd = rfs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(op_err("create", path))?;
        let mut file = std::fs::File::from(fd);
        std::io::copy(content, &mut file).map_err(|source| InRootError::Op {
            op: "write",
            path: path.as_str().to_owned(),
            source,
        })?;
        set_owner_mode(&file, path, mode, uid, gid)?;
        rfs::futimens(
            &file,
            &Timestamps {
                last_access: ts(mtime),
                last_modification: ts(mtime),
            },
        )
        .map_err(op_err("set times of", path))
    }

    /// Create the symlink `path` → `target` (replacing a non-directory there).
    pub fn symlink(
        &self,
        path: &LayerPath,
        target: &str,
        uid: u64,
        gid: u64,
        mtime: i64,
    ) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        self.clear_for_non_dir(&dir, name, path)?;
        rfs::symlinkat(target, &dir, name).map_err(op_err("create symlink", path))?;
        rfs::chownat(
            &dir,
            name,
            Some(rustix::fs::Uid::from_raw(id32(uid))),
            Some(rustix::fs::Gid::from_raw(id32(gid))),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(op_err("change owner of", path))?;
        self.set_mtime(path, mtime)
    }

    /// Make `path` another name of the file at `existing` (both inside the root).
    pub fn hard_link(&self, path: &LayerPath, existing: &LayerPath) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        self.clear_for_non_dir(&dir, name, path)?;
        let (src_dir, src_name) = self.parent(existing)?;
        rfs::linkat(&src_dir, src_name, &dir, name, AtFlags::empty())
            .map_err(op_err("create hard link", path))
    }

    /// Set the modification (and access) time of `path`, not following a final symlink.
    pub fn set_mtime(&self, path: &LayerPath, mtime: i64) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        rfs::utimensat(
            &dir,
            name,
            &Timestamps {
                last_access: ts(mtime),
                last_modification: ts(mtime),
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(op_err("set times of", path))
    }

    /// Open the regular file at `path` for reading (a final symlink is refused).
    pub fn open_file(&self, path: &LayerPath) -> Result<std::fs::File> {
        let (dir, name) = self.parent(path)?;
        let fd = rfs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(op_err("open", path))?;
        Ok(std::fs::File::from(fd))
    }

    /// Remove a non-directory at `name` so a new one can be created; a directory there is an
    /// error, as in Docker.
    fn clear_for_non_dir(&self, dir: &OwnedFd, name: &str, path: &LayerPath) -> Result<()> {
        match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory => {
                Err(InRootError::OverwriteDirectory(path.as_str().to_owned()))
            }
            Ok(_) => rfs::unlinkat(dir, name, AtFlags::empty()).map_err(op_err("remove", path)),
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(op_err("stat", path)(e)),
        }
    }
}

fn set_owner_mode(fd: &impl AsFd, path: &LayerPath, mode: u32, uid: u64, gid: u64) -> Result<()> {
    rfs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(id32(uid))),
        Some(rustix::fs::Gid::from_raw(id32(gid))),
    )
    .map_err(op_err("change owner of", path))?;
    rfs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777)).map_err(op_err("change mode of", path))
}

/// A uid/gid as the kernel takes it (values past `u32` are clamped to the overflow id).
fn id32(id: u64) -> u32 {
    u32::try_from(id).unwrap_or(65534)
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> LayerPath {
        LayerPath::new(s).unwrap()
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(d.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", d.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("/../../usr/../usr/bin", d.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", d.path().join("loop")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("escape")).unwrap();
        let root = InRoot::open(d.path()).unwrap();
        assert_eq!(root.resolve("/bin/x").unwrap(), "usr/bin/x");
        assert_eq!(root.resolve("/abs").unwrap(), "usr/bin");
        assert_eq!(root.resolve("/nope/x").unwrap(), "nope/x");
        assert_eq!(root.resolve("/nope/../x").unwrap(), "x");
        assert_eq!(root.resolve("/nope/../bin/x").unwrap(), "usr/bin/x");
        // A loop is an error (ELOOP), as the kernel reports it.
        assert!(root.resolve("/loop/x").is_err());
        assert_eq!(root.resolve("/../../x").unwrap(), "x");
        // Writing through a symlink to an absolute path lands inside the root.
        fs_err::create_dir_all(d.path().join("etc")).unwrap();
        root.write_file(&p("escape/f"), &mut &b"x"[..], 0o644, 0, 0, 7)
            .unwrap();
        assert!(d.path().join("etc/f").is_file());
        assert_eq!(root.lstat(&p("etc/f")).unwrap().unwrap().mtime, 7);
        assert!(root.lstat(&p("etc/g/h")).unwrap().is_none());
    }

    #[test]
    fn directories_are_not_overwritten_by_files() {
        let d = tempfile::tempdir().unwrap();
        let root = InRoot::open(d.path()).unwrap();
        root.make_dir(&p("a"), 0o1777, 0, 0).unwrap();
        assert_eq!(root.lstat(&p("a")).unwrap().unwrap().mode, 0o1777);
        assert!(matches!(
            root.write_file(&p("a"), &mut &b""[..], 0o644, 0, 0, 0),
            Err(InRootError::OverwriteDirectory(_))
        ));
        root.write_file(&p("a/f"), &mut &b"1"[..], 0o4755, 0, 0, 0)
            .unwrap();
        root.hard_link(&p("a/g"), &p("a/f")).unwrap();
        let st = root.lstat(&p("a/g")).unwrap().unwrap();
        assert_eq!((st.mode, st.nlink), (0o4755, 2));
    }
}
