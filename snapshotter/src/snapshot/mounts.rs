//! How to mount a snapshot: the [`Mounts`] description the drivers return, and
//! [`Mounts::mount_at`] / [`unmount`] for callers that need a mounted rootfs (the sandbox, tests).
//! Callers that only read changes (the layer differ) use [`Mounts::upperdir`] without mounting.
//!
//! # Overlay mount strategy
//!
//! Kernel reference: `Documentation/filesystems/overlayfs.rst` ("Multiple lower layers": the
//! lowerdir list is given top first; "Upper and Lower": upperdir and workdir must be on the same
//! filesystem, and a mount without upperdir is read-only).
//!
//! Two limits make the classic `mount(2)` call unusable for deep stacks: its option string is
//! copied into one page (4096 bytes on x86-64; `copy_mount_options`), and an `fsconfig(2)` string
//! is capped at 256 bytes (`strndup_user(value, 256)` in `fs/fsopen.c`), so the whole `lowerdir=`
//! list does not fit either. overlayfs itself stacks up to 500 lower layers (`OVL_MAX_STACK`).
//!
//! 1. [`OverlayApi::LowerdirPlus`] (Linux 6.8+, `ovl: add support for appending lowerdirs one by
//!    one`): `fsopen("overlay")`, one `fsconfig(FSCONFIG_SET_STRING, "lowerdir+", dir)` per layer
//!    (top first), `upperdir`/`workdir`, `FSCONFIG_CMD_CREATE`, `fsmount`, `move_mount` onto the
//!    target. No length limit besides 256 bytes per path. The kernel's messages are read back
//!    from the fs context and put into the error.
//! 2. [`OverlayApi::Legacy`] (older kernels, or a path over 256 bytes): classic `mount(2)` with
//!    every path made relative to the layers' common ancestor, from a helper thread that did
//!    `unshare(CLONE_FS)` and `chdir`ed there, so the process's working directory never changes.
//!    Docker's overlay2 gets short names with an `l/` directory of symlinks because its layer
//!    directories are 64-hex ids; ours are already short decimal ids (`snapshots/<id>/fs`), so
//!    the relative path `<id>/fs` is as short as such a link (≈10 bytes a layer, so ≈400 layers
//!    fit a 4 KiB page) without a second namespace to keep consistent on crash. Past the page the
//!    mount is refused with [`SnapshotError::MountOptionsTooLong`].
//!
//! Which one a kernel supports is probed once per process ([`overlay_api`]).
//!
//! Not responsible for: choosing layers (the drivers) or mount namespaces and propagation (the
//! sandbox).

use std::ffi::CString;
use std::marker::PhantomData;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::CWD;
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use super::error::{KernelLog, MountStep, Result, SnapshotError};

/// Longest string `fsconfig(FSCONFIG_SET_STRING)` accepts (`fs/fsopen.c`).
const FSCONFIG_STRING_MAX: usize = 255;

/// Options of every writable overlay, whatever the module defaults: the differ turns an upperdir
/// into an OCI layer, and OCI layers can express plain entries, whiteouts and opaque
/// directories, but not redirected directories or metadata-only copy-ups
/// (`Documentation/filesystems/overlayfs.rst`, "Redirect dir" and "Metadata only copy up").
/// With them off, renaming a lower directory fails with EXDEV and tools fall back to copying.
const WRITABLE_OPTIONS: [(&str, &str); 2] = [("redirect_dir", "off"), ("metacopy", "off")];

/// What to mount to see a snapshot's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mounts {
    /// An overlayfs stack.
    Overlay(OverlayMount),
    /// A bind mount of one directory (the copy driver, a parentless overlay snapshot, or a view
    /// of a single layer).
    Bind(BindMount),
}

/// An overlayfs mount: lower layers top first, plus an upper layer when writable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayMount {
    /// Lower layers, topmost (nearest parent) first, as overlayfs expects.
    pub lowerdirs: Vec<PathBuf>,
    /// The writable layer; `None` for a read-only view.
    pub upper: Option<UpperDir>,
}

