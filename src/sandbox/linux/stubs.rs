//! Mount points the rootfs lacks, created before a container starts and removed after it ended,
//! so they never end up in a layer ([`prepare_mountpoints`], [`Stubs::remove`]).
//!
//! The runtime itself never writes to the rootfs: it creates missing mount destinations only on
//! a tmpfs it mounted (`/dev/pts` on `/dev`), and fails with a clear error otherwise. The solver
//! calls [`prepare_mountpoints`] around every RUN so that a scratch image (no `/proc`, `/dev`,
//! `/sys`) or a bind mount onto a path the image does not have still works.
//!
//! Paths are resolved beneath the rootfs (`openat2(RESOLVE_IN_ROOT)`): a symlink in the image
//! cannot make us create anything outside it.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};

use super::super::{Result, SandboxError};
use super::mounts::{self, InRoot, TargetKind};

/// What [`prepare_mountpoints`] created in a rootfs; give it back to [`Stubs::remove`].
#[derive(Debug)]
#[must_use = "call Stubs::remove after the container ended, or the stubs stay in the rootfs"]
pub struct Stubs {
    root: PathBuf,
    /// In creation order (parents before children).
    created: Vec<Created>,
}

#[derive(Debug)]
struct Created {
    path: InRoot,
    kind: TargetKind,
    /// The parent directory's mtime before we created the entry.
    parent_mtime: Timespec,
}

fn io_err(op: String, e: rustix::io::Errno) -> SandboxError {
    SandboxError::io(op, e.into())
}

fn resolve(root: BorrowedFd<'_>, path: &CStr, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    loop {
        match rustix::fs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(rustix::io::Errno::AGAIN) => continue,
            r => return r,
        }
    }
}

/// Creates, inside `spec.root.path`, every mount destination of `spec` that does not exist
/// (directories; an empty file for a bind mount of a file), except destinations beneath an
/// earlier non-bind mount (a tmpfs, `/proc`, `/sys`: the runtime handles those). Records
/// what it created.
pub fn prepare_mountpoints(spec: &Spec) -> Result<Stubs> {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| SandboxError::Spec("spec has no root".into()))?;
    // How `cgroup` mounts are made does not matter here: they are below `/sys`.
    let ops = mounts::plan_mounts(
        spec.mounts().as_deref().unwrap_or_default(),
        &mounts::CgroupMount::Cgroup2,
    )?;
    let rootfd = open_root(&root)?;
    let mut stubs = Stubs {
        root,
        created: Vec::new(),
    };
    for (i, op) in ops.iter().enumerate() {
        let covered =
            ops.get(..i).unwrap_or_default().iter().any(|earlier| {
                earlier.creates_fresh_tree() && op.target.is_within(&earlier.target)
            });
        if covered {
            continue;
        }
        if let Err(e) = stubs.ensure(rootfd.as_fd(), &op.target, op.target_kind) {
            // Leave the rootfs as we found it.
            let _ = stubs.remove();
            return Err(e);
        }
    }
    Ok(stubs)
}

fn open_root(root: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(format!("opening rootfs {}", root.display()), e))
}

impl Stubs {
    /// Whether nothing was created.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
    }

    /// The created paths (inside the rootfs, absolute), parents first.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.created.iter().map(|c| c.path.as_path())
    }

    /// Makes `target` exist, creating missing ancestors as directories.
    fn ensure(&mut self, root: BorrowedFd<'_>, target: &InRoot, kind: TargetKind) -> Result<()> {
        let mut prefix = PathBuf::from("/");
        let components: Vec<_> = target.as_path().components().skip(1).collect();
        for (n, component) in components.iter().enumerate() {
            let parent_fd = resolve(root, &cstring(&prefix), OFlags::PATH | OFlags::DIRECTORY)
                .map_err(|e| {
                    io_err(
                        format!("mount point parent {} in the rootfs", prefix.display()),
                        e,
                    )
                })?;
            prefix.push(component);
            let here = InRoot::new(&prefix).expect("absolute path below /");
            match resolve(root, &here.path, OFlags::PATH) {
                Ok(_) => continue,
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    return Err(io_err(
                        format!("mount point {} in the rootfs", prefix.display()),
                        e,
                    ));
                }
            }
            let last = n + 1 == components.len();
            let this_kind = if last { kind } else { TargetKind::Dir };
            let parent_mtime = rustix::fs::fstat(&parent_fd)
                .map(|st| Timespec {
                    tv_sec: st.st_mtime as _,
                    tv_nsec: st.st_mtime_nsec as _,
                })
                .map_err(|e| io_err(format!("stat of {}", prefix.display()), e))?;
            let made = match this_kind {
                TargetKind::Dir => rustix::fs::mkdirat(
                    &parent_fd,
                    here.leaf.as_c_str(),
                    Mode::from_raw_mode(0o755),
                ),
                TargetKind::File => rustix::fs::openat(
                    &parent_fd,
                    here.leaf.as_c_str(),
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .map(drop),
            };
            match made {
                Ok(()) => self.created.push(Created {
                    path: here,
                    kind: this_kind,
                    parent_mtime,
                }),
                // It did not resolve, yet its name exists: a dangling symlink.
                Err(rustix::io::Errno::EXIST) => {
                    return Err(SandboxError::Spec(format!(
                        "mount point {} is a dangling symlink in the rootfs",
                        prefix.display()
                    )));
                }
                Err(e) => {
                    return Err(io_err(
                        format!("creating mount point {}", prefix.display()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Removes what [`prepare_mountpoints`] created, deepest first, each only if it is still an
    /// empty directory or empty file, and restores the parent directory's mtime.
    pub fn remove(self) -> Result<()> {
        if self.created.is_empty() {
            return Ok(());
        }
        let rootfd = open_root(&self.root)?;
        for c in self.created.iter().rev() {
            let parent = match resolve(
                rootfd.as_fd(),
                &c.path.parent,
                OFlags::RDONLY | OFlags::DIRECTORY,
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => {
                    return Err(io_err(format!("opening {}", c.path.display()), e));
                }
            };
            let leaf = c.path.leaf.as_c_str();
            let removed = match c.kind {
                TargetKind::Dir => rustix::fs::unlinkat(&parent, leaf, AtFlags::REMOVEDIR),
                TargetKind::File => {
                    match rustix::fs::statat(&parent, leaf, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st)
                            if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                                && st.st_size == 0 =>
                        {
                            rustix::fs::unlinkat(&parent, leaf, AtFlags::empty())
                        }
                        Ok(_) => Err(rustix::io::Errno::NOTEMPTY),
                        Err(e) => Err(e),
                    }
                }
            };
            match removed {
                Ok(()) => {}
                // Used by the container (it wrote something there) or gone: keep, or nothing to do.
                Err(
                    rustix::io::Errno::NOTEMPTY
                    | rustix::io::Errno::EXIST
                    | rustix::io::Errno::NOENT,
                ) => continue,
                Err(e) => {
                    return Err(io_err(
                        format!("removing mount point {}", c.path.display()),
                        e,
                    ));
                }
            }
            let times = Timestamps {
                last_access: Timespec {
                    tv_sec: 0,
                    tv_nsec: libc::UTIME_OMIT as _,
                },
                last_modification: c.parent_mtime,
            };
            rustix::fs::futimens(&parent, &times).map_err(|e| {
                io_err(
                    format!("restoring the mtime of the parent of {}", c.path.display()),
                    e,
                )
            })?;
        }
        Ok(())
    }
}

fn cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default()
}
