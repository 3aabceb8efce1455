//! The raw system calls the embedded runtime needs that `rustix` does not wrap: `clone3`,
//! `mount_setattr`, `close_range`, signal masks and waits, `seccomp`, bringing `lo` up.
//!
//! Every function here is one or a few system calls with no allocation and no lock, so it may
//! be called in a child created by `clone` from a multi-threaded process. Errors are plain
//! errno values ([`Errno`]); the caller turns them into a failure record.
//!
//! Not responsible for: deciding what to call (see `child` and `init`).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// An errno value.
pub(super) type Errno = i32;

/// The calling thread's `errno`.
pub(super) fn errno() -> Errno {
    // SAFETY: `__errno_location` returns a valid pointer to the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Converts a `-1`-on-error return value into a `Result`.
fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 { Err(errno()) } else { Ok(ret) }
}

/// `struct clone_args` up to version 2 (88 bytes, with `cgroup`; Linux 5.7). Passed with the
/// version 0 size (64 bytes; Linux 5.3) unless `CLONE_INTO_CGROUP` is used.
#[repr(C, align(8))]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Size of `struct clone_args` version 0.
const CLONE_ARGS_SIZE_VER0: usize = 64;

/// `CLONE_INTO_CGROUP` (linux/sched.h; not in every libc crate version).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The result of a fork-like clone, as seen by each side.
pub(super) enum Forked {
    /// We are the new process.
    Child,
    /// We are the caller; the child has this pid (and this pidfd, when asked for).
    Parent { pid: libc::pid_t, pidfd: RawFd },
}

/// Fork-like `clone3(flags | CLONE_PIDFD?)` with `SIGCHLD` as the exit signal and no new stack:
/// the child continues on a copy of the caller's stack, like `fork`, but without running
/// `pthread_atfork` handlers or taking libc's locks. `flags` are `CLONE_NEW*` bits.
///
/// # Safety
/// In the child only async-signal-safe operations may follow (no allocation, no lock, no
/// Rust std I/O), and it must leave with `_exit` or `execve`, never by returning into code
/// that assumes the parent's threads exist.
pub(super) unsafe fn clone_fork(flags: u64, want_pidfd: bool) -> Result<Forked, Errno> {
    // SAFETY: forwarded contract.
    unsafe { clone_fork_into(flags, want_pidfd, None) }
}

/// [`clone_fork`], with the child created in the cgroup2 directory `cgroup` (an `O_PATH` or
/// directory descriptor) when given: `CLONE_INTO_CGROUP`, which fails (`EINVAL` before Linux
/// 5.7 or for a non-cgroup2 descriptor, `EBUSY`/`EOPNOTSUPP` for a cgroup that cannot hold
/// processes) without creating anything.
///
/// # Safety
/// As for [`clone_fork`].
pub(super) unsafe fn clone_fork_into(
    flags: u64,
    want_pidfd: bool,
    cgroup: Option<RawFd>,
) -> Result<Forked, Errno> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if want_pidfd {
        args.flags |= libc::CLONE_PIDFD as u64;
        args.pidfd = std::ptr::from_mut(&mut pidfd) as u64;
    }
    let mut size = CLONE_ARGS_SIZE_VER0;
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
        size = std::mem::size_of::<CloneArgs>();
    }
    // SAFETY: `args` is a valid clone_args of (at least) the size given; no stack means fork
    // semantics.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::from_mut(&mut args), size) };
    match check(ret)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            pid: pid as libc::pid_t,
            pidfd,
        }),
    }
}

/// `mount_setattr(dirfd, path, flags, {attr_set, attr_clr, propagation})`.
pub(super) fn mount_setattr(
    dirfd: BorrowedFd<'_>,
    path: &CStr,
    flags: u32,
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
) -> Result<(), Errno> {
    let attr = libc::mount_attr {
        attr_set,
        attr_clr,
        propagation,
        userns_fd: 0,
    };
    // SAFETY: valid fd, NUL-terminated path and a mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            flags,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    check(ret).map(drop)
}

/// `close_range(first, last, flags)`; `first > last` is a no-op.
pub(super) fn close_range(first: u32, last: u32, flags: u32) -> Result<(), Errno> {
    if first > last {
        return Ok(());
    }
    // SAFETY: closing descriptors is memory-safe; the caller owns the process's fd table.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    check(ret).map(drop)
}

/// Closes every descriptor except those in `keep` (sorted ascending, no duplicates).
pub(super) fn close_all_except(keep: &[RawFd]) -> Result<(), Errno> {
    let mut next: u32 = 0;
    for &fd in keep {
        let Ok(fd) = u32::try_from(fd) else { continue };
        if fd > next {
            close_range(next, fd - 1, 0)?;
        }
        next = fd.saturating_add(1);
    }
    close_range(next, u32::MAX, 0)
}

/// A kernel signal set (64 signals).
pub(super) type SigSet = u64;

/// Every signal.
pub(super) const ALL_SIGNALS: SigSet = !0;

/// `rt_sigprocmask(SIG_SETMASK, set)` on the calling thread; returns the previous mask.
/// Unlike libc's wrapper it does not filter out libc's internal signals.
pub(super) fn set_signal_mask(set: SigSet) -> Result<SigSet, Errno> {
    let mut old: SigSet = 0;
    // SAFETY: valid pointers to 8-byte signal sets, size 8 as the kernel expects.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            std::ptr::from_ref(&set),
            std::ptr::from_mut(&mut old),
            std::mem::size_of::<SigSet>(),
        )
    };
    check(ret).map(|_| old)
}