/// The writable layer of an overlay and its scratch directory (same filesystem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpperDir {
    /// Receives every change: new and modified files, whiteouts (`0/0` character devices),
    /// opaque directories (`trusted.overlay.opaque=y`).
    pub upperdir: PathBuf,
    /// overlayfs's work directory; empty when not mounted.
    pub workdir: PathBuf,
}

/// A bind mount of `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub access: Access,
}

/// Whether a mount may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

impl Mounts {
    /// The filesystem type as `mount -t` and OCI runtime specs name it.
    pub fn fs_type(&self) -> &'static str {
        match self {
            Self::Overlay(_) => "overlay",
            Self::Bind(_) => "bind",
        }
    }

    /// The mount source: `overlay` for an overlay, the directory for a bind.
    pub fn source(&self) -> &Path {
        match self {
            Self::Overlay(_) => Path::new("overlay"),
            Self::Bind(bind) => &bind.source,
        }
    }

    /// containerd-style option strings (`lowerdir=…`, `upperdir=…`, `workdir=…`, or `rbind`,
    /// `ro`/`rw`), for OCI runtime specs. An OCI runtime passes them to `mount(2)` in one page:
    /// for deep stacks prefer [`Mounts::mount_at`], which is not limited.
    pub fn options(&self) -> Vec<String> {
        match self {
            Self::Overlay(overlay) => {
                let mut lowerdir = String::from("lowerdir=");
                for (i, dir) in overlay.lowerdirs.iter().enumerate() {
                    if i > 0 {
                        lowerdir.push(':');
                    }
                    lowerdir.push_str(&dir.to_string_lossy());
                }
                let mut options = vec![lowerdir];
                if let Some(upper) = &overlay.upper {
                    options.push(format_option("upperdir", &upper.upperdir));
                    options.push(format_option("workdir", &upper.workdir));
                    for (key, value) in WRITABLE_OPTIONS {
                        let mut option = String::from(key);
                        option.push('=');
                        option.push_str(value);
                        options.push(option);
                    }
                }
                options
            }
            Self::Bind(bind) => vec![
                "rbind".to_owned(),
                match bind.access {
                    Access::ReadWrite => "rw".to_owned(),
                    Access::ReadOnly => "ro".to_owned(),
                },
            ],
        }
    }

    pub fn access(&self) -> Access {
        match self {
            Self::Overlay(OverlayMount { upper: Some(_), .. }) => Access::ReadWrite,
            Self::Overlay(OverlayMount { upper: None, .. }) => Access::ReadOnly,
            Self::Bind(bind) => bind.access,
        }
    }

    /// The directory that collects this snapshot's writes, read directly by the overlay differ:
    /// the overlay upperdir, or the directory of a writable bind.
    pub fn upperdir(&self) -> Option<&Path> {
        match self {
            Self::Overlay(overlay) => overlay.upper.as_ref().map(|u| u.upperdir.as_path()),
            Self::Bind(bind) => (bind.access == Access::ReadWrite).then_some(bind.source.as_path()),
        }
    }

    /// Mount at the existing directory `target`, with the best overlay API of this kernel.
    /// The guard unmounts on drop; it borrows `self`, so an [`super::ActiveSnapshot`] cannot be
    /// committed while its mount is alive.
    pub fn mount_at(&self, target: &Path) -> Result<MountGuard<'_>> {
        self.mount_at_with(target, overlay_api())
    }

    /// [`Mounts::mount_at`] with an explicit overlay API (tests and diagnostics).
    pub fn mount_at_with(&self, target: &Path, api: OverlayApi) -> Result<MountGuard<'_>> {
        match self {
            Self::Overlay(overlay) => {
                let fits_fsconfig = overlay
                    .all_dirs()
                    .all(|dir| dir.as_os_str().len() <= FSCONFIG_STRING_MAX);
                match api {
                    OverlayApi::LowerdirPlus if fits_fsconfig => {
                        mount_overlay_new_api(overlay, target)?
                    }
                    _ => mount_overlay_legacy(overlay, target)?,
                }
            }
            Self::Bind(bind) => mount_bind(bind, target)?,
        }
        Ok(MountGuard {
            target: target.to_owned(),
            mounted: true,
            _mounts: PhantomData,
        })
    }
}

