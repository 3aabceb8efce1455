//! Docker's (and BuildKit's) defaults as an OCI runtime spec.
//!
//! Responsible for: [`build`], which turns a [`SandboxConfig`] (what to run, as whom, with
//! which extra mounts) into the [`Spec`] both backends run and that is written as `config.json`
//! for runc/crun; the default capability set ([`DEFAULT_CAPABILITIES`]) and its bitmask.
//!
//! Not responsible for: resolving `USER` (see [`super::user`]), writing `/etc/hosts` or
//! `/etc/resolv.conf` (the caller passes them in), preparing mount points, running anything.
//!
//! # What the defaults follow
//!
//! A `RUN` step in BuildKit gets containerd's default spec (containerd `pkg/oci/spec.go`
//! `populateDefaultUnixSpec`, `pkg/oci/mounts.go` `defaultMounts`) adjusted by BuildKit's
//! `executor/oci/spec.go` `GenerateSpec` and `spec_linux.go`; `docker run` gets moby's
//! `daemon/pkg/oci/defaults.go` `DefaultLinuxSpec`. Where they agree kiln does the same; where
//! they differ kiln takes Docker's choice and the docs below say so:
//!
//! - namespaces: pid, ipc, uts, mount, network (unless [`Network::Host`]); cgroup when cgroup v2
//!   is mounted (BuildKit's `cgroupV2NamespaceSupported`: on a v1 or hybrid host a cgroup
//!   namespace over non-standard hierarchies fails with `EINVAL`, moby/buildkit#4108), or as
//!   [`CgroupNamespace`] says; user only as [`UserNamespace`] says (rootless mode: Docker and
//!   BuildKit run without one unless asked);
//! - mounts, in containerd's order, without its `/run` tmpfs (BuildKit removes it,
//!   moby/buildkit#429): `/proc`, `/dev`, `/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/sys`, then the
//!   `etc_files` as read-only binds (`nosuid,noexec,nodev,rbind,ro`, BuildKit's `withROBind`),
//!   then `/sys/fs/cgroup` (`cgroup`, `ro,nosuid,noexec,nodev`), then the caller's mounts;
//! - masked and read-only paths: moby's lists (`defaultLinuxMaskedPaths`, which adds
//!   `/proc/interrupts` and the per-CPU `thermal_throttle` directories, GHSA-6fw5-f8r9-fgfm, to
//!   containerd's list);
//! - capabilities: Docker's 14 ([`DEFAULT_CAPABILITIES`], moby `daemon/pkg/oci/caps/defaults.go`;
//!   containerd 2 dropped five of them, BuildKit on Docker keeps Docker's) in the bounding,
//!   effective and permitted sets; inheritable and ambient empty (CVE-2022-24769); for a non-root
//!   uid only the bounding set, as moby's `oci.SetCapabilities` does "to match what execve does";
//! - device cgroup rules: moby's (deny all; allow `c 1:5`, `1:3`, `1:9`, `1:8`, `5:0`, `5:1`;
//!   deny `c 10:229`); no extra device nodes (the runtime creates the OCI default ones);
//! - rlimits: none, so the process inherits kiln's (BuildKit resets containerd's
//!   `RLIMIT_NOFILE 1024` unless `--ulimit` was given);
//! - `noNewPrivileges` false by default (BuildKit's `oci.WithNewPrivileges`; setuid programs
//!   such as `sudo` work in `RUN`);
//! - seccomp: Docker's default profile for the bounding set (BuildKit's `withDefaultProfile`,
//!   moby's `seccomp.GetDefaultProfile`), see [`super::seccomp`].

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, LinuxResources,
    Mount, PosixRlimit, Process, Root, Spec, User as OciUser,
};

use super::seccomp::{self, Profile};
use super::user::User;
use super::{Result, SandboxError};

/// Docker's default capability set (moby `daemon/pkg/oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// `PATH` for a process whose image sets none (moby `oci.DefaultPathEnv`, BuildKit's
/// `system.DefaultPathEnvUnix`).
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The hostname of a `RUN` step in BuildKit (`executor/oci/spec.go` `defaultHostname`).
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

