//! Building the container's filesystem view, in the container's init before it forks the
//! process: `/` made private, the rootfs bind-mounted onto itself, the spec's mounts (new mount
//! API), devices, `/dev` symlinks, sysctls, masked and read-only paths, then `pivot_root`.
//!
//! Every destination is resolved from the rootfs descriptor with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so a symlink in the image (`/proc ->
//! /../../tmp/x`) resolves inside the rootfs and can never place a mount on the host
//! (CVE-2023-27561-style races and symlink escapes; runc's `securejoin` does the same job).
//! Missing destinations are created only on a tmpfs (`/dev/pts` on the tmpfs at `/dev`); the
//! rootfs itself is never written here (see [`super::prepare_mountpoints`]).
//!
//! Runs after `clone` in a copy of a multi-threaded process: system calls only, no allocation.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{CWD, FileType, Mode, OFlags, ResolveFlags};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};

use super::failure::{Failure, Step, rx};
use super::mounts::{CgroupV1, FsOption, InRoot, MountOp, MountSource, TargetKind};
use super::plan::{DeviceOp, Plan};
use super::sys::{self, Errno};

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Opens `path` beneath `root` (symlinks resolved as if `root` were `/`).
fn resolve(root: BorrowedFd<'_>, path: &CStr, flags: OFlags) -> Result<OwnedFd, Errno> {
    loop {
        let r = rustix::fs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        );
        match r {
            // A concurrent rename elsewhere in the filesystem: try again.
            Err(rustix::io::Errno::AGAIN) => continue,
            r => return rx(r),
        }
    }
}

fn is_tmpfs(fd: BorrowedFd<'_>) -> Result<bool, Errno> {
    let st = rx(rustix::fs::fstatfs(fd))?;
    Ok(st.f_type as i64 == TMPFS_MAGIC)
}

/// `move_mount(mnt, "", target, "")`.
fn attach(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    rx(rustix::mount::move_mount(
        mnt,
        c"",
        target,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    ))
}

/// `open_tree(dirfd, path, OPEN_TREE_CLONE)`: a detached copy of the mount at `path`.
fn clone_tree(dirfd: BorrowedFd<'_>, path: &CStr, extra: OpenTreeFlags) -> Result<OwnedFd, Errno> {
    rx(rustix::mount::open_tree(
        dirfd,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | extra,
    ))
}

/// A new filesystem instance: `fsopen` + `fsconfig`s + `fsmount` with mount attributes `attrs`.
fn new_fs(
    fstype: &CStr,
    source: Option<&CStr>,
    options: &[FsOption],
    attrs: u64,
) -> Result<OwnedFd, (Step, Errno)> {
    let fs = rx(rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC))
        .map_err(|e| (Step::MountCreate, e))?;
    if let Some(source) = source {
        rx(rustix::mount::fsconfig_set_string(&fs, c"source", source))
            .map_err(|e| (Step::MountOption, e))?;
    }
    for o in options {
        let r = match &o.value {
            Some(v) => rustix::mount::fsconfig_set_string(&fs, o.key.as_c_str(), v.as_c_str()),
            None => rustix::mount::fsconfig_set_flag(&fs, o.key.as_c_str()),
        };
        rx(r).map_err(|e| (Step::MountOption, e))?;
    }
    rx(rustix::mount::fsconfig_create(&fs)).map_err(|e| (Step::MountCreate, e))?;
    // fsmount takes the 32-bit MOUNT_ATTR_* flags.
    let attrs = MountAttrFlags::from_bits_retain(attrs as u32);
    rx(rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        attrs,
    ))
    .map_err(|e| (Step::MountCreate, e))
}

/// Opens mount destination `t` (an `O_PATH` descriptor), creating it first if it is missing
/// and its parent is on a tmpfs.
fn mount_target(
    root: BorrowedFd<'_>,
    t: &InRoot,
    kind: TargetKind,
) -> Result<OwnedFd, (Step, Errno)> {
    match resolve(root, &t.path, OFlags::PATH) {
        Ok(fd) => return Ok(fd),
        Err(libc::ENOENT) => {}
        Err(e) => return Err((Step::MountTarget, e)),
    }
    let parent =
        resolve(root, &t.parent, OFlags::PATH | OFlags::DIRECTORY).map_err(|e| match e {
            libc::ENOENT => (Step::MountTargetMissing, e),
            e => (Step::MountTarget, e),
        })?;
    if !is_tmpfs(parent.as_fd()).map_err(|e| (Step::MountTarget, e))? {
        return Err((Step::MountTargetMissing, libc::ENOENT));
    }
    let created = match kind {
        TargetKind::Dir => rx(rustix::fs::mkdirat(
            &parent,
            t.leaf.as_c_str(),
            Mode::from_raw_mode(0o755),
        )),
        TargetKind::File => rx(rustix::fs::openat(
            &parent,
            t.leaf.as_c_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        ))
        .map(drop),
    };
    match created {
        Ok(()) | Err(libc::EEXIST) => {}
        Err(e) => return Err((Step::MountTargetCreate, e)),
    }
    resolve(root, &t.path, OFlags::PATH).map_err(|e| (Step::MountTarget, e))
}