fn format_option(key: &str, path: &Path) -> String {
    let mut option = String::from(key);
    option.push('=');
    option.push_str(&path.to_string_lossy());
    option
}

impl OverlayMount {
    fn all_dirs(&self) -> impl Iterator<Item = &Path> {
        self.lowerdirs.iter().map(PathBuf::as_path).chain(
            self.upper
                .iter()
                .flat_map(|u| [u.upperdir.as_path(), u.workdir.as_path()]),
        )
    }
}

/// Which interface mounts an overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayApi {
    /// New mount API, one `lowerdir+` per layer (Linux 6.8+).
    LowerdirPlus,
    /// Classic `mount(2)` with relative paths in one page of options.
    Legacy,
}

/// The best overlay API of the running kernel, probed once per process: `lowerdir+` is supported
/// when an overlay fs context accepts it.
pub fn overlay_api() -> OverlayApi {
    static API: OnceLock<OverlayApi> = OnceLock::new();
    *API.get_or_init(|| {
        let Ok(fs) = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) else {
            return OverlayApi::Legacy;
        };
        match rustix::mount::fsconfig_set_string(&fs, "lowerdir+", "/") {
            Ok(()) => OverlayApi::LowerdirPlus,
            Err(_) => OverlayApi::Legacy,
        }
    })
}

fn mount_overlay_new_api(overlay: &OverlayMount, target: &Path) -> Result<()> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|errno| {
        SnapshotError::Mount {
            step: MountStep::Open,
            target: target.to_owned(),
            kernel_log: KernelLog::default(),
            source: errno.into(),
        }
    })?;
    let fail = |step: MountStep, fs: &OwnedFd| {
        let target = target.to_owned();
        let kernel_log = read_kernel_log(fs);
        move |errno: Errno| SnapshotError::Mount {
            step,
            target,
            kernel_log,
            source: errno.into(),
        }
    };
    for lower in &overlay.lowerdirs {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", lower)
            .map_err(|e| fail(MountStep::Configure("lowerdir+"), &fs)(e))?;
    }
    if let Some(upper) = &overlay.upper {
        rustix::mount::fsconfig_set_string(&fs, "upperdir", &upper.upperdir)
            .map_err(|e| fail(MountStep::Configure("upperdir"), &fs)(e))?;
        rustix::mount::fsconfig_set_string(&fs, "workdir", &upper.workdir)
            .map_err(|e| fail(MountStep::Configure("workdir"), &fs)(e))?;
        for (key, value) in WRITABLE_OPTIONS {
            rustix::mount::fsconfig_set_string(&fs, key, value)
                .map_err(|e| fail(MountStep::Configure(key), &fs)(e))?;
        }
    }
    rustix::mount::fsconfig_create(&fs).map_err(|e| fail(MountStep::Create, &fs)(e))?;
    let attrs = match overlay.upper {
        Some(_) => MountAttrFlags::empty(),
        None => MountAttrFlags::MOUNT_ATTR_RDONLY,
    };
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| fail(MountStep::Mount, &fs)(e))?;
    rustix::mount::move_mount(
        mnt.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| fail(MountStep::Attach, &fs)(e))
}

/// Drain the messages the kernel queued on an fs context (`e overlayfs: …` lines).
fn read_kernel_log(fs: &OwnedFd) -> KernelLog {
    let mut lines = Vec::new();
    let mut buf = [0u8; 1024];
    // Each read returns one message; ENODATA when the queue is empty. Bounded for safety.
    for _ in 0..16 {
        match rustix::io::read(fs, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => lines.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()),
        }
    }
    KernelLog(lines)
}

