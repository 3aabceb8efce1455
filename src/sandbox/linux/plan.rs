//! A spec turned into everything the container's processes need, prepared in the parent: paths
//! as C strings, mount operations, capability bitmasks, rlimits, compiled seccomp programs,
//! `argv`/`envp` arrays, namespace descriptors to join. After `clone` the children only read
//! this (their copy of the parent's memory) and make system calls.
//!
//! Also turns a child's [`Failure`] record back into an error with the plan's own strings.
//!
//! Not responsible for: executing anything (`init`, `rootfs`, `process`), cgroups (`mod.rs`
//! creates the cgroup with `sandbox::cgroup`).

use std::ffi::{CString, c_char};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceType, LinuxNamespaceType, LinuxSeccomp, LinuxSeccompFilterFlag,
    PosixRlimitType, Spec,
};
use rustix::process::{Resource, Rlimit};

use super::super::cgroup::Cgroup;
use super::super::{Result, SandboxError};
use super::caps::{self, CapSets};
use super::failure::{Failure, Step};
use super::mounts::{self, CgroupMount, InRoot, MountOp};
use super::userns::{self, UserNsPlan};

/// A NULL-terminated array of C strings (`argv`, `envp`) and the strings it points into.
pub(super) struct CArray {
    // The pointers point into these heap buffers, which do not move when the Vec does.
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl CArray {
    fn new(strings: Vec<CString>) -> Self {
        let ptrs = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Self {
            _strings: strings,
            ptrs,
        }
    }

    /// The `char *const[]` for `execve`.
    pub(super) fn as_ptr(&self) -> *const *const c_char {
        self.ptrs.as_ptr()
    }
}

impl std::fmt::Debug for CArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self._strings).finish()
    }
}

/// A namespace to join with `setns`.
#[derive(Debug)]
pub(super) struct Join {
    pub fd: OwnedFd,
    pub nstype: libc::c_int,
    pub path: PathBuf,
}

/// A device node to provide in the container.
#[derive(Debug)]
pub(super) struct DeviceOp {
    pub target: InRoot,
    /// The host's node with the same type and numbers, bind-mounted onto an empty file;
    /// `None`: `mknod` (only as real root: never planned in a user namespace).
    pub host: Option<CString>,
    /// File type and permission bits, for `mknod`.
    pub mode: u32,
    pub rdev: u64,
    pub uid: u32,
    pub gid: u32,
    /// Listed in the spec (an error if it cannot be made); the default devices are skipped
    /// when `/dev` is not a tmpfs of the container.
    pub required: bool,
}

/// A symlink to create (on a tmpfs) in the container.
#[derive(Debug)]
pub(super) struct Symlink {
    pub link: InRoot,
    pub target: CString,
}

/// A `/proc/sys` value to write.
#[derive(Debug)]
pub(super) struct Sysctl {
    pub path: CString,
    pub value: Vec<u8>,
}

/// How the process's program is found.
#[derive(Debug)]
pub(super) struct Exec {
    /// Paths to `execve`, in order: the `PATH` directories joined with `args[0]`, or `args[0]`
    /// alone when it has a `/`.
    pub candidates: Vec<CString>,
    /// `args[0]` was looked up in `PATH`.
    pub searched: bool,
    pub argv: CArray,
    pub envp: CArray,
    /// `args[0]`, for messages.
    pub program: String,
}

/// Everything about the container's process (C).
#[derive(Debug)]
pub(super) struct ProcessPlan {
    pub exec: Exec,
    /// Absolute, inside the container.
    pub cwd: CString,
    /// `/a`, `/a/b`, ... for creating `cwd` when it is missing (as runc does).
    pub cwd_ancestors: Vec<CString>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<rustix::process::Gid>,
    /// `setgroups` is denied in the container's user namespace: skip it when there are no
    /// supplementary groups (any other list fails with `EPERM`, as in runc).
    pub setgroups_denied: bool,
    pub umask: Option<u32>,
    pub caps: CapSets,
    pub no_new_privs: bool,
    pub rlimits: Vec<(Resource, Rlimit)>,
    pub oom_score_adj: Option<Vec<u8>>,
    /// Installed in order (shared: compiled once per distinct profile, see [`compile_seccomp`]).
    pub seccomp: Arc<Vec<seccompiler::BpfProgram>>,
    pub seccomp_flags: libc::c_ulong,
}