/// The kernel's number of a capability (linux/capability.h).
pub fn capability_number(cap: Capability) -> u8 {
    use Capability as C;
    match cap {
        C::Chown => 0,
        C::DacOverride => 1,
        C::DacReadSearch => 2,
        C::Fowner => 3,
        C::Fsetid => 4,
        C::Kill => 5,
        C::Setgid => 6,
        C::Setuid => 7,
        C::Setpcap => 8,
        C::LinuxImmutable => 9,
        C::NetBindService => 10,
        C::NetBroadcast => 11,
        C::NetAdmin => 12,
        C::NetRaw => 13,
        C::IpcLock => 14,
        C::IpcOwner => 15,
        C::SysModule => 16,
        C::SysRawio => 17,
        C::SysChroot => 18,
        C::SysPtrace => 19,
        C::SysPacct => 20,
        C::SysAdmin => 21,
        C::SysBoot => 22,
        C::SysNice => 23,
        C::SysResource => 24,
        C::SysTime => 25,
        C::SysTtyConfig => 26,
        C::Mknod => 27,
        C::Lease => 28,
        C::AuditWrite => 29,
        C::AuditControl => 30,
        C::Setfcap => 31,
        C::MacOverride => 32,
        C::MacAdmin => 33,
        C::Syslog => 34,
        C::WakeAlarm => 35,
        C::BlockSuspend => 36,
        C::AuditRead => 37,
        C::Perfmon => 38,
        C::Bpf => 39,
        C::CheckpointRestore => 40,
    }
}

/// The bitmask of `caps` as `/proc/PID/status` shows it (`CapEff:` and friends).
pub fn capability_mask(caps: &[Capability]) -> u64 {
    caps.iter()
        .fold(0, |mask, cap| mask | (1u64 << capability_number(*cap)))
}

/// `CapEff` of root in a default Docker container: `0x00000000a80425fb`.
pub fn default_capability_mask() -> u64 {
    capability_mask(DEFAULT_CAPABILITIES)
}

/// The container's network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// A new network namespace; the runtime brings up `lo` and nothing else.
    #[default]
    Private,
    /// The caller's network namespace (`--network=host`).
    Host,
    /// Join the network namespace at this path (e.g. `/var/run/netns/NAME`, `/proc/PID/ns/net`).
    Join(PathBuf),
}

/// Whether the container gets its own cgroup namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CgroupNamespace {
    /// Private on a cgroup v2 host, the host's otherwise (BuildKit's and Docker's default).
    #[default]
    Auto,
    Private,
    Host,
}

/// Which seccomp profile the container gets.
#[derive(Debug, Clone, Default)]
pub enum SeccompPolicy {
    /// Docker's default profile for the container's capability set.
    #[default]
    DockerDefault,
    /// No filter (`--security-opt seccomp=unconfined`, `RUN --security=insecure`).
    Unconfined,
    /// A profile in Docker's format (`--security-opt seccomp=FILE`).
    Profile(Box<Profile>),
}

/// One range of ids mapped into a user namespace: `size` ids from `container_id` onto
/// `host_id` and up (ids of the caller's user namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// Whether the container gets a user namespace (rootless mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UserNamespace {
    /// The caller's own: container root is the caller's root (Docker's default).
    #[default]
    Host,
    /// A new user namespace with these maps (`linux.uidMappings`/`gidMappings`). Container
    /// root's capabilities then only reach namespaces the new one owns; host files owned by
    /// unmapped ids show as 65534. The rootfs must be owned by the ids root maps to (see
    /// `sandbox::linux`'s user namespace docs).
    Private {
        uid_mappings: Vec<IdMapping>,
        gid_mappings: Vec<IdMapping>,
    },
    /// Join the user namespace at this path (e.g. `/proc/PID/ns/user` of another container);
    /// the container's other new namespaces are then owned by it.
    Join(PathBuf),
}

impl UserNamespace {
    /// Rootless with one id: uid and gid 0 in the container are the caller's effective uid
    /// and gid (what `unshare --map-root-user` does; no helper or `/etc/subuid` needed, but
    /// `setgroups` is denied in the container and no other id exists there).
    pub fn map_root_to_caller() -> Self {
        let one = |host_id: u32| {
            vec![IdMapping {
                container_id: 0,
                host_id,
                size: 1,
            }]
        };
        UserNamespace::Private {
            uid_mappings: one(rustix::process::geteuid().as_raw()),
            gid_mappings: one(rustix::process::getegid().as_raw()),
        }
    }

    /// Ids `0..size` of the container onto `host_id..host_id + size`, for uids and gids alike
    /// (e.g. `0 100000 65536`, a range from `/etc/subuid`).
    pub fn shifted(host_id: u32, size: u32) -> Self {
        let range = vec![IdMapping {
            container_id: 0,
            host_id,
            size,
        }];
        UserNamespace::Private {
            uid_mappings: range.clone(),
            gid_mappings: range,
        }
    }
}

