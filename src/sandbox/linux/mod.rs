//! The embedded runtime (see the module docs of `sandbox`): runs an OCI spec with our own code.
//!
//! # Processes
//!
//! ```text
//! P (caller, any thread)  --clone3(CLONE_NEW{PID,NS,UTS,IPC[,NET][,USER]} | CLONE_PIDFD)-->  B
//! B: PID 1 of the container (init.rs) ----fork----> C: the spec's process (process.rs)
//! ```
//!
//! 1. P turns the spec into a [`plan::Plan`]: C strings, mount operations, capability masks,
//!    seccomp programs, `argv`/`envp`; makes the pipes (all `O_CLOEXEC`) and the cgroup. Nothing
//!    after `clone` allocates or takes a lock, so this is safe from a multi-threaded process.
//! 2. P blocks every signal on its calling thread (so no handler of P can run in B before B
//!    blocks them itself), calls `clone3` with a null stack (fork semantics, without
//!    `pthread_atfork` handlers or libc locks), and restores its mask.
//! 3. B is created in the cgroup's cgroup2 directory (`CLONE_INTO_CGROUP`; or P writes its
//!    pid to `cgroup.procs` there if the kernel refuses). B closes every descriptor it does not
//!    need, and waits on the sync pipe; P writes B's user namespace maps (with `CLONE_NEWUSER`,
//!    see `userns.rs`) and the go byte. B writes `0` to each v1 hierarchy's `tasks` file of
//!    the cgroup (moving itself: `cgroup::JoinHandles` says why not `cgroup.procs`). In a new
//!    user namespace B then takes uid/gid 0 there (when mapped), keeping the full capability
//!    set the clone gave it.
//! 4. B unshares the cgroup namespace, sets the hostname, brings `lo` up, builds the filesystem
//!    view and `pivot_root`s (rootfs.rs), forks C and becomes the init (reaps, forwards signals).
//! 5. C takes its stdio, cwd, rlimits, identity, capabilities, `no_new_privs`, seccomp, and
//!    `execve`s. Any failure in B or C is a fixed-size record on the error pipe; since that
//!    pipe is close-on-exec, P reading end-of-file means C is running.
//! 6. [`Process::wait`] waits for B through its pidfd. B exits right after C ends (writing C's
//!    wait status to the status pipe), and as PID 1 its exit kills every process left in the
//!    container, so a RUN that leaves a daemon behind does not hang the build.
//!
//! Why `clone3` straight into the new namespaces and not `fork` + `unshare` + `fork`: one
//! process fewer, and measured faster (release build, this machine: median 0.57 ms against
//! 0.79 ms for a child that only exits, most of both being the network namespace; see
//! `sys::tests::clone3_versus_fork_unshare_fork`); `CLONE_PIDFD` also gives a handle that
//! cannot be confused with a recycled pid for `signal` and `wait`.
//!
//! User namespaces (`userns.rs`): a new one is created by the same `clone3`, so every other
//! new namespace is owned by it; mounts that need real privileges are planned differently
//! there (devices bound from the host, never `mknod`; `/sys` a read-only bind of the host's
//! without a new network namespace; cgroup hierarchies bound; unmapped `uid=`/`gid=` mount
//! options dropped). Joining one by path cannot be done by `clone3` (which makes namespaces
//! owned by the caller's): B is cloned without new namespaces, joins the user namespace and
//! then the other listed ones, `unshare`s the new ones, and with a new pid namespace forks
//! its PID 1 and stays as a relay (forwards signals, exits as it does; the PID 1 dies with
//! it). A new user namespace cannot be combined with joining other namespaces by path (it
//! could not own them). An unprivileged caller without a delegated cgroup runs the container
//! in its own cgroup unless the spec sets limits (runc's rootless behaviour).
//!
//! Limits: no time namespace, no terminal; without a new pid namespace (joining one by path,
//! or none) the init is not PID 1, so processes the command leaves behind are not killed
//! when it ends.
//!
//! Not responsible for: what the spec says (`sandbox::spec`), compiling seccomp profiles
//! (`sandbox::seccomp`), cgroup files (`sandbox::cgroup`), images, streaming the output.