/// The whole container.
#[derive(Debug)]
pub(super) struct Plan {
    /// `CLONE_NEW*` flags for the `clone` that makes the init (cgroup namespace excluded: it is
    /// unshared after the parent moved the init into the container's cgroup).
    pub clone_flags: u64,
    pub new_pid_ns: bool,
    pub new_net_ns: bool,
    pub unshare_cgroup_ns: bool,
    /// Namespaces to join, the user namespace (if any) first.
    pub joins: Vec<Join>,
    /// `joins` starts with a user namespace: the init is cloned without new namespaces, joins
    /// it, then unshares `clone_flags` (and forks the PID 1 of a new pid namespace).
    pub join_userns: bool,
    /// A new user namespace (`CLONE_NEWUSER` is then in `clone_flags`), whose maps the parent
    /// writes before releasing the init.
    pub userns: Option<UserNsPlan>,
    /// The init becomes uid/gid 0 of the new user namespace once the maps are written (when
    /// 0 is mapped), so the files it creates (mount points on a tmpfs, the cwd) are root's.
    pub userns_root: (bool, bool),
    /// The v1 `tasks` files the init writes `0` to, to join the container's cgroup there (set
    /// by the caller from [`Cgroup::join_handles`]; for messages).
    pub cgroup_tasks: Vec<String>,
    pub hostname: Option<Vec<u8>>,
    pub rootfs: CString,
    pub root_readonly: bool,
    pub mounts: Vec<MountOp>,
    pub devices: Vec<DeviceOp>,
    pub symlinks: Vec<Symlink>,
    pub sysctls: Vec<Sysctl>,
    pub masked: Vec<InRoot>,
    pub readonly: Vec<InRoot>,
    pub process: ProcessPlan,
}

fn spec_err(msg: impl Into<String>) -> SandboxError {
    SandboxError::Spec(msg.into())
}

fn cstring(what: &str, bytes: impl Into<Vec<u8>>) -> Result<CString> {
    CString::new(bytes).map_err(|_| spec_err(format!("{what} contains a NUL byte")))
}

fn path_cstring(what: &str, path: &Path) -> Result<CString> {
    cstring(what, path.as_os_str().as_encoded_bytes())
}

/// The devices runc creates in every container (`/dev/null`, ...) unless the spec lists them.
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