fn mount_overlay_legacy(overlay: &OverlayMount, target: &Path) -> Result<()> {
    let target = std::path::absolute(target).map_err(SnapshotError::fs("resolve mount target"))?;
    let base = common_ancestor(overlay.all_dirs());
    let relative = |dir: &Path| -> Result<String> {
        let rel = dir.strip_prefix(&base).unwrap_or(dir);
        let text = if rel.as_os_str().is_empty() {
            ".".to_owned()
        } else {
            rel.to_string_lossy().into_owned()
        };
        if text.contains([',', ':', '\\']) || rel.to_str().is_none() {
            return Err(SnapshotError::UnmountablePath {
                path: dir.to_owned(),
            });
        }
        Ok(text)
    };
    let mut data = String::from("lowerdir=");
    for (i, lower) in overlay.lowerdirs.iter().enumerate() {
        if i > 0 {
            data.push(':');
        }
        data.push_str(&relative(lower)?);
    }
    if let Some(upper) = &overlay.upper {
        data.push_str(",upperdir=");
        data.push_str(&relative(&upper.upperdir)?);
        data.push_str(",workdir=");
        data.push_str(&relative(&upper.workdir)?);
        for (key, value) in WRITABLE_OPTIONS {
            data.push(',');
            data.push_str(key);
            data.push('=');
            data.push_str(value);
        }
    }
    // One page, including the terminating NUL.
    let limit = rustix::param::page_size() - 1;
    if data.len() > limit {
        return Err(SnapshotError::MountOptionsTooLong {
            target,
            layers: overlay.lowerdirs.len(),
            len: data.len(),
            limit,
        });
    }
    let data =
        CString::new(data).map_err(|_| SnapshotError::UnmountablePath { path: base.clone() })?;
    let flags = match overlay.upper {
        Some(_) => MountFlags::empty(),
        None => MountFlags::RDONLY,
    };
    let fail = |step: MountStep, target: &Path| {
        let target = target.to_owned();
        move |errno: Errno| SnapshotError::Mount {
            step,
            target,
            kernel_log: KernelLog::default(),
            source: errno.into(),
        }
    };
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| -> Result<()> {
            // SAFETY: CLONE_FS only gives this thread its own cwd/root/umask; it does not
            // unshare the file descriptor table (the hazard `unshare_unsafe` documents).
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }
                .map_err(fail(MountStep::EnterLayerDir, &base))?;
            rustix::process::chdir(&base).map_err(fail(MountStep::EnterLayerDir, &base))?;
            rustix::mount::mount("overlay", &target, "overlay", flags, data.as_c_str())
                .map_err(fail(MountStep::LegacyMount, &target))
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The deepest directory containing every path (`/` at worst).
fn common_ancestor<'p>(mut paths: impl Iterator<Item = &'p Path>) -> PathBuf {
    let Some(first) = paths.next() else {
        return PathBuf::from("/");
    };
    let mut common: Vec<Component<'p>> = first.components().collect();
    for path in paths {
        let shared = common
            .iter()
            .zip(path.components())
            .take_while(|(a, b)| *a == b)
            .count();
        common.truncate(shared);
    }
    // A path is never its own ancestor here: keep at least its parent for a single path.
    if common.len() == first.components().count() {
        common.pop();
    }
    common.iter().collect()
}

fn mount_bind(bind: &BindMount, target: &Path) -> Result<()> {
    let fail = |step: MountStep| {
        let target = target.to_owned();
        move |errno: Errno| SnapshotError::Mount {
            step,
            target,
            kernel_log: KernelLog::default(),
            source: errno.into(),
        }
    };
    rustix::mount::mount_bind_recursive(&bind.source, target).map_err(fail(MountStep::Bind))?;
    if bind.access == Access::ReadOnly {
        // A bind mount ignores MS_RDONLY on creation; it takes a remount (mount(8) does the same).
        if let Err(errno) =
            rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
        {
            let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
            return Err(fail(MountStep::Bind)(errno));
        }
    }
    Ok(())
}

