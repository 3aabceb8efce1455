//! The container's first process (B): PID 1 of the new pid namespace. It closes what it
//! inherited, waits until the parent has put it in the cgroup, joins/creates the remaining
//! namespaces, builds the filesystem view (`rootfs`), forks the container's process (C), and
//! then stays as a minimal init: every signal blocked and taken with `sigtimedwait`; `SIGCHLD`
//! reaps every child (orphans included), any other signal is forwarded to C. When C has ended,
//! B writes C's wait status to the status pipe and exits, and the kernel kills whatever is
//! left in the pid namespace.
//!
//! B has `PR_SET_PDEATHSIG(SIGKILL)`: it (and with it the whole pid namespace) dies when the
//! thread that started it exits, e.g. when kiln is killed. Detached containers (`kiln run -d`)
//! will be started by a monitor process that outlives the CLI (DESIGN.md decision 8).
//!
//! Runs after `clone` in a copy of a multi-threaded process: system calls only, no allocation.

use std::os::fd::{AsFd as _, RawFd};

use super::failure::{Failure, Step, rx};
use super::plan::Plan;
use super::rootfs;
use super::sys::{self, Errno, Forked};

/// The descriptors B and C use, by number (valid in the child, which has copies).
#[derive(Debug, Clone)]
pub(super) struct ChildFds {
    /// The parent writes one byte when B is in the cgroup (EOF: the parent gave up).
    pub sync: RawFd,
    /// Failure records; close-on-exec, so EOF means C's `execve` succeeded.
    pub error: RawFd,
    /// C's wait status (4 bytes), written by B just before it exits.
    pub status: RawFd,
    /// Sources of C's stdin, stdout, stderr.
    pub stdio: [RawFd; 3],
    /// The v1 `tasks` files of the container's cgroup (close-on-exec, in `keep`): B writes `0`
    /// to each once released, moving itself (see `cgroup::JoinHandles`).
    pub cgroup_tasks: Vec<RawFd>,
    /// Every descriptor B keeps (the above and the namespace fds), sorted.
    pub keep: Vec<RawFd>,
}

/// B's whole life. Never returns.
pub(super) fn run(plan: &Plan, fds: &ChildFds) -> ! {
    match setup(plan, fds) {
        Err(f) => {
            let _ = sys::write_all(fds.error, &f.encode());
            sys::exit(1)
        }
        Ok(child) => {
            // Only the status pipe (and whatever the caller had as 0..=2) stays open here:
            // C has its own copies of the rest.
            for &fd in &fds.keep {
                if fd > 2 && fd != fds.status {
                    // SAFETY: closing our own copy of a descriptor.
                    unsafe { libc::close(fd) };
                }
            }
            reap_until(child, fds.status)
        }
    }
}

fn setup(plan: &Plan, fds: &ChildFds) -> Result<libc::pid_t, Failure> {
    let at = |step: Step| move |e: Errno| Failure::new(step, 0, e);

    // Descriptors the caller's other threads had open at clone time (other containers' pipe
    // ends among them) must not stay open for our lifetime.
    sys::close_all_except(&fds.keep).map_err(at(Step::CloseFds))?;

    // The container dies with the thread that started it (a kiln killed mid-build must not
    // leave containers behind). Set before waiting for the parent's go-ahead: a parent that
    // died before this point never writes it, and we exit on the closed pipe below.
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong).map_err(at(Step::Sync))?;

    let mut go = [0u8; 1];
    match sys::read_full(fds.sync, &mut go) {
        Ok(1) => {}
        // The parent failed (e.g. could not set up the cgroup) and closed the pipe.
        Ok(_) => sys::exit(1),
        Err(e) => return Err(Failure::new(Step::Sync, 0, e)),
    }
    // Still single-threaded and in the caller's user namespace credentials-wise (the files
    // were opened by the caller): each write moves just this thread, i.e. all of B.
    for (i, &fd) in fds.cgroup_tasks.iter().enumerate() {
        sys::write_all(fd, b"0").map_err(|e| Failure::new(Step::JoinCgroup, i as u32, e))?;
    }
    if plan.userns.is_some() {
        become_userns_root(plan).map_err(at(Step::UserNsIdentity))?;
    }

    for (i, join) in plan.joins.iter().enumerate() {
        // SAFETY: plain system call on a namespace descriptor the plan owns.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&join.fd), join.nstype) } < 0 {
            return Err(Failure::new(Step::JoinNamespace, i as u32, sys::errno()));
        }
    }
    if plan.join_userns {
        // Root of the joined user namespace when its maps have uid/gid 0 (EINVAL otherwise:
        // then we keep our ids, with the full capabilities setns gave).
        let _ = rustix::thread::set_thread_res_gid(
            rustix::process::Gid::ROOT,
            rustix::process::Gid::ROOT,
            rustix::process::Gid::ROOT,
        );
        let _ = rustix::thread::set_thread_res_uid(
            rustix::process::Uid::ROOT,
            rustix::process::Uid::ROOT,
            rustix::process::Uid::ROOT,
        );
        if plan.clone_flags != 0 {
            // SAFETY: plain system call; we are single-threaded.
            if unsafe { libc::unshare(plan.clone_flags as libc::c_int) } < 0 {
                return Err(Failure::new(Step::Unshare, 0, sys::errno()));
            }
        }
        if plan.new_pid_ns {
            fork_pid1()?;
        }
    }
    if plan.unshare_cgroup_ns {
        // After the parent moved us into the container's cgroup: that becomes the root.
        // SAFETY: a new cgroup namespace does not affect memory or descriptors.
        rx(unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) })
            .map_err(at(Step::UnshareCgroup))?;
    }
    if let Some(name) = &plan.hostname {
        rx(rustix::system::sethostname(name)).map_err(at(Step::Hostname))?;
    }
    if plan.new_net_ns {
        sys::loopback_up().map_err(at(Step::Loopback))?;
    }

    rootfs::setup(plan)?;
    rootfs::finish(plan)?;

    if let Some(adj) = &plan.process.oom_score_adj {
        let fd = rx(rustix::fs::open(
            c"/proc/self/oom_score_adj",
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ))
        .map_err(at(Step::OomScoreAdj))?;
        rx(rustix::io::write(fd.as_fd(), adj)).map_err(at(Step::OomScoreAdj))?;
    }
    // C must not be able to ptrace or read the memory of its init (which has every
    // capability); the flag is reset for C by its execve.
    sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(at(Step::Dumpable))?;
    if !plan.new_pid_ns {
        // Not PID 1: adopt C's orphans so they are reaped here.
        sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1).map_err(at(Step::Subreaper))?;
    }

    // SAFETY: C only makes system calls and leaves with execve or _exit.
    match unsafe { sys::clone_fork(0, false) }.map_err(at(Step::ForkProcess))? {
        Forked::Child => {
            let f = super::process::exec(&plan.process, fds.stdio);
            let _ = sys::write_all(fds.error, &f.encode());
            sys::exit(127)
        }
        Forked::Parent { pid, .. } => Ok(pid),
    }
}