/// Waits for one of the (blocked) signals in `set`; returns its number and sender pid.
pub(super) fn wait_signal(set: SigSet) -> Result<libc::c_int, Errno> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers; a null timeout waits forever.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            std::ptr::from_ref(&set),
            std::ptr::from_mut(&mut info),
            std::ptr::null::<libc::timespec>(),
            std::mem::size_of::<SigSet>(),
        )
    };
    check(ret).map(|sig| sig as libc::c_int)
}

/// Sets the disposition of every catchable signal to `SIG_DFL` (an ignored signal, such as
/// the `SIGPIPE` Rust programs ignore, would otherwise stay ignored across `execve`).
pub(super) fn reset_signal_dispositions() {
    // The kernel's `struct sigaction` (handler, flags, restorer, 64-bit mask on x86-64 and
    // arm64), all zero: SIG_DFL, no flags, empty mask. The raw system call, because glibc's
    // `sigaction` refuses its reserved real-time signals (32, 33), which the caller may have
    // ignored all the same.
    let dfl = [0u64; 4];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: async-signal-safe raw system call with a valid pointer and the kernel's
        // sigset size; errors (numbers above SIGRTMAX) are harmless.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
}

/// `kill(pid, sig)`.
pub(super) fn kill(pid: libc::pid_t, sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: plain system call.
    check(unsafe { libc::kill(pid, sig) }.into()).map(drop)
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub(super) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> Result<(), Errno> {
    // SAFETY: plain system call with a valid fd and a null siginfo.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check(ret).map(drop)
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`.
pub(super) fn seccomp_set_filter(
    program: &[seccompiler::sock_filter],
    flags: libc::c_ulong,
) -> Result<(), Errno> {
    let Ok(len) = u16::try_from(program.len()) else {
        return Err(libc::E2BIG);
    };
    let prog = libc::sock_fprog {
        len,
        // seccompiler's sock_filter has the kernel's layout (u16, u8, u8, u32), like libc's.
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: the kernel copies the program; `prog` points at `program`, alive for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            std::ptr::from_ref(&prog),
        )
    };
    check(ret).map(drop)
}

/// `prctl(option, arg2, 0, 0, 0)`.
pub(super) fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: the options used here take integer arguments only.
    let ret = unsafe { libc::prctl(option, arg2, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    check(ret.into()).map(drop)
}

/// `prctl(PR_CAP_AMBIENT, op, cap, 0, 0)`.
pub(super) fn prctl_ambient(op: libc::c_ulong, cap: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            op,
            cap,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    check(ret.into()).map(drop)
}

/// Sets `IFF_UP` on the loopback interface of the current network namespace.
pub(super) fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain system call.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(errno());
    }
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let mut result = Ok(());
    // SAFETY: valid socket and ifreq.
    if unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, std::ptr::from_mut(&mut req)) } < 0 {
        result = Err(errno());
    } else {
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        // SAFETY: valid socket and ifreq.
        if unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, std::ptr::from_mut(&mut req)) } < 0 {
            result = Err(errno());
        }
    }
    // SAFETY: we own `sock`.
    unsafe { libc::close(sock) };
    result
}

/// Writes all of `buf` to `fd` (retrying on `EINTR` and short writes).
pub(super) fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: valid buffer of the given length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = buf.get(n as usize..).unwrap_or_default();
    }
    Ok(())
}

/// Reads into `buf` until it is full or end of file; returns the number of bytes read.
pub(super) fn read_full(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or_default();
        // SAFETY: valid buffer of the given length.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        done += n as usize;
    }
    Ok(done)
}

/// `_exit(code)`: leaves the process without running destructors or atexit handlers.
pub(super) fn exit(code: libc::c_int) -> ! {
    // SAFETY: always safe; it does not return.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The design choice in `mod.rs`: one `clone3` into the new namespaces versus `fork`,
    /// `unshare`, `fork` (the child must fork again to be in the new pid namespace). Root only;
    /// `cargo test --release --lib sandbox::linux::sys -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark, needs root"]
    #[allow(clippy::print_stderr)]
    fn clone3_versus_fork_unshare_fork() {
        let flags = (libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWNET) as u64;
        let wait = |pid: libc::pid_t| {
            let mut st = 0;
            // SAFETY: plain waitpid on our child.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            st
        };
        let median = |mut v: Vec<std::time::Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let mut one = Vec::new();
        let mut two = Vec::new();
        for _ in 0..200 {
            let t = std::time::Instant::now();
            // SAFETY: the child only calls _exit.
            match unsafe { clone_fork(flags, false) }.unwrap() {
                Forked::Child => exit(0),
                Forked::Parent { pid, .. } => assert_eq!(wait(pid), 0),
            }
            one.push(t.elapsed());

            let t = std::time::Instant::now();
            // SAFETY: the children only make system calls and _exit.
            match unsafe { clone_fork(0, false) }.unwrap() {
                Forked::Child => {
                    // SAFETY: plain system call.
                    if unsafe { libc::unshare(flags as libc::c_int) } != 0 {
                        exit(1);
                    }
                    // SAFETY: as above.
                    match unsafe { clone_fork(0, false) } {
                        Ok(Forked::Child) => exit(0),
                        Ok(Forked::Parent { pid, .. }) => exit(wait(pid)),
                        Err(_) => exit(2),
                    }
                }
                Forked::Parent { pid, .. } => assert_eq!(wait(pid), 0),
            }
            two.push(t.elapsed());
        }
        eprintln!(
            "clone3 into namespaces: median {:?}; fork + unshare + fork: median {:?}",
            median(one),
            median(two)
        );
    }
}