impl Plan {
    /// Prepares `spec` for a container in `cgroup` (if it has one).
    pub(super) fn new(spec: &Spec, cgroup: Option<&Cgroup>) -> Result<Plan> {
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| spec_err("spec has no root"))?;
        if !root.path().is_absolute() {
            return Err(spec_err(format!(
                "root.path `{}` must be absolute",
                root.path().display()
            )));
        }
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| spec_err("spec has no process"))?;
        if process.terminal() == Some(true) {
            return Err(spec_err("process.terminal is not supported yet"));
        }
        let linux = spec.linux().as_ref();

        // Namespaces.
        let mut clone_flags = 0u64;
        let mut new_pid_ns = false;
        let mut new_net_ns = false;
        let mut unshare_cgroup_ns = false;
        let mut has_mount_ns = false;
        let mut has_uts_ns = false;
        let mut joins = Vec::new();
        for ns in linux
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or_default()
        {
            let flag = match ns.typ() {
                LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
                LinuxNamespaceType::Network => libc::CLONE_NEWNET,
                LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
                LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
                LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
                LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
                LinuxNamespaceType::User => libc::CLONE_NEWUSER,
                LinuxNamespaceType::Time => {
                    return Err(spec_err(format!(
                        "{} namespaces are not supported by the embedded runtime yet",
                        ns.typ()
                    )));
                }
            };
            has_mount_ns |= ns.typ() == LinuxNamespaceType::Mount;
            has_uts_ns |= ns.typ() == LinuxNamespaceType::Uts;
            match ns.path() {
                Some(path) => {
                    let fd = fs_err::File::open(path).map_err(|e| {
                        SandboxError::io(format!("opening namespace {}", path.display()), e)
                    })?;
                    joins.push(Join {
                        fd: OwnedFd::from(fs_err::File::into_parts(fd).0),
                        nstype: flag,
                        path: path.clone(),
                    });
                }
                None if flag == libc::CLONE_NEWCGROUP => unshare_cgroup_ns = true,
                None => {
                    clone_flags |= flag as u64;
                    new_pid_ns |= flag == libc::CLONE_NEWPID;
                    new_net_ns |= flag == libc::CLONE_NEWNET;
                }
            }
        }
        if !has_mount_ns {
            return Err(spec_err("the embedded runtime needs a mount namespace"));
        }
        // The user namespace first: the others are joined (or created) with the privileges
        // it gives.
        joins.sort_by_key(|j| j.nstype != libc::CLONE_NEWUSER);
        let joined_userns = joins
            .first()
            .filter(|j| j.nstype == libc::CLONE_NEWUSER)
            .map(|j| userns::JoinedMaps::read(&j.path));
        let userns = userns::plan(linux, clone_flags, &joins)?;
        let mapped = |uid: Option<u32>, gid: Option<u32>| match (&userns, &joined_userns) {
            (Some(u), _) => {
                uid.is_none_or(|id| u.maps_uid(id)) && gid.is_none_or(|id| u.maps_gid(id))
            }
            (None, Some(j)) => {
                uid.is_none_or(|id| j.maps_uid(id)) && gid.is_none_or(|id| j.maps_gid(id))
            }
            (None, None) => true,
        };
        let in_userns = userns.is_some() || joined_userns.is_some();
        let hostname = spec.hostname().as_ref().filter(|h| !h.is_empty());
        if hostname.is_some() && !has_uts_ns {
            return Err(spec_err("hostname is set but there is no uts namespace"));
        }

        // Mounts.
        let spec_mounts = spec.mounts().as_deref().unwrap_or_default();
        let wants_cgroup = spec_mounts
            .iter()
            .any(|m| m.typ().as_deref() == Some("cgroup"));
        let has_cgroup_ns =
            unshare_cgroup_ns || joins.iter().any(|j| j.nstype == libc::CLONE_NEWCGROUP);
        // In a user namespace, fresh cgroup mounts are refused for v1 hierarchies: bind the
        // container's (or the caller's) own cgroup directories instead, as runc does.
        let cgroup_mount = if wants_cgroup {
            cgroup_mount(has_cgroup_ns && !in_userns, cgroup)
        } else {
            CgroupMount::Cgroup2
        };
        let mut mounts = mounts::plan_mounts(spec_mounts, &cgroup_mount)?;
        if in_userns {
            userns::adapt_mounts(&mut mounts, &mapped, new_net_ns);
        }

        let devices = plan_devices(
            linux
                .and_then(|l| l.devices().as_deref())
                .unwrap_or_default(),
            !in_userns,
        )?;
        let symlinks = plan_symlinks(&mounts)?;
        let in_root_list = |paths: Option<&Vec<String>>| -> Result<Vec<InRoot>> {
            paths
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    InRoot::new(Path::new(p)).ok_or_else(|| {
                        spec_err(format!("`{p}` must be an absolute path other than /"))
                    })
                })
                .collect()
        };
        let masked = in_root_list(linux.and_then(|l| l.masked_paths().as_ref()))?;
        let readonly = in_root_list(linux.and_then(|l| l.readonly_paths().as_ref()))?;
        let mut sysctl_keys: Vec<(&String, &String)> = linux
            .and_then(|l| l.sysctl().as_ref())
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        sysctl_keys.sort();
        let sysctls = sysctl_keys
            .into_iter()
            .map(|(k, v)| {
                if k.is_empty() || k.contains('/') || k.contains("..") || k.starts_with('.') {
                    return Err(spec_err(format!("invalid sysctl `{k}`")));
                }
                Ok(Sysctl {
                    path: cstring("sysctl", format!("/proc/sys/{}", k.replace('.', "/")))?,
                    value: v.clone().into_bytes(),
                })
            })
            .collect::<Result<Vec<_>>>()?;

        let setgroups_denied = match (&userns, &joined_userns) {
            (Some(u), _) => !u.setgroups_allowed(),
            (None, Some(j)) => j.setgroups_denied,
            (None, None) => false,
        };
        let process = plan_process(spec, process, setgroups_denied)?;
        let userns_root = userns
            .as_ref()
            .map_or((false, false), |u| (u.maps_uid(0), u.maps_gid(0)));

        Ok(Plan {
            clone_flags,
            new_pid_ns,
            new_net_ns,
            unshare_cgroup_ns,
            join_userns: joined_userns.is_some(),
            joins,
            userns,
            userns_root,
            cgroup_tasks: Vec::new(),
            hostname: hostname.map(|h| h.clone().into_bytes()),
            rootfs: path_cstring("root.path", root.path())?,
            root_readonly: root.readonly() == Some(true),
            mounts,
            devices,
            symlinks,
            sysctls,
            masked,
            readonly,
            process,
        })
    }

    /// The error for a child's failure record.
    pub(super) fn describe(&self, f: Failure) -> SandboxError {
        let i = f.index as usize;
        let mount = || {
            self.mounts
                .get(i)
                .map_or("a mount".to_string(), |m| m.label.clone())
        };
        let mount_dest = || {
            self.mounts
                .get(i)
                .map_or("?".to_string(), |m| m.target.display().into_owned())
        };
        let listed = |list: &[InRoot]| {
            list.get(i)
                .map_or("?".to_string(), |p| p.display().into_owned())
        };
        let p = &self.process;
        let program = &p.exec.program;
        let step = match f.step {
            Step::CloseFds => "closing inherited descriptors".to_string(),
            Step::Sync => "waiting for the parent".to_string(),
            Step::JoinCgroup => format!(
                "joining the container's cgroup (writing 0 to {})",
                self.cgroup_tasks.get(i).map_or("?", String::as_str)
            ),
            Step::UserNsIdentity => {
                "becoming root of the new user namespace (setgroups/setresgid/setresuid)"
                    .to_string()
            }
            Step::JoinNamespace => format!(
                "joining namespace {}",
                self.joins
                    .get(i)
                    .map_or("?".into(), |j| j.path.display().to_string())
            ),
            Step::UnshareCgroup => "creating the cgroup namespace".to_string(),
            Step::Unshare => {
                "creating namespaces in the joined user namespace (unshare)".to_string()
            }
            Step::ForkInit => {
                "forking the init into the new pid namespace (joined user namespace)".to_string()
            }
            Step::Hostname => "setting the hostname".to_string(),
            Step::Loopback => "bringing up lo".to_string(),
            Step::RootPropagation => "making / private".to_string(),
            Step::BindRootfs if self.userns.is_some() && f.errno == libc::EACCES => format!(
                "bind-mounting the rootfs {} (in a user namespace, every directory above it must \
                 be searchable by the host uid that container root maps to)",
                self.rootfs.to_string_lossy()
            ),
            Step::BindRootfs => {
                format!("bind-mounting the rootfs {}", self.rootfs.to_string_lossy())
            }
            Step::MountTarget => format!("resolving the destination of {}", mount()),
            Step::MountTargetMissing => format!(
                "mount destination {} does not exist in the rootfs and is not on a tmpfs (create it before starting the container)",
                mount_dest()
            ),
            Step::MountTargetCreate => format!("creating the mount point {}", mount_dest()),
            Step::MountCreate => format!("creating {}", mount()),
            Step::MountOption => format!("setting the options of {}", mount()),
            Step::MountAttach => format!("attaching {}", mount()),
            Step::MountAttr => format!("setting the flags of {}", mount()),
            Step::CgroupHierarchy => format!("mounting cgroup hierarchy {i} in {}", mount()),
            Step::Device => format!(
                "creating device {}",
                self.devices
                    .get(i)
                    .map_or("?".into(), |d| d.target.display().into_owned())
            ),
            Step::DevSymlink => format!(
                "creating symlink {}",
                self.symlinks
                    .get(i)
                    .map_or("?".into(), |s| s.link.display().into_owned())
            ),
            Step::Sysctl => format!(
                "writing {}",
                self.sysctls
                    .get(i)
                    .map_or("?".into(), |s| s.path.to_string_lossy().into_owned())
            ),
            Step::MaskPath => format!("masking {}", listed(&self.masked)),
            Step::ReadonlyPath => format!("making {} read-only", listed(&self.readonly)),
            Step::PivotRoot => "pivot_root".to_string(),
            Step::RootReadonly => "making the root read-only".to_string(),
            Step::CreateCwd => format!("creating cwd {}", p.cwd.to_string_lossy()),
            Step::OomScoreAdj => "setting oom_score_adj".to_string(),
            Step::Dumpable => "making the init non-dumpable".to_string(),
            Step::Subreaper => "making the init a child subreaper".to_string(),
            Step::ForkProcess => "forking the container process".to_string(),
            Step::Setsid => "setsid".to_string(),
            Step::Stdio => "setting up stdin/stdout/stderr".to_string(),
            Step::CloseOnExec => "marking descriptors close-on-exec".to_string(),
            Step::Chdir => format!("cwd {} is not usable", p.cwd.to_string_lossy()),
            Step::Rlimit => format!("setting rlimit #{i}"),
            Step::KeepCaps => "PR_SET_KEEPCAPS".to_string(),
            Step::BoundingSet => format!("dropping capability {i} from the bounding set"),
            Step::Groups => "setting supplementary groups".to_string(),
            Step::Gid => format!("setting gid {}", p.gid),
            Step::Uid => format!("setting uid {}", p.uid),
            Step::Capabilities => "setting capabilities".to_string(),
            Step::AmbientCaps => format!("raising ambient capability {i}"),
            Step::NoNewPrivs => "setting no_new_privs".to_string(),
            Step::Seccomp => format!("installing seccomp program {i}"),
            Step::Exec => format!(
                "exec {}",
                p.exec.candidates.get(i).map_or_else(
                    || format!("{program:?}"),
                    |c| format!("{:?}", c.to_string_lossy())
                )
            ),
            Step::ExecNotFound => format!("exec {program:?}: executable file not found in $PATH"),
        };
        SandboxError::Setup {
            step,
            source: std::io::Error::from_raw_os_error(f.errno),
        }
    }
}