/// After `unshare(CLONE_NEWPID)` only our children are in the new pid namespace: fork its PID
/// 1, which returns here and goes on with the setup; we stay as a relay that forwards signals
/// to it and exits as it does (the caller's pidfd refers to us). The child dies with us
/// (`PR_SET_PDEATHSIG`), so killing the relay kills the whole container.
fn fork_pid1() -> Result<(), Failure> {
    let at = |step: Step| move |e: Errno| Failure::new(step, 0, e);
    // To notice a relay that died before PR_SET_PDEATHSIG was in place.
    let relay = rx(rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    ))
    .map_err(at(Step::ForkInit))?;
    // SAFETY: both sides only make system calls.
    match unsafe { sys::clone_fork(0, false) }.map_err(at(Step::ForkInit))? {
        Forked::Child => {
            sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
                .map_err(at(Step::ForkInit))?;
            let mut pfd = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&relay),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no wait.
            if unsafe { libc::poll(&mut pfd, 1, 0) } != 0 {
                sys::exit(1);
            }
            drop(relay);
            Ok(())
        }
        Forked::Parent { pid, .. } => relay_to(pid),
    }
}

/// The relay's life (see [`fork_pid1`]). Never returns.
fn relay_to(child: libc::pid_t) -> ! {
    // The child has its own copies of the pipes: the caller must see their ends close when
    // the child's do.
    let _ = sys::close_range(3, u32::MAX, 0);
    loop {
        let sig = match sys::wait_signal(sys::ALL_SIGNALS) {
            Ok(sig) => sig,
            Err(libc::EINTR) => continue,
            Err(_) => sys::exit(125),
        };
        if sig != libc::SIGCHLD {
            let _ = sys::kill(child, sig);
            continue;
        }
        let mut wstatus: libc::c_int = 0;
        // SAFETY: plain system call with a valid pointer.
        if unsafe { libc::waitpid(child, &mut wstatus, libc::WNOHANG) } != child {
            continue;
        }
        if libc::WIFSIGNALED(wstatus) {
            // End the same way, so the caller sees the signal.
            let sig = libc::WTERMSIG(wstatus);
            sys::reset_signal_dispositions();
            let _ = sys::set_signal_mask(0);
            // SAFETY: plain system calls.
            unsafe { libc::kill(libc::getpid(), sig) };
            sys::exit(128 + sig);
        }
        sys::exit(libc::WEXITSTATUS(wstatus));
    }
}

/// In a new user namespace whose maps the parent has written: drop the caller's
/// supplementary groups (when `setgroups` is allowed; they are unmapped) and take uid and gid
/// 0 when they are mapped, keeping every capability (the transition to uid 0 keeps the
/// permitted set, which the clone made full in the new namespace).
fn become_userns_root(plan: &Plan) -> Result<(), Errno> {
    if plan.userns.as_ref().is_some_and(|u| u.setgroups_allowed()) {
        rx(rustix::thread::set_thread_groups(&[]))?;
    }
    let (uid, gid) = plan.userns_root;
    if gid {
        let root = rustix::process::Gid::ROOT;
        rx(rustix::thread::set_thread_res_gid(root, root, root))?;
    }
    if uid {
        let root = rustix::process::Uid::ROOT;
        rx(rustix::thread::set_thread_res_uid(root, root, root))?;
    }
    Ok(())
}

/// The init loop: reap every child, forward signals to `child`; when `child` is reaped, write
/// its wait status to `status` and exit.
fn reap_until(child: libc::pid_t, status: RawFd) -> ! {
    loop {
        let sig = match sys::wait_signal(sys::ALL_SIGNALS) {
            Ok(sig) => sig,
            Err(libc::EINTR) => continue,
            Err(_) => sys::exit(125),
        };
        if sig != libc::SIGCHLD {
            // C may be gone already (reaped below, or a zombie): nothing to do then.
            let _ = sys::kill(child, sig);
            continue;
        }
        loop {
            let mut wstatus: libc::c_int = 0;
            // SAFETY: plain system call with a valid pointer.
            let pid = unsafe { libc::waitpid(-1, &mut wstatus, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                let _ = sys::write_all(status, &wstatus.to_ne_bytes());
                sys::exit(0);
            }
        }
    }
}