fn mount_one(root: BorrowedFd<'_>, m: &MountOp) -> Result<(), (Step, Errno)> {
    let target = mount_target(root, &m.target, m.target_kind)?;
    let mnt = match &m.source {
        MountSource::Fs {
            fstype,
            source,
            options,
        } => new_fs(fstype, source.as_deref(), options, m.attrs.set)?,
        MountSource::Bind { source, recursive } => {
            let extra = if *recursive {
                OpenTreeFlags::AT_RECURSIVE
            } else {
                OpenTreeFlags::empty()
            };
            let tree = clone_tree(CWD, source, extra).map_err(|e| (Step::MountCreate, e))?;
            if m.attrs.set != 0 || m.attrs.clear != 0 {
                sys::mount_setattr(
                    tree.as_fd(),
                    c"",
                    libc::AT_EMPTY_PATH as u32,
                    m.attrs.set,
                    m.attrs.clear,
                    0,
                )
                .map_err(|e| (Step::MountAttr, e))?;
            }
            if *recursive && m.attrs.recursive_set != 0 {
                let flags = (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as u32;
                let atime = m.attrs.recursive_set & libc::MOUNT_ATTR__ATIME;
                let clear = if atime != 0 {
                    libc::MOUNT_ATTR__ATIME
                } else {
                    0
                };
                sys::mount_setattr(tree.as_fd(), c"", flags, m.attrs.recursive_set, clear, 0)
                    .map_err(|e| (Step::MountAttr, e))?;
            }
            tree
        }
        MountSource::CgroupV1(v1) => return cgroup_v1(target.as_fd(), v1, m.attrs.set),
    };
    attach(mnt.as_fd(), target.as_fd()).map_err(|e| (Step::MountAttach, e))?;
    if let Some(p) = m.propagation {
        let mut flags = libc::AT_EMPTY_PATH as u32;
        if p.recursive {
            flags |= libc::AT_RECURSIVE as u32;
        }
        sys::mount_setattr(mnt.as_fd(), c"", flags, 0, 0, p.flag)
            .map_err(|e| (Step::MountAttr, e))?;
    }
    Ok(())
}

/// cgroup v1: a tmpfs at the destination with one mount per host hierarchy (the container's
/// cgroup namespace makes each show the container's own cgroup as its root).
fn cgroup_v1(target: BorrowedFd<'_>, v1: &CgroupV1, attrs: u64) -> Result<(), (Step, Errno)> {
    let dir_attrs = attrs & !libc::MOUNT_ATTR_RDONLY;
    let tmp = new_fs(c"tmpfs", Some(c"cgroup"), &v1.tmpfs_options, dir_attrs)?;
    attach(tmp.as_fd(), target).map_err(|e| (Step::MountAttach, e))?;
    for h in &v1.hierarchies {
        let step = |e: (Step, Errno)| (Step::CgroupHierarchy, e.1);
        match rx(rustix::fs::mkdirat(
            &tmp,
            h.name.as_c_str(),
            Mode::from_raw_mode(0o755),
        )) {
            Ok(()) | Err(libc::EEXIST) => {}
            Err(e) => return Err((Step::CgroupHierarchy, e)),
        }
        let dir = rx(rustix::fs::openat(
            &tmp,
            h.name.as_c_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ))
        .map_err(|e| (Step::CgroupHierarchy, e))?;
        let mnt = match &h.bind_from {
            Some(dir) => {
                let tree = clone_tree(CWD, dir, OpenTreeFlags::empty())
                    .map_err(|e| (Step::CgroupHierarchy, e))?;
                let clear = if attrs & libc::MOUNT_ATTR__ATIME != 0 {
                    libc::MOUNT_ATTR__ATIME
                } else {
                    0
                };
                sys::mount_setattr(
                    tree.as_fd(),
                    c"",
                    libc::AT_EMPTY_PATH as u32,
                    attrs,
                    clear,
                    0,
                )
                .map_err(|e| (Step::CgroupHierarchy, e))?;
                tree
            }
            None => new_fs(&h.fstype, Some(&h.fstype), &h.options, attrs).map_err(step)?,
        };
        attach(mnt.as_fd(), dir.as_fd()).map_err(|e| (Step::CgroupHierarchy, e))?;
    }
    for (name, target) in &v1.symlinks {
        match rx(rustix::fs::symlinkat(
            target.as_c_str(),
            &tmp,
            name.as_c_str(),
        )) {
            Ok(()) | Err(libc::EEXIST) => {}
            Err(e) => return Err((Step::CgroupHierarchy, e)),
        }
    }
    if attrs & libc::MOUNT_ATTR_RDONLY != 0 {
        sys::mount_setattr(
            tmp.as_fd(),
            c"",
            libc::AT_EMPTY_PATH as u32,
            libc::MOUNT_ATTR_RDONLY,
            0,
            0,
        )
        .map_err(|e| (Step::MountAttr, e))?;
    }
    Ok(())
}

fn device(root: BorrowedFd<'_>, d: &DeviceOp) -> Result<(), Errno> {
    let parent = match resolve(root, &d.target.parent, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(fd) => fd,
        Err(libc::ENOENT) if !d.required => return Ok(()),
        Err(e) => return Err(e),
    };
    let exists = match resolve(root, &d.target.path, OFlags::PATH) {
        Ok(_) => true,
        Err(libc::ENOENT) => false,
        Err(e) => return Err(e),
    };
    if !exists && !is_tmpfs(parent.as_fd())? {
        // Never create nodes in the rootfs itself (they would end up in a layer).
        return if d.required {
            Err(libc::ENOENT)
        } else {
            Ok(())
        };
    }
    match &d.host {
        Some(host) => {
            if !exists {
                let made = rx(rustix::fs::openat(
                    &parent,
                    d.target.leaf.as_c_str(),
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::CLOEXEC
                        | OFlags::NOFOLLOW,
                    Mode::empty(),
                ));
                match made {
                    Ok(_) | Err(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
            }
            let target = resolve(root, &d.target.path, OFlags::PATH)?;
            let node = clone_tree(CWD, host, OpenTreeFlags::empty())?;
            attach(node.as_fd(), target.as_fd())
        }
        None => {
            if exists {
                return Ok(());
            }
            let ftype = FileType::from_raw_mode(d.mode);
            let perm = Mode::from_raw_mode(d.mode & 0o7777);
            rx(rustix::fs::mknodat(
                &parent,
                d.target.leaf.as_c_str(),
                ftype,
                perm,
                d.rdev,
            ))?;
            rx(rustix::fs::chownat(
                &parent,
                d.target.leaf.as_c_str(),
                Some(rustix::fs::Uid::from_raw(d.uid)),
                Some(rustix::fs::Gid::from_raw(d.gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            ))?;
            // mknod applies the umask: set the mode the spec asked for.
            rx(rustix::fs::chmodat(
                &parent,
                d.target.leaf.as_c_str(),
                perm,
                rustix::fs::AtFlags::empty(),
            ))
        }
    }
}

/// Hides `path`: `/dev/null` over a file, an empty read-only tmpfs over a directory.
fn mask(root: BorrowedFd<'_>, path: &CStr) -> Result<(), Errno> {
    let target = match resolve(root, path, OFlags::PATH) {
        Ok(fd) => fd,
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let st = rx(rustix::fs::fstat(&target))?;
    let cover = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let attrs = libc::MOUNT_ATTR_RDONLY
            | libc::MOUNT_ATTR_NOSUID
            | libc::MOUNT_ATTR_NODEV
            | libc::MOUNT_ATTR_NOEXEC;
        new_fs(c"tmpfs", Some(c"tmpfs"), &[], attrs).map_err(|(_, e)| e)?
    } else {
        clone_tree(CWD, c"/dev/null", OpenTreeFlags::empty())?
    };
    attach(cover.as_fd(), target.as_fd())
}

/// Makes `path` (and everything mounted below it) read-only, nosuid, nodev, noexec.
fn make_readonly(root: BorrowedFd<'_>, path: &CStr) -> Result<(), Errno> {
    let target = match resolve(root, path, OFlags::PATH) {
        Ok(fd) => fd,
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let tree = clone_tree(
        target.as_fd(),
        c"",
        OpenTreeFlags::AT_EMPTY_PATH | OpenTreeFlags::AT_RECURSIVE,
    )?;
    let attrs = libc::MOUNT_ATTR_RDONLY
        | libc::MOUNT_ATTR_NOSUID
        | libc::MOUNT_ATTR_NODEV
        | libc::MOUNT_ATTR_NOEXEC;
    sys::mount_setattr(
        tree.as_fd(),
        c"",
        (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as u32,
        attrs,
        0,
        0,
    )?;
    attach(tree.as_fd(), target.as_fd())
}

fn write_sysctl(root: BorrowedFd<'_>, path: &CStr, value: &[u8]) -> Result<(), Errno> {
    let fd = resolve(root, path, OFlags::WRONLY | OFlags::TRUNC)?;
    rx(rustix::io::write(&fd, value)).map(drop)
}

/// Sets up the filesystem view and `pivot_root`s into it; afterwards the cwd is the new `/`.
pub(super) fn setup(plan: &Plan) -> Result<(), Failure> {
    let at = |step: Step, index: usize| move |e: Errno| Failure::new(step, index as u32, e);

    // Nothing we mount may propagate back to the host (and `pivot_root` needs a private `/`).
    rx(rustix::mount::mount_change(
        c"/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    ))
    .map_err(at(Step::RootPropagation, 0))?;

    // The rootfs as a mount of its own (pivot_root needs a mount point); `root` refers to it.
    let root = clone_tree(CWD, &plan.rootfs, OpenTreeFlags::AT_RECURSIVE)
        .map_err(at(Step::BindRootfs, 0))?;
    rx(rustix::mount::move_mount(
        &root,
        c"",
        CWD,
        plan.rootfs.as_c_str(),
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    ))
    .map_err(at(Step::BindRootfs, 0))?;
    let root = root.as_fd();

    for (i, m) in plan.mounts.iter().enumerate() {
        mount_one(root, m).map_err(|(step, e)| Failure::new(step, i as u32, e))?;
    }
    for (i, d) in plan.devices.iter().enumerate() {
        device(root, d).map_err(at(Step::Device, i))?;
    }
    for (i, s) in plan.symlinks.iter().enumerate() {
        let parent = resolve(root, &s.link.parent, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(at(Step::DevSymlink, i))?;
        match rx(rustix::fs::symlinkat(
            s.target.as_c_str(),
            &parent,
            s.link.leaf.as_c_str(),
        )) {
            Ok(()) | Err(libc::EEXIST) => {}
            Err(e) => return Err(Failure::new(Step::DevSymlink, i as u32, e)),
        }
    }
    for (i, s) in plan.sysctls.iter().enumerate() {
        write_sysctl(root, &s.path, &s.value).map_err(at(Step::Sysctl, i))?;
    }
    for (i, p) in plan.masked.iter().enumerate() {
        mask(root, &p.path).map_err(at(Step::MaskPath, i))?;
    }
    for (i, p) in plan.readonly.iter().enumerate() {
        make_readonly(root, &p.path).map_err(at(Step::ReadonlyPath, i))?;
    }

    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves the
    // new root alone (no directory for the old root needed in the image).
    let pivot = |e| Failure::new(Step::PivotRoot, 0, e);
    rx(rustix::process::fchdir(root)).map_err(pivot)?;
    rx(rustix::process::pivot_root(c".", c".")).map_err(pivot)?;
    rx(rustix::mount::unmount(c".", UnmountFlags::DETACH)).map_err(pivot)?;
    rx(rustix::process::chdir(c"/")).map_err(pivot)?;
    Ok(())
}

/// After `pivot_root`: creates the process's cwd if missing (as runc does), then makes `/`
/// read-only if the spec asks.
pub(super) fn finish(plan: &Plan) -> Result<(), Failure> {
    let p = &plan.process;
    let cwd_exists = rx(rustix::fs::openat(
        CWD,
        p.cwd.as_c_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ))
    .is_ok();
    if !cwd_exists {
        for dir in &p.cwd_ancestors {
            match rx(rustix::fs::mkdirat(
                CWD,
                dir.as_c_str(),
                Mode::from_raw_mode(0o755),
            )) {
                Ok(()) | Err(libc::EEXIST) => {}
                Err(e) => return Err(Failure::new(Step::CreateCwd, 0, e)),
            }
        }
    }
    if plan.root_readonly {
        sys::mount_setattr(CWD, c"/", 0, libc::MOUNT_ATTR_RDONLY, 0, 0)
            .map_err(|e| Failure::new(Step::RootReadonly, 0, e))?;
    }
    Ok(())
}