/// Unmount `target` (not lazily: a busy mount is an error the caller should see).
pub fn unmount(target: &Path) -> Result<()> {
    rustix::mount::unmount(target, UnmountFlags::empty()).map_err(|errno| SnapshotError::Unmount {
        target: target.to_owned(),
        source: errno.into(),
    })
}

/// A mounted snapshot; unmounts on drop (lazily if still busy then).
#[derive(Debug)]
#[must_use = "dropping the guard unmounts immediately"]
pub struct MountGuard<'m> {
    target: PathBuf,
    mounted: bool,
    _mounts: PhantomData<&'m Mounts>,
}

impl MountGuard<'_> {
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmount now and report failure (drop can only try).
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        unmount(&self.target)
    }

    /// Keep the mount after the guard is gone (a detached container's rootfs); the caller
    /// unmounts with [`unmount`].
    pub fn leak(mut self) -> PathBuf {
        self.mounted = false;
        std::mem::take(&mut self.target)
    }
}

impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        if self.mounted && unmount(&self.target).is_err() {
            let _ = rustix::mount::unmount(&self.target, UnmountFlags::DETACH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_ancestor_of_layer_dirs() {
        let dirs = [
            Path::new("/s/snapshots/1/fs"),
            Path::new("/s/snapshots/12/fs"),
            Path::new("/s/snapshots/3/work"),
        ];
        assert_eq!(common_ancestor(dirs.into_iter()), Path::new("/s/snapshots"));
        assert_eq!(
            common_ancestor([Path::new("/a/b")].into_iter()),
            Path::new("/a")
        );
    }

    #[test]
    fn legacy_mount_refuses_options_past_a_page_before_any_syscall() {
        // Layers without a deep common ancestor cannot be shortened.
        let lowerdirs = (0..300)
            .map(|i| {
                Path::new("/")
                    .join(format!("layer-{i}"))
                    .join("some/long/path/fs")
            })
            .collect();
        let overlay = OverlayMount {
            lowerdirs,
            upper: None,
        };
        let target = Path::new("/nonexistent-target");
        match mount_overlay_legacy(&overlay, target) {
            Err(SnapshotError::MountOptionsTooLong {
                layers, len, limit, ..
            }) => {
                assert_eq!(layers, 300);
                assert!(len > limit);
            }
            other => panic!("expected MountOptionsTooLong, got {other:?}"),
        }
    }

    #[test]
    fn legacy_mount_refuses_separator_characters() {
        let overlay = OverlayMount {
            lowerdirs: vec!["/s/a,b/fs".into(), "/s/c/fs".into()],
            upper: None,
        };
        assert!(matches!(
            mount_overlay_legacy(&overlay, Path::new("/nonexistent-target")),
            Err(SnapshotError::UnmountablePath { .. })
        ));
    }

    #[test]
    fn describes_overlay_and_bind() {
        let overlay = Mounts::Overlay(OverlayMount {
            lowerdirs: vec!["/l2".into(), "/l1".into()],
            upper: Some(UpperDir {
                upperdir: "/u".into(),
                workdir: "/w".into(),
            }),
        });
        assert_eq!(overlay.fs_type(), "overlay");
        assert_eq!(overlay.source(), Path::new("overlay"));
        assert_eq!(
            overlay.options(),
            [
                "lowerdir=/l2:/l1",
                "upperdir=/u",
                "workdir=/w",
                "redirect_dir=off",
                "metacopy=off"
            ]
        );
        assert_eq!(overlay.upperdir(), Some(Path::new("/u")));
        assert_eq!(overlay.access(), Access::ReadWrite);
        let view = Mounts::Bind(BindMount {
            source: "/c".into(),
            access: Access::ReadOnly,
        });
        assert_eq!(view.options(), ["rbind", "ro"]);
        assert_eq!(view.upperdir(), None);
    }
}
