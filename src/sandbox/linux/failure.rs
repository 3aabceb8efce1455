//! The fixed-size failure record a container's setup process writes to the error pipe, and the
//! list of setup steps it names.
//!
//! The children cannot allocate, so they report a step, an index into the plan's list for that
//! step (which mount, which device, ...) and an errno; the parent turns that into a message with
//! the plan's own strings ([`super::plan::Plan::describe`]).

use super::sys::Errno;

/// One setup step of the container's init (B) or of its process (C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(super) enum Step {
    CloseFds = 1,
    Sync,
    /// Writing `0` to a v1 hierarchy's `tasks` file of the container's cgroup.
    JoinCgroup,
    /// Taking uid/gid 0 of the new user namespace once the parent wrote the maps.
    UserNsIdentity,
    JoinNamespace,
    /// `unshare` of the new namespaces after joining a user namespace.
    Unshare,
    /// The fork of PID 1 after that `unshare` (a new pid namespace).
    ForkInit,
    UnshareCgroup,
    Hostname,
    Loopback,
    RootPropagation,
    BindRootfs,
    /// Resolving a mount's destination inside the rootfs.
    MountTarget,
    /// The destination is missing and cannot be created (not on a tmpfs).
    MountTargetMissing,
    /// Creating the missing destination (on a tmpfs).
    MountTargetCreate,
    /// `fsopen`/`fsconfig`/`fsmount`, or `open_tree` for a bind mount.
    MountCreate,
    /// `fsconfig` of one option.
    MountOption,
    /// `move_mount` onto the destination.
    MountAttach,
    /// `mount_setattr` (flags, propagation).
    MountAttr,
    /// A cgroup v1 hierarchy under a `cgroup` mount.
    CgroupHierarchy,
    Device,
    DevSymlink,
    Sysctl,
    MaskPath,
    ReadonlyPath,
    PivotRoot,
    RootReadonly,
    CreateCwd,
    OomScoreAdj,
    Dumpable,
    Subreaper,
    ForkProcess,
    Setsid,
    Stdio,
    CloseOnExec,
    Chdir,
    Rlimit,
    KeepCaps,
    BoundingSet,
    Groups,
    Gid,
    Uid,
    Capabilities,
    AmbientCaps,
    NoNewPrivs,
    Seccomp,
    Exec,
    ExecNotFound,
}

impl Step {
    const ALL: [Step; 48] = [
        Step::CloseFds,
        Step::Sync,
        Step::JoinCgroup,
        Step::UserNsIdentity,
        Step::JoinNamespace,
        Step::Unshare,
        Step::ForkInit,
        Step::UnshareCgroup,
        Step::Hostname,
        Step::Loopback,
        Step::RootPropagation,
        Step::BindRootfs,
        Step::MountTarget,
        Step::MountTargetMissing,
        Step::MountTargetCreate,
        Step::MountCreate,
        Step::MountOption,
        Step::MountAttach,
        Step::MountAttr,
        Step::CgroupHierarchy,
        Step::Device,
        Step::DevSymlink,
        Step::Sysctl,
        Step::MaskPath,
        Step::ReadonlyPath,
        Step::PivotRoot,
        Step::RootReadonly,
        Step::CreateCwd,
        Step::OomScoreAdj,
        Step::Dumpable,
        Step::Subreaper,
        Step::ForkProcess,
        Step::Setsid,
        Step::Stdio,
        Step::CloseOnExec,
        Step::Chdir,
        Step::Rlimit,
        Step::KeepCaps,
        Step::BoundingSet,
        Step::Groups,
        Step::Gid,
        Step::Uid,
        Step::Capabilities,
        Step::AmbientCaps,
        Step::NoNewPrivs,
        Step::Seccomp,
        Step::Exec,
        Step::ExecNotFound,
    ];

    fn from_raw(raw: u32) -> Option<Step> {
        Self::ALL.iter().copied().find(|s| *s as u32 == raw)
    }
}

/// What went wrong in a child: the step, which item of that step (0 when there is one), and
/// the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Failure {
    pub step: Step,
    pub index: u32,
    pub errno: Errno,
}

/// Size of an encoded [`Failure`]: well under `PIPE_BUF`, so a write of it is atomic.
pub(super) const RECORD_LEN: usize = 12;

impl Failure {
    pub(super) const fn new(step: Step, index: u32, errno: Errno) -> Self {
        Self { step, index, errno }
    }

    pub(super) fn encode(self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        let (a, rest) = out.split_at_mut(4);
        let (b, c) = rest.split_at_mut(4);
        a.copy_from_slice(&(self.step as u32).to_ne_bytes());
        b.copy_from_slice(&self.index.to_ne_bytes());
        c.copy_from_slice(&self.errno.to_ne_bytes());
        out
    }

    pub(super) fn decode(bytes: [u8; RECORD_LEN]) -> Option<Failure> {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[i..i + 4]);
            w
        };
        Some(Failure {
            step: Step::from_raw(u32::from_ne_bytes(word(0)))?,
            index: u32::from_ne_bytes(word(4)),
            errno: i32::from_ne_bytes(word(8)),
        })
    }
}

/// `rustix` errors as errno values.
pub(super) fn rx<T>(r: rustix::io::Result<T>) -> Result<T, Errno> {
    r.map_err(|e| e.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let f = Failure::new(Step::MountAttach, 7, libc::ENOENT);
        assert_eq!(Failure::decode(f.encode()), Some(f));
        let last = Failure::new(Step::ExecNotFound, 0, libc::ENOENT);
        assert_eq!(Failure::decode(last.encode()), Some(last));
    }

    #[test]
    fn every_step_decodes() {
        for step in Step::ALL {
            assert_eq!(Step::from_raw(step as u32), Some(step));
        }
        assert_eq!(Step::from_raw(0), None);
        assert_eq!(Step::from_raw(10_000), None);
    }
}