/// How to mount a spec's `cgroup` mount: with a cgroup namespace, fresh mounts (the namespace
/// shows the container's cgroup as the root); without one, bind mounts of the container's own
/// cgroup directories, so the host's tree stays hidden (as runc does).
fn cgroup_mount(has_cgroup_ns: bool, cgroup: Option<&Cgroup>) -> CgroupMount {
    let container_dirs: Vec<PathBuf> = cgroup
        .map(|c| c.paths().map(Path::to_path_buf).collect())
        .unwrap_or_default();
    let own = if has_cgroup_ns {
        Vec::new()
    } else {
        mounts::parse_proc_cgroup(&fs_err::read_to_string("/proc/self/cgroup").unwrap_or_default())
    };
    match mounts::host_cgroup_v1() {
        Some(mut v1) => {
            if !has_cgroup_ns {
                v1.bind_container_dirs(&container_dirs, &own);
            }
            CgroupMount::V1(v1)
        }
        None if has_cgroup_ns => CgroupMount::Cgroup2,
        None => CgroupMount::Cgroup2Bind(mounts::cgroup_dir(
            Path::new("/sys/fs/cgroup"),
            "",
            &container_dirs,
            &own,
        )),
    }
}

fn plan_devices(devices: &[LinuxDevice], can_mknod: bool) -> Result<Vec<DeviceOp>> {
    let mut ops = Vec::new();
    for d in devices {
        let target = InRoot::new(d.path()).ok_or_else(|| {
            spec_err(format!(
                "device path `{}` must be absolute",
                d.path().display()
            ))
        })?;
        let ftype = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(spec_err(format!(
                    "device {}: type `a` is only valid in cgroup rules",
                    d.path().display()
                )));
            }
        };
        let (Ok(major), Ok(minor)) = (u32::try_from(d.major()), u32::try_from(d.minor())) else {
            return Err(spec_err(format!(
                "device {}: bad numbers",
                d.path().display()
            )));
        };
        ops.push(device_op(
            target,
            d.path(),
            ftype,
            major,
            minor,
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )?);
        if let Some(op) = ops.last_mut() {
            op.required = true;
            if op.host.is_none() && !can_mknod {
                return Err(spec_err(format!(
                    "device {}: the host has no such node to bind-mount, and a user namespace cannot mknod",
                    d.path().display()
                )));
            }
        }
    }
    for (path, major, minor) in DEFAULT_DEVICES {
        let target = InRoot::new(Path::new(path)).expect("static path");
        if ops.iter().any(|d| d.target == target) {
            continue;
        }
        let op = device_op(
            target,
            Path::new(path),
            libc::S_IFCHR,
            major,
            minor,
            0o666,
            0,
            0,
        )?;
        if op.host.is_some() || can_mknod {
            ops.push(op);
        }
    }
    Ok(ops)
}

