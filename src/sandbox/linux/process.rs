//! The container's process (C), between `fork` from the init and `execve`: signals reset, new
//! session, stdio, every other descriptor close-on-exec, cwd, umask, rlimits, identity,
//! capabilities, `no_new_privs`, seccomp, and the `PATH` lookup of the program.
//!
//! The order follows runc's `finalizeNamespace`/`setupUser`: rlimits while still privileged;
//! bounding set, groups, gid, uid with `PR_SET_KEEPCAPS`; then `capset` and ambient
//! capabilities; `no_new_privs`; the seccomp filter last (or before the identity change when
//! `no_new_privs` is off, since installing it then needs `CAP_SYS_ADMIN`).
//!
//! Runs after `clone` in a copy of a multi-threaded process: system calls only, no allocation.

use std::os::fd::RawFd;

use super::failure::{Failure, Step, rx};
use super::plan::ProcessPlan;
use super::sys::{self, Errno};

/// Sets up the process and `execve`s; returns only on failure.
pub(super) fn exec(p: &ProcessPlan, stdio: [RawFd; 3]) -> Failure {
    match setup(p, stdio) {
        Err(f) => f,
        Ok(()) => exec_program(p),
    }
}

fn setup(p: &ProcessPlan, stdio: [RawFd; 3]) -> Result<(), Failure> {
    let at = |step: Step| move |e: Errno| Failure::new(step, 0, e);

    // The init blocked every signal, and the caller may ignore some (Rust ignores SIGPIPE):
    // both survive execve, so start from a clean state.
    sys::reset_signal_dispositions();
    sys::set_signal_mask(0).map_err(at(Step::Setsid))?;
    rx(rustix::process::setsid()).map_err(at(Step::Setsid))?;

    // Move the sources out of 0..=2 first, so dup2 cannot overwrite one with another.
    let mut high = [-1; 3];
    for (slot, &src) in high.iter_mut().zip(&stdio) {
        // SAFETY: plain fcntl on a descriptor the plan gave us.
        let fd = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 3) };
        if fd < 0 {
            return Err(Failure::new(Step::Stdio, 0, sys::errno()));
        }
        *slot = fd;
    }
    for (target, &fd) in high.iter().enumerate() {
        // SAFETY: dup2 of valid descriptors; it clears FD_CLOEXEC on the target.
        if unsafe { libc::dup2(fd, target as RawFd) } < 0 {
            return Err(Failure::new(Step::Stdio, target as u32, sys::errno()));
        }
    }
    // Everything else (including what the caller's other threads opened without O_CLOEXEC)
    // closes at execve; the error pipe stays usable until then.
    sys::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC).map_err(at(Step::CloseOnExec))?;

    rx(rustix::process::chdir(p.cwd.as_c_str())).map_err(at(Step::Chdir))?;
    if let Some(mask) = p.umask {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask & 0o777));
    }
    for (i, (resource, limit)) in p.rlimits.iter().enumerate() {
        rx(rustix::process::setrlimit(*resource, *limit))
            .map_err(|e| Failure::new(Step::Rlimit, i as u32, e))?;
    }
    if !p.no_new_privs {
        install_seccomp(p)?;
    }

    let caps = &p.caps;
    rx(rustix::thread::set_keep_capabilities(true)).map_err(at(Step::KeepCaps))?;
    for cap in 0..=caps.last_cap.min(63) {
        if caps.bounding & (1u64 << cap) == 0 {
            match sys::prctl(libc::PR_CAPBSET_DROP, cap.into()) {
                Ok(()) | Err(libc::EINVAL) => {}
                Err(e) => return Err(Failure::new(Step::BoundingSet, cap, e)),
            }
        }
    }
    if !(p.setgroups_denied && p.groups.is_empty()) {
        rx(rustix::thread::set_thread_groups(&p.groups)).map_err(at(Step::Groups))?;
    }
    let gid = rustix::process::Gid::from_raw(p.gid);
    rx(rustix::thread::set_thread_res_gid(gid, gid, gid)).map_err(at(Step::Gid))?;
    let uid = rustix::process::Uid::from_raw(p.uid);
    rx(rustix::thread::set_thread_res_uid(uid, uid, uid)).map_err(at(Step::Uid))?;
    rx(rustix::thread::set_capabilities(
        None,
        rustix::thread::CapabilitySets {
            effective: rustix::thread::CapabilitySet::from_bits_retain(caps.effective),
            permitted: rustix::thread::CapabilitySet::from_bits_retain(caps.permitted),
            inheritable: rustix::thread::CapabilitySet::from_bits_retain(caps.inheritable),
        },
    ))
    .map_err(at(Step::Capabilities))?;
    sys::prctl_ambient(libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0)
        .map_err(at(Step::AmbientCaps))?;
    for cap in 0..=caps.last_cap.min(63) {
        if caps.ambient & (1u64 << cap) != 0 {
            sys::prctl_ambient(libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, cap.into())
                .map_err(|e| Failure::new(Step::AmbientCaps, cap, e))?;
        }
    }
    if p.no_new_privs {
        rx(rustix::thread::set_no_new_privs(true)).map_err(at(Step::NoNewPrivs))?;
        install_seccomp(p)?;
    }
    Ok(())
}

fn install_seccomp(p: &ProcessPlan) -> Result<(), Failure> {
    for (i, program) in p.seccomp.iter().enumerate() {
        sys::seccomp_set_filter(program, p.seccomp_flags)
            .map_err(|e| Failure::new(Step::Seccomp, i as u32, e))?;
    }
    Ok(())
}

/// `execve`s the first candidate that exists, like `execvp` over the spec's `PATH`.
fn exec_program(p: &ProcessPlan) -> Failure {
    let e = &p.exec;
    let mut denied = None;
    for (i, candidate) in e.candidates.iter().enumerate() {
        // SAFETY: NUL-terminated path, NULL-terminated argv/envp arrays that live in the plan.
        unsafe { libc::execve(candidate.as_ptr(), e.argv.as_ptr(), e.envp.as_ptr()) };
        match sys::errno() {
            libc::ENOENT | libc::ENOTDIR if e.searched => continue,
            libc::EACCES if e.searched => {
                denied.get_or_insert(i as u32);
            }
            errno => return Failure::new(Step::Exec, i as u32, errno),
        }
    }
    match denied {
        Some(i) => Failure::new(Step::Exec, i, libc::EACCES),
        None => Failure::new(Step::ExecNotFound, 0, libc::ENOENT),
    }
}