mod caps;
mod failure;
mod init;
mod mounts;
mod plan;
mod process;
mod rootfs;
mod stubs;
mod sys;
mod userns;

use std::os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};

pub use stubs::{Stubs, prepare_mountpoints};

use super::cgroup::Cgroup;
use super::{Container, ExitStatus, Process, Result, SandboxError, Spec, Stdio, StdioConfig};
use failure::{Failure, RECORD_LEN};
use plan::Plan;

/// Start `spec` in new namespaces.
pub(crate) fn start(id: &str, spec: &Spec, stdio: StdioConfig) -> Result<Container> {
    let cgroup = create_cgroup(id, spec)?;
    let mut plan = Plan::new(spec, cgroup.as_ref())?;
    let join = cgroup.as_ref().map(Cgroup::join_handles).transpose()?;
    if let Some(join) = &join {
        plan.cgroup_tasks = join
            .v1_tasks
            .iter()
            .map(|(path, _)| path.display().to_string())
            .collect();
    }
    let cgroup_tasks: Vec<RawFd> = join
        .iter()
        .flat_map(|j| j.v1_tasks.iter().map(|(_, fd)| fd.as_raw_fd()))
        .collect();
    let v2_dir = join
        .as_ref()
        .and_then(|j| j.v2_dir.as_ref().map(|fd| fd.as_raw_fd()));

    let stdin = StdioEnd::new(stdio.stdin, 0, Direction::ToChild)?;
    let stdout = StdioEnd::new(stdio.stdout, 1, Direction::FromChild)?;
    let stderr = StdioEnd::new(stdio.stderr, 2, Direction::FromChild)?;
    let pipe = |what: &str| {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| SandboxError::io(format!("creating the {what} pipe"), e.into()))
    };
    let (sync_r, sync_w) = pipe("sync")?;
    let (error_r, error_w) = pipe("error")?;
    let (status_r, status_w) = pipe("status")?;

    let mut keep: Vec<RawFd> = vec![
        sync_r.as_raw_fd(),
        error_w.as_raw_fd(),
        status_w.as_raw_fd(),
        stdin.child_fd(),
        stdout.child_fd(),
        stderr.child_fd(),
    ];
    keep.extend(plan.joins.iter().map(|j| j.fd.as_raw_fd()));
    keep.extend(&cgroup_tasks);
    keep.sort_unstable();
    keep.dedup();
    let fds = init::ChildFds {
        sync: sync_r.as_raw_fd(),
        error: error_w.as_raw_fd(),
        status: status_w.as_raw_fd(),
        stdio: [stdin.child_fd(), stdout.child_fd(), stderr.child_fd()],
        cgroup_tasks,
        keep,
    };

    let old_mask = sys::set_signal_mask(sys::ALL_SIGNALS)
        .map_err(|e| SandboxError::io("blocking signals", errno_error(e)))?;
    // Joining a user namespace: the init joins it first and unshares the rest itself.
    let flags = if plan.join_userns {
        0
    } else {
        plan.clone_flags
    };
    // SAFETY: the child runs only `init::run`, which makes system calls on the prepared plan
    // and leaves with `_exit`.
    let mut forked = unsafe { sys::clone_fork_into(flags, true, v2_dir) };
    if let Ok(sys::Forked::Child) = forked {
        init::run(&plan, &fds);
    }
    // A cgroup2 directory `CLONE_INTO_CGROUP` cannot use (an older kernel, a cgroup with
    // controllers but no room for processes): the child was not created; create it in our
    // cgroup and move it below.
    let into_v2 = v2_dir.is_some()
        && !matches!(
            forked,
            Err(libc::EINVAL | libc::EBUSY | libc::EOPNOTSUPP | libc::E2BIG)
        );
    if v2_dir.is_some() && !into_v2 {
        // SAFETY: as above.
        forked = unsafe { sys::clone_fork_into(flags, true, None) };
        if let Ok(sys::Forked::Child) = forked {
            init::run(&plan, &fds);
        }
    }
    let _ = sys::set_signal_mask(old_mask);
    let (pid, pidfd) = match forked {
        // SAFETY: CLONE_PIDFD returned a new descriptor that we now own.
        Ok(sys::Forked::Parent { pid, pidfd }) => (pid, unsafe { OwnedFd::from_raw_fd(pidfd) }),
        Ok(sys::Forked::Child) => init::run(&plan, &fds),
        Err(e) => {
            return Err(SandboxError::io(
                "creating the container's namespaces (clone3)",
                errno_error(e),
            ));
        }
    };
    // The child's ends: only B and C hold them now.
    drop((sync_r, error_w, status_w));
    let (stdin, stdout, stderr) = (stdin.parent_end(), stdout.parent_end(), stderr.parent_end());

    let init = Init {
        pid,
        pidfd,
        status: status_r,
        cgroup,
        exit: None,
    };
    let mut prepared = Ok(());
    if let Some(userns) = &plan.userns {
        prepared = userns.write(pid);
    }
    // The v1 hierarchies: B moves itself once released (`JoinHandles`).
    if prepared.is_ok()
        && !into_v2
        && let Some(cg) = &init.cgroup
    {
        prepared = cg.add_process_v2(pid);
    }
    if let Err(e) = prepared {
        // Dropping `init` kills and reaps B (which sees EOF on the sync pipe anyway).
        drop(sync_w);
        drop(init);
        return Err(e);
    }
    sys::write_all(sync_w.as_raw_fd(), b"g")
        .map_err(|e| SandboxError::io("releasing the container's init", errno_error(e)))?;
    drop(sync_w);

    let mut record = [0u8; RECORD_LEN];
    let n = sys::read_full(error_r.as_raw_fd(), &mut record)
        .map_err(|e| SandboxError::io("reading the container's setup result", errno_error(e)))?;
    if n == RECORD_LEN {
        let err = Failure::decode(record).map_or_else(
            || SandboxError::Spec("container setup failed with an unknown step".into()),
            |f| plan.describe(f),
        );
        drop(init);
        return Err(err);
    }
    Ok(Container::new(Box::new(init), stdin, stdout, stderr))
}