#[allow(clippy::too_many_arguments)]
fn device_op(
    target: InRoot,
    host_path: &Path,
    ftype: u32,
    major: u32,
    minor: u32,
    perm: u32,
    uid: u32,
    gid: u32,
) -> Result<DeviceOp> {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let rdev = libc::makedev(major, minor);
    // Bind the host's node when it is the same device: that works in a user namespace too,
    // and keeps the host's permissions (runc does the same when it cannot mknod).
    let host = fs_err::metadata(host_path).ok().filter(|m| {
        let t = m.file_type();
        let same_type = match ftype {
            libc::S_IFCHR => t.is_char_device(),
            libc::S_IFBLK => t.is_block_device(),
            _ => false,
        };
        same_type && m.rdev() == rdev
    });
    Ok(DeviceOp {
        host: host
            .map(|_| path_cstring("device path", host_path))
            .transpose()?,
        target,
        mode: ftype | (perm & 0o7777),
        rdev,
        uid,
        gid,
        required: false,
    })
}

/// `/dev/fd`, `/dev/std{in,out,err}`, and `/dev/ptmx` when `/dev/pts` is a devpts mount; only
/// when `/dev` is a mount of its own (they are made on a tmpfs, never in the rootfs).
fn plan_symlinks(mounts: &[MountOp]) -> Result<Vec<Symlink>> {
    let dev = InRoot::new(Path::new("/dev")).expect("static path");
    if !mounts
        .iter()
        .any(|m| m.target == dev && m.creates_fresh_tree())
    {
        return Ok(Vec::new());
    }
    let mut links = vec![
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ];
    let pts = InRoot::new(Path::new("/dev/pts")).expect("static path");
    if mounts.iter().any(|m| {
        m.target == pts
            && matches!(&m.source, mounts::MountSource::Fs { fstype, .. } if fstype.as_bytes() == b"devpts")
    }) {
        links.push(("/dev/ptmx", "pts/ptmx"));
    }
    links
        .into_iter()
        .map(|(link, target)| {
            Ok(Symlink {
                link: InRoot::new(Path::new(link)).expect("static path"),
                target: cstring("symlink", target)?,
            })
        })
        .collect()
}