/// A host file bound read-only over a path of the container, e.g. `/etc/hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFile {
    /// Absolute path in the container.
    pub destination: String,
    /// The host file.
    pub source: PathBuf,
}

/// Everything [`build`] needs; `..Default::default()` gives Docker's defaults for the rest.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The mounted, writable root filesystem (absolute).
    pub rootfs: PathBuf,
    /// The command and its arguments (`args[0]` is looked up in the container's `PATH`).
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Absolute working directory in the container.
    pub cwd: String,
    /// Numeric identity, e.g. from [`super::user::resolve`].
    pub user: User,
    pub hostname: String,
    pub network: Network,
    /// Mounts added after the defaults and `etc_files` (bind mounts of the build context,
    /// caches, secrets, volumes, ...).
    pub mounts: Vec<Mount>,
    /// Host files bound read-only over container paths (`/etc/hosts`, `/etc/resolv.conf`).
    pub etc_files: Vec<EtcFile>,
    /// The bounding set (and, for root, the effective and permitted sets).
    pub capabilities: Vec<Capability>,
    pub seccomp: SeccompPolicy,
    /// cgroup limits; Docker's device rules are added when `devices` is not given.
    pub resources: Option<LinuxResources>,
    /// The container's cgroup, relative to the cgroup root (the runtime picks one if `None`).
    pub cgroups_path: Option<String>,
    pub cgroup_namespace: CgroupNamespace,
    pub user_namespace: UserNamespace,
    /// Process rlimits; empty means inherit kiln's (BuildKit without `--ulimit`).
    pub rlimits: Vec<PosixRlimit>,
    pub readonly_rootfs: bool,
    pub no_new_privileges: bool,
    /// Give the process a pseudo-terminal as its stdio.
    pub terminal: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            rootfs: PathBuf::new(),
            args: Vec::new(),
            env: vec![DEFAULT_PATH_ENV.to_owned()],
            cwd: "/".to_owned(),
            user: User::default(),
            hostname: DEFAULT_HOSTNAME.to_owned(),
            network: Network::default(),
            mounts: Vec::new(),
            etc_files: Vec::new(),
            capabilities: DEFAULT_CAPABILITIES.to_vec(),
            seccomp: SeccompPolicy::default(),
            resources: None,
            cgroups_path: None,
            cgroup_namespace: CgroupNamespace::default(),
            user_namespace: UserNamespace::default(),
            rlimits: Vec::new(),
            readonly_rootfs: false,
            no_new_privileges: false,
            terminal: false,
        }
    }
}

/// Docker's masked paths (moby `daemon/pkg/oci/defaults.go` `defaultLinuxMaskedPaths`), before
/// the per-CPU `thermal_throttle` directories.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Docker's read-only paths (moby `DefaultLinuxSpec`; containerd's are the same).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Build the spec for `cfg` (see the module docs for every default and where it comes from).
pub fn build(cfg: &SandboxConfig) -> Result<Spec> {
    validate(cfg)?;
    let caps: Capabilities = cfg.capabilities.iter().copied().collect();

    let mut spec = Spec::default();
    spec.set_hostname((!cfg.hostname.is_empty()).then(|| cfg.hostname.clone()));
    spec.set_domainname(None);
    spec.set_annotations(None);
    spec.set_hooks(None);

    let mut root = Root::default();
    root.set_path(cfg.rootfs.clone());
    root.set_readonly(Some(cfg.readonly_rootfs));
    spec.set_root(Some(root));

    spec.set_mounts(Some(mounts(cfg)));
    spec.set_process(Some(process(cfg, &caps)));

    let linux = spec
        .linux_mut()
        .as_mut()
        .ok_or_else(|| SandboxError::Spec("oci-spec's default spec has no `linux`".into()))?;
    linux.set_namespaces(Some(namespaces(cfg)));
    linux.set_masked_paths(Some(masked_paths()));
    linux.set_readonly_paths(Some(
        READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect(),
    ));
    linux.set_devices(Some(Vec::new()));
    linux.set_resources(Some(resources(cfg)));
    linux.set_cgroups_path(cfg.cgroups_path.as_ref().map(PathBuf::from));
    let (uid_mappings, gid_mappings) = match &cfg.user_namespace {
        UserNamespace::Host | UserNamespace::Join(_) => (None, None),
        UserNamespace::Private {
            uid_mappings,
            gid_mappings,
        } => (
            Some(id_mappings(uid_mappings)?),
            Some(id_mappings(gid_mappings)?),
        ),
    };
    linux.set_uid_mappings(uid_mappings);
    linux.set_gid_mappings(gid_mappings);
    linux.set_sysctl(None);
    linux.set_rootfs_propagation(None);
    linux.set_mount_label(None);
    linux.set_seccomp(match &cfg.seccomp {
        SeccompPolicy::DockerDefault => Some(seccomp::docker_default(&cfg.capabilities)),
        SeccompPolicy::Unconfined => None,
        SeccompPolicy::Profile(p) => Some(p.resolve(&cfg.capabilities)),
    });
    Ok(spec)
}