fn errno_error(e: sys::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

/// The container's cgroup, when the spec asks for one (a `cgroupsPath`, or resource limits;
/// then the path is `kiln/<id>`).
fn create_cgroup(id: &str, spec: &Spec) -> Result<Option<Cgroup>> {
    let Some(linux) = spec.linux() else {
        return Ok(None);
    };
    let resources = linux.resources().as_ref();
    let has_limits = resources.is_some_and(|r| {
        r.memory().is_some()
            || r.cpu().is_some()
            || r.pids().is_some()
            || r.block_io().is_some()
            || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
            || r.network().is_some()
            || r.rdma().as_ref().is_some_and(|m| !m.is_empty())
            || r.unified().as_ref().is_some_and(|m| !m.is_empty())
            || r.devices().as_ref().is_some_and(|d| !d.is_empty())
    });
    let path = match linux.cgroups_path() {
        Some(p) => p
            .to_str()
            .ok_or_else(|| SandboxError::Spec("cgroupsPath is not UTF-8".into()))?
            .to_string(),
        None if has_limits => format!("kiln/{id}"),
        None => return Ok(None),
    };
    if super::cgroup::layout() == super::cgroup::Layout::None {
        return Ok(None);
    }
    let only_device_rules = resources.is_none_or(|r| {
        let mut rest = r.clone();
        rest.set_devices(None);
        rest == oci_spec::runtime::LinuxResources::default()
    });
    match Cgroup::create(&path, resources) {
        // Rootless, as runc: without a delegated cgroup an unprivileged caller runs the
        // container in its own cgroup, unless it asked for limits (device rules do not count:
        // the user namespace keeps it from making device nodes anyway).
        Err(SandboxError::Cgroup { source, .. })
            if !rustix::process::geteuid().is_root()
                && linux
                    .namespaces()
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User)
                && only_device_rules
                && matches!(
                    source.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
        {
            Ok(None)
        }
        r => r.map(Some),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToChild,
    FromChild,
}

/// One standard stream: the descriptor C gets, and the caller's end when it is a pipe.
struct StdioEnd {
    child: StdioChild,
    parent: Option<OwnedFd>,
}

enum StdioChild {
    Owned(OwnedFd),
    /// The caller's own 0, 1 or 2.
    Inherited(RawFd),
}

impl StdioEnd {
    fn new(stdio: Stdio, fd: RawFd, dir: Direction) -> Result<Self> {
        Ok(match stdio {
            Stdio::Null => {
                let null = fs_err::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map_err(|e| SandboxError::io("opening /dev/null", e))?;
                StdioEnd {
                    child: StdioChild::Owned(fs_err::File::into_parts(null).0.into()),
                    parent: None,
                }
            }
            Stdio::Inherit => StdioEnd {
                child: StdioChild::Inherited(fd),
                parent: None,
            },
            Stdio::Fd(owned) => StdioEnd {
                child: StdioChild::Owned(owned),
                parent: None,
            },
            Stdio::Pipe => {
                let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                    .map_err(|e| SandboxError::io("creating a stdio pipe", e.into()))?;
                let (child, parent) = match dir {
                    Direction::ToChild => (r, w),
                    Direction::FromChild => (w, r),
                };
                StdioEnd {
                    child: StdioChild::Owned(child),
                    parent: Some(parent),
                }
            }
        })
    }

    fn child_fd(&self) -> RawFd {
        match &self.child {
            StdioChild::Owned(fd) => fd.as_raw_fd(),
            StdioChild::Inherited(fd) => *fd,
        }
    }

    /// Closes the child's end (B and C have it) and returns the caller's.
    fn parent_end(self) -> Option<std::fs::File> {
        self.parent.map(std::fs::File::from)
    }
}

/// The caller's handle on a running container: its init (B).
#[derive(Debug)]
struct Init {
    pid: libc::pid_t,
    pidfd: OwnedFd,
    /// C's wait status arrives here.
    status: OwnedFd,
    cgroup: Option<Cgroup>,
    exit: Option<ExitStatus>,
}

impl Init {
    /// Waits for B to exit (and reaps it).
    fn reap(&self) -> Result<rustix::process::WaitIdStatus> {
        loop {
            match rustix::process::waitid(
                rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            ) {
                Ok(Some(status)) => return Ok(status),
                Ok(None) => continue,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(SandboxError::io("waiting for the container", e.into())),
            }
        }
    }

    fn release_cgroup(&mut self) -> Result<()> {
        match self.cgroup.take() {
            Some(cg) => cg.destroy(),
            None => Ok(()),
        }
    }
}

impl Process for Init {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn signal(&self, signal: i32) -> Result<()> {
        if self.exit.is_some() {
            return Err(SandboxError::io(
                format!("sending signal {signal}"),
                std::io::Error::from_raw_os_error(libc::ESRCH),
            ));
        }
        sys::pidfd_send_signal(self.pidfd.as_fd(), signal)
            .map_err(|e| SandboxError::io(format!("sending signal {signal}"), errno_error(e)))
    }

    fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let init_status = self.reap()?;
        let mut word = [0u8; 4];
        let n = sys::read_full(self.status.as_raw_fd(), &mut word)
            .map_err(|e| SandboxError::io("reading the container's exit status", errno_error(e)))?;
        let exit = if n == word.len() {
            let w = libc::c_int::from_ne_bytes(word);
            if libc::WIFSIGNALED(w) {
                ExitStatus::Signal(libc::WTERMSIG(w))
            } else {
                ExitStatus::Code(libc::WEXITSTATUS(w))
            }
        } else if let Some(sig) = init_status.terminating_signal() {
            // The init itself was killed (SIGKILL through `signal`, the OOM killer): so was
            // everything in the container.
            ExitStatus::Signal(sig)
        } else {
            self.exit = Some(ExitStatus::Code(init_status.exit_status().unwrap_or(-1)));
            self.release_cgroup()?;
            return Err(SandboxError::io(
                "the container's init ended without reporting an exit status",
                std::io::Error::from_raw_os_error(libc::ECHILD),
            ));
        };
        self.exit = Some(exit);
        self.release_cgroup()?;
        Ok(exit)
    }
}

impl Drop for Init {
    /// A container dropped before [`Process::wait`] is killed and reaped (no zombie).
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
            let _ = self.reap();
        }
        let _ = self.release_cgroup();
    }
}