fn plan_process(
    spec: &Spec,
    process: &oci_spec::runtime::Process,
    setgroups_denied: bool,
) -> Result<ProcessPlan> {
    let args = process.args().as_deref().unwrap_or_default();
    let program = args
        .first()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| spec_err("process.args is empty"))?
        .clone();
    let env = process.env().as_deref().unwrap_or_default();
    let argv = args
        .iter()
        .map(|a| cstring("process.args", a.as_str()))
        .collect::<Result<Vec<_>>>()?;
    let envp = env
        .iter()
        .map(|e| cstring("process.env", e.as_str()))
        .collect::<Result<Vec<_>>>()?;
    let (candidates, searched) = if program.contains('/') {
        (vec![cstring("process.args", program.as_str())?], false)
    } else {
        // Like runc (Go's exec.LookPath): the spec's PATH, resolved inside the container.
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("");
        let mut list = Vec::new();
        for dir in path.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let joined = Path::new(dir).join(&program);
            list.push(path_cstring("PATH entry", &joined)?);
        }
        (list, true)
    };

    let cwd = process.cwd();
    if !cwd.is_absolute() {
        return Err(spec_err(format!(
            "process.cwd `{}` must be absolute",
            cwd.display()
        )));
    }
    let mut cwd_ancestors = Vec::new();
    let mut acc = PathBuf::from("/");
    for c in cwd.components() {
        if let std::path::Component::Normal(n) = c {
            acc.push(n);
            cwd_ancestors.push(path_cstring("process.cwd", &acc)?);
        }
    }

    let user = process.user();
    let groups = user
        .additional_gids()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|g| rustix::process::Gid::from_raw(*g))
        .collect();

    let rlimits = process
        .rlimits()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let limit = |v: u64| (v != u64::MAX).then_some(v);
            (
                resource(r.typ()),
                Rlimit {
                    current: limit(r.soft()),
                    maximum: limit(r.hard()),
                },
            )
        })
        .collect();

    let (seccomp, seccomp_flags) = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        None => (Arc::default(), 0),
        Some(profile) => {
            let programs = compile_seccomp(profile)?;
            let mut flags: libc::c_ulong = 0;
            for f in profile.flags().as_deref().unwrap_or_default() {
                flags |= match f {
                    LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
                    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                    }
                    // One thread (the container's process) only; and a notify fd is not used.
                    LinuxSeccompFilterFlag::SeccompFilterFlagTsync
                    | LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 0,
                } as libc::c_ulong;
            }
            (programs, flags)
        }
    };

    Ok(ProcessPlan {
        exec: Exec {
            candidates,
            searched,
            argv: CArray::new(argv),
            envp: CArray::new(envp),
            program,
        },
        cwd: path_cstring("process.cwd", cwd)?,
        cwd_ancestors,
        uid: user.uid(),
        gid: user.gid(),
        groups,
        setgroups_denied,
        umask: user.umask(),
        caps: CapSets::new(process.capabilities().as_ref(), caps::kernel_last_cap()),
        no_new_privs: process.no_new_privileges() == Some(true),
        rlimits,
        oom_score_adj: process.oom_score_adj().map(|v| v.to_string().into_bytes()),
        seccomp,
        seccomp_flags,
    })
}