fn validate(cfg: &SandboxConfig) -> Result<()> {
    let bad = |msg: String| Err(SandboxError::Spec(msg));
    if !cfg.rootfs.is_absolute() {
        return bad(format!(
            "rootfs `{}` is not an absolute path",
            cfg.rootfs.display()
        ));
    }
    if cfg.args.is_empty() {
        return bad("no command to run".into());
    }
    if !cfg.cwd.starts_with('/') {
        return bad(format!("working directory `{}` is not absolute", cfg.cwd));
    }
    if let Some(e) = cfg
        .env
        .iter()
        .find(|e| !e.contains('=') || e.starts_with('='))
    {
        return bad(format!("environment entry `{e}` is not KEY=value"));
    }
    if let Some(f) = cfg
        .etc_files
        .iter()
        .find(|f| !f.destination.starts_with('/'))
    {
        return bad(format!(
            "`{}` is not an absolute container path",
            f.destination
        ));
    }
    if let UserNamespace::Private {
        uid_mappings,
        gid_mappings,
    } = &cfg.user_namespace
        && (uid_mappings.is_empty() || gid_mappings.is_empty())
    {
        return bad("a user namespace needs at least one uid and one gid mapping".into());
    }
    if let Some(m) = cfg.mounts.iter().find(|m| !m.destination().is_absolute()) {
        return bad(format!(
            "mount destination `{}` is not absolute",
            m.destination().display()
        ));
    }
    Ok(())
}

fn mount(destination: &str, typ: &str, source: &Path, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(typ.to_owned()));
    m.set_source(Some(source.to_owned()));
    m.set_options(Some(options.iter().map(|o| (*o).to_owned()).collect()));
    m
}