/// `sandbox::seccomp::compile`, remembered for the last few distinct profiles: a build runs
/// every RUN with the same profile, and compiling Docker's takes longer than starting the
/// container.
fn compile_seccomp(profile: &LinuxSeccomp) -> Result<Arc<Vec<seccompiler::BpfProgram>>> {
    type Cache = Vec<(LinuxSeccomp, Arc<Vec<seccompiler::BpfProgram>>)>;
    static CACHE: Mutex<Cache> = Mutex::new(Vec::new());
    const KEEP: usize = 4;
    {
        let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, programs)) = cache.iter().find(|(p, _)| p == profile) {
            return Ok(Arc::clone(programs));
        }
    }
    let programs = Arc::new(super::super::seccomp::compile(profile)?);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= KEEP {
        cache.remove(0);
    }
    cache.push((profile.clone(), Arc::clone(&programs)));
    Ok(programs)
}

fn resource(t: PosixRlimitType) -> Resource {
    use PosixRlimitType as T;
    match t {
        T::RlimitCpu => Resource::Cpu,
        T::RlimitFsize => Resource::Fsize,
        T::RlimitData => Resource::Data,
        T::RlimitStack => Resource::Stack,
        T::RlimitCore => Resource::Core,
        T::RlimitRss => Resource::Rss,
        T::RlimitNproc => Resource::Nproc,
        T::RlimitNofile => Resource::Nofile,
        T::RlimitMemlock => Resource::Memlock,
        T::RlimitAs => Resource::As,
        T::RlimitLocks => Resource::Locks,
        T::RlimitSigpending => Resource::Sigpending,
        T::RlimitMsgqueue => Resource::Msgqueue,
        T::RlimitNice => Resource::Nice,
        T::RlimitRtprio => Resource::Rtprio,
        T::RlimitRttime => Resource::Rttime,
    }
}