/// containerd's default mounts without `/run`, BuildKit's binds and cgroup mount, the caller's.
fn mounts(cfg: &SandboxConfig) -> Vec<Mount> {
    let mut out = vec![
        mount(
            "/proc",
            "proc",
            Path::new("proc"),
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            Path::new("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            Path::new("shm"),
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            Path::new("mqueue"),
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            Path::new("sysfs"),
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ];
    for f in &cfg.etc_files {
        out.push(mount(
            &f.destination,
            "bind",
            &f.source,
            &["nosuid", "noexec", "nodev", "rbind", "ro"],
        ));
    }
    out.push(mount(
        "/sys/fs/cgroup",
        "cgroup",
        Path::new("cgroup"),
        &["ro", "nosuid", "noexec", "nodev"],
    ));
    out.extend(cfg.mounts.iter().cloned());
    out
}

fn process(cfg: &SandboxConfig, caps: &Capabilities) -> Process {
    let mut user = OciUser::default();
    user.set_uid(cfg.user.uid);
    user.set_gid(cfg.user.gid);
    user.set_additional_gids(
        (!cfg.user.additional_gids.is_empty()).then(|| cfg.user.additional_gids.clone()),
    );

    // moby `oci.SetCapabilities`: a non-root user gets only the bounding set, "to match what
    // execve does" (a non-root execve clears the effective and permitted sets anyway).
    let granted = if cfg.user.uid == 0 {
        caps.clone()
    } else {
        Capabilities::new()
    };
    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(caps.clone()));
    capabilities.set_effective(Some(granted.clone()));
    capabilities.set_permitted(Some(granted));
    capabilities.set_inheritable(Some(Capabilities::new()));
    capabilities.set_ambient(Some(Capabilities::new()));

    let mut p = Process::default();
    p.set_terminal(Some(cfg.terminal));
    p.set_console_size(None);
    p.set_user(user);
    p.set_args(Some(cfg.args.clone()));
    p.set_env(Some(cfg.env.clone()));
    p.set_cwd(PathBuf::from(&cfg.cwd));
    p.set_capabilities(Some(capabilities));
    p.set_rlimits((!cfg.rlimits.is_empty()).then(|| cfg.rlimits.clone()));
    p.set_no_new_privileges(Some(cfg.no_new_privileges));
    p.set_apparmor_profile(None);
    p.set_selinux_label(None);
    p.set_oom_score_adj(None);
    p
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

fn id_mappings(ranges: &[IdMapping]) -> Result<Vec<LinuxIdMapping>> {
    ranges
        .iter()
        .map(|r| {
            LinuxIdMappingBuilder::default()
                .container_id(r.container_id)
                .host_id(r.host_id)
                .size(r.size)
                .build()
                .map_err(|e| SandboxError::Spec(format!("id mapping: {e}")))
        })
        .collect()
}

/// containerd's order (pid, ipc, uts, mount, network), then cgroup as BuildKit appends it,
/// then user (rootless mode).
fn namespaces(cfg: &SandboxConfig) -> Vec<LinuxNamespace> {
    let mut out = vec![
        namespace(LinuxNamespaceType::Pid, None),
        namespace(LinuxNamespaceType::Ipc, None),
        namespace(LinuxNamespaceType::Uts, None),
        namespace(LinuxNamespaceType::Mount, None),
    ];
    match &cfg.user_namespace {
        UserNamespace::Host => {}
        UserNamespace::Private { .. } => out.push(namespace(LinuxNamespaceType::User, None)),
        UserNamespace::Join(path) => {
            out.push(namespace(LinuxNamespaceType::User, Some(path.clone())));
        }
    }
    match &cfg.network {
        Network::Private => out.push(namespace(LinuxNamespaceType::Network, None)),
        Network::Host => {}
        Network::Join(path) => out.push(namespace(LinuxNamespaceType::Network, Some(path.clone()))),
    }
    let cgroupns = match cfg.cgroup_namespace {
        CgroupNamespace::Auto => cgroup_v2_namespace_supported(),
        CgroupNamespace::Private => true,
        CgroupNamespace::Host => false,
    };
    if cgroupns {
        out.push(namespace(LinuxNamespaceType::Cgroup, None));
    }
    out
}

/// BuildKit's test (`executor/oci/spec_linux.go` `cgroupV2NamespaceSupported`): the kernel has
/// cgroup namespaces and `/sys/fs/cgroup` is a cgroup v2 mount.
pub fn cgroup_v2_namespace_supported() -> bool {
    Path::new("/proc/self/ns/cgroup").exists()
        && Path::new("/sys/fs/cgroup/cgroup.subtree_control").exists()
}

/// Docker's list plus each CPU's `thermal_throttle` directory that exists on this host.
fn masked_paths() -> Vec<String> {
    let mut out: Vec<String> = MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect();
    let mut cpus: Vec<u32> = fs_err::read_dir("/sys/devices/system/cpu")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    cpus.sort_unstable();
    for cpu in cpus {
        let path = format!("/sys/devices/system/cpu/cpu{cpu}/thermal_throttle");
        if Path::new(&path).exists() {
            out.push(path);
        }
    }
    out
}

fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    dev: Option<(i64, i64)>,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(typ);
    r.set_major(dev.map(|d| d.0));
    r.set_minor(dev.map(|d| d.1));
    r.set_access(Some("rwm".to_owned()));
    r
}

/// moby's device cgroup rules (`DefaultLinuxSpec`): deny everything, then allow `/dev/zero`,
/// `/dev/null`, `/dev/urandom`, `/dev/random`, `/dev/tty`, `/dev/console`, deny `/dev/fuse`.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let c = Some(LinuxDeviceType::C);
    vec![
        device_rule(false, None, None),
        device_rule(true, c, Some((1, 5))),
        device_rule(true, c, Some((1, 3))),
        device_rule(true, c, Some((1, 9))),
        device_rule(true, c, Some((1, 8))),
        device_rule(true, c, Some((5, 0))),
        device_rule(true, c, Some((5, 1))),
        device_rule(false, c, Some((10, 229))),
    ]
}

fn resources(cfg: &SandboxConfig) -> LinuxResources {
    let mut r = cfg.resources.clone().unwrap_or_default();
    if r.devices().as_ref().is_none_or(Vec::is_empty) {
        r.set_devices(Some(default_device_rules()));
    }
    r
}

#[cfg(test)]
mod tests;
