//! Tests of the default profile, of its resolution, and of the compiled programs: run in a small
//! classic-BPF interpreter for every system call of the ABI, and installed for real in a forked
//! child.

use super::*;
use crate::sandbox::spec::DEFAULT_CAPABILITIES;
use seccompiler::sock_filter;

const SECCOMP_RET_ACTION_FULL: u32 = 0xffff_0000;

fn host(kernel: (u32, u32)) -> Host {
    Host {
        native: native_arch().map(|(n, _)| n),
        kernel: Some(kernel),
    }
}

fn default_profile() -> Profile {
    Profile::from_json(DEFAULT_PROFILE).unwrap()
}

fn names_with(profile: &LinuxSeccomp, name: &str) -> Vec<LinuxSyscall> {
    profile
        .syscalls()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.names().iter().any(|n| n == name))
        .collect()
}

#[test]
fn embedded_profile_parses_with_docker_defaults() {
    let p = default_profile();
    assert_eq!(p.default_action, LinuxSeccompAction::ScmpActErrno);
    assert_eq!(p.default_errno_ret, Some(1));
    assert!(p.syscalls.len() > 50);
    // The big allow list is the first rule and holds the calls every program needs.
    let first = &p.syscalls[0];
    for name in [
        "execve",
        "read",
        "write",
        "openat",
        "mmap",
        "exit_group",
        "rt_sigreturn",
    ] {
        assert!(first.names.iter().any(|n| n == name), "{name}");
    }
    // and none of those Docker keeps behind a capability or blocks.
    for name in [
        "mount",
        "unshare",
        "setns",
        "keyctl",
        "add_key",
        "kexec_load",
        "io_uring_setup",
    ] {
        assert!(!first.names.iter().any(|n| n == name), "{name}");
    }
}

#[test]
fn resolve_default_caps_gates_rules_like_moby() {
    let profile = default_profile().resolve_for(DEFAULT_CAPABILITIES, &host((6, 1)));
    assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(profile.default_errno_ret(), Some(1));
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            profile.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert_eq!(names_with(&profile, "arch_prctl").len(), 1);
        assert!(
            names_with(&profile, "set_tls").is_empty(),
            "an arm-only rule"
        );
    }
    // No CAP_SYS_ADMIN: no mount, clone only with masked flags, clone3 → ENOSYS.
    assert!(names_with(&profile, "mount").is_empty());
    let clone = names_with(&profile, "clone");
    assert_eq!(clone.len(), 1, "{clone:?}");
    let arg = clone[0].args().as_ref().unwrap()[0];
    assert_eq!(
        (arg.index(), arg.value(), arg.op()),
        (0, 0x7E02_0000, LinuxSeccompOperator::ScmpCmpMaskedEq)
    );
    let clone3 = names_with(&profile, "clone3");
    assert_eq!(clone3.len(), 1);
    assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(clone3[0].errno_ret(), Some(38));
    // CAP_SYS_CHROOT is in Docker's set, CAP_SYS_PTRACE is not (ptrace comes from minKernel 4.8).
    assert_eq!(names_with(&profile, "chroot").len(), 1);
    assert!(names_with(&profile, "kcmp").is_empty());
    assert_eq!(names_with(&profile, "ptrace").len(), 1);
    // socket: the family allow-list.
    assert_eq!(names_with(&profile, "socket").len(), 26);
}

#[test]
fn resolve_follows_capabilities_and_kernel() {
    let mut caps = DEFAULT_CAPABILITIES.to_vec();
    caps.push(Capability::SysAdmin);
    let admin = default_profile().resolve_for(&caps, &host((6, 1)));
    assert_eq!(names_with(&admin, "mount").len(), 1);
    assert!(
        names_with(&admin, "clone3")
            .iter()
            .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
    );
    assert_eq!(
        names_with(&admin, "clone").len(),
        1,
        "only the unconditional rule"
    );

    let no_chroot: Vec<Capability> = DEFAULT_CAPABILITIES
        .iter()
        .copied()
        .filter(|c| *c != Capability::SysChroot)
        .collect();
    let p = default_profile().resolve_for(&no_chroot, &host((6, 1)));
    assert!(names_with(&p, "chroot").is_empty());

    let old = default_profile().resolve_for(DEFAULT_CAPABILITIES, &host((4, 4)));
    assert!(names_with(&old, "ptrace").is_empty(), "minKernel 4.8");
}

#[test]
fn profile_format_errors() {
    assert!(matches!(
        Profile::from_json("{"),
        Err(SandboxError::Seccomp(_))
    ));
    let both = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
        "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":null}],"syscalls":[]}"#;
    assert!(Profile::from_json(both).is_err());
    let name_and_names = r#"{"defaultAction":"SCMP_ACT_ERRNO",
        "syscalls":[{"name":"read","names":["write"],"action":"SCMP_ACT_ALLOW"}]}"#;
    assert!(Profile::from_json(name_and_names).is_err());
    let single = r#"{"defaultAction":"SCMP_ACT_ERRNO",
        "syscalls":[{"name":"read","action":"SCMP_ACT_ALLOW"}]}"#;
    let p = Profile::from_json(single).unwrap().resolve(&[]);
    assert_eq!(
        p.syscalls().as_ref().unwrap()[0].names(),
        &["read".to_owned()]
    );
}

#[test]
fn kernel_versions() {
    assert_eq!(parse_kernel_version("6.1.0-18-amd64"), Some((6, 1)));
    assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
    assert_eq!(parse_kernel_version("5.15.0+"), Some((5, 15)));
    assert_eq!(parse_kernel_version("garbage"), None);
}

#[test]
fn syscall_tables_are_sorted_and_unique() {
    for table in [syscalls::X86_64, syscalls::I386, syscalls::AARCH64] {
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        let mut numbers: Vec<u32> = table.iter().map(|(_, n)| *n).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), table.len());
    }
    // Spot checks against libc's constants for this build's architecture.
    let native = host_abis()[0].table;
    for (name, nr) in [
        ("read", libc::SYS_read),
        ("execve", libc::SYS_execve),
        ("clone3", libc::SYS_clone3),
        ("personality", libc::SYS_personality),
        ("socket", libc::SYS_socket),
        ("keyctl", libc::SYS_keyctl),
        ("openat2", libc::SYS_openat2),
    ] {
        assert_eq!(
            syscall_number(native, name).map(i64::from),
            Some(nr),
            "{name}"
        );
    }
    assert_eq!(syscall_number(native, "no_such_call"), None);
}

// ---- a classic-BPF interpreter, enough for what seccompiler and `dispatch` emit ----

/// `struct seccomp_data` as the kernel lays it out (little-endian).
fn seccomp_data(nr: u32, arch: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_le_bytes());
    d[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    d
}

fn run_bpf(program: &[sock_filter], data: &[u8; 64]) -> u32 {
    let mut a: u32 = 0;
    let mut pc = 0usize;
    loop {
        let ins = &program[pc];
        pc += 1;
        let class = u32::from(ins.code) & 0x07;
        let op = u32::from(ins.code) & 0xf0;
        match class {
            c if c == libc::BPF_LD => {
                assert_eq!(
                    u32::from(ins.code),
                    libc::BPF_LD | libc::BPF_W | libc::BPF_ABS
                );
                let k = ins.k as usize;
                a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
            }
            c if c == libc::BPF_ALU => {
                assert_eq!(op, libc::BPF_AND, "only AND is used");
                a &= ins.k;
            }
            c if c == libc::BPF_JMP => {
                if op == libc::BPF_JA {
                    pc += ins.k as usize;
                } else {
                    let taken = match op {
                        o if o == libc::BPF_JEQ => a == ins.k,
                        o if o == libc::BPF_JGT => a > ins.k,
                        o if o == libc::BPF_JGE => a >= ins.k,
                        o if o == libc::BPF_JSET => a & ins.k != 0,
                        other => panic!("jump op {other:#x}"),
                    };
                    pc += usize::from(if taken { ins.jt } else { ins.jf });
                }
            }
            c if c == libc::BPF_RET => return ins.k,
            other => panic!("instruction class {other:#x}"),
        }
    }
}

/// What the kernel returns for a stack of filters installed in `programs` order.
fn run_stack(programs: &[BpfProgram], data: &[u8; 64]) -> u32 {
    let mut ret = libc::SECCOMP_RET_ALLOW;
    // Newest first; a later (older) filter wins only with strictly higher precedence.
    for p in programs.iter().rev() {
        let cur = run_bpf(p, data);
        if ((cur & SECCOMP_RET_ACTION_FULL) as i32) < ((ret & SECCOMP_RET_ACTION_FULL) as i32) {
            ret = cur;
        }
    }
    ret
}

/// The return value a profile asks for, evaluated straight from the OCI rules (not via BPF).
fn reference(profile: &LinuxSeccomp, name: &str, args: [u64; 6]) -> u32 {
    let to_ret = |act, errno| u32::from(action(act, errno).unwrap());
    let mut best: Option<u32> = None;
    for rule in profile.syscalls().as_deref().unwrap_or_default() {
        if !rule.names().iter().any(|n| n == name) {
            continue;
        }
        let holds = rule.args().as_deref().unwrap_or_default().iter().all(|c| {
            let a = args[c.index()];
            let v = c.value();
            match c.op() {
                LinuxSeccompOperator::ScmpCmpNe => a != v,
                LinuxSeccompOperator::ScmpCmpLt => a < v,
                LinuxSeccompOperator::ScmpCmpLe => a <= v,
                LinuxSeccompOperator::ScmpCmpEq => a == v,
                LinuxSeccompOperator::ScmpCmpGe => a >= v,
                LinuxSeccompOperator::ScmpCmpGt => a > v,
                LinuxSeccompOperator::ScmpCmpMaskedEq => a & v == c.value_two().unwrap_or(0),
            }
        });
        if !holds {
            continue;
        }
        let r = to_ret(rule.action(), rule.errno_ret());
        best = Some(match best {
            None => r,
            Some(b)
                if ((r & SECCOMP_RET_ACTION_FULL) as i32)
                    < ((b & SECCOMP_RET_ACTION_FULL) as i32) =>
            {
                r
            }
            Some(b) => {
                assert!(
                    r == b || (r & SECCOMP_RET_ACTION_FULL) != (b & SECCOMP_RET_ACTION_FULL),
                    "tie"
                );
                b
            }
        });
    }
    best.unwrap_or_else(|| to_ret(profile.default_action(), profile.default_errno_ret()))
}

const EPERM_RET: u32 = libc::SECCOMP_RET_ERRNO | 1;
const ENOSYS_RET: u32 = libc::SECCOMP_RET_ERRNO | 38;

fn docker_programs(caps: &[Capability]) -> (LinuxSeccomp, Vec<BpfProgram>) {
    let profile = default_profile().resolve_for(caps, &host((6, 18)));
    let programs = compile(&profile).unwrap();
    (profile, programs)
}

#[test]
fn default_profile_compiles_to_one_short_searched_program() {
    let (_, programs) = docker_programs(DEFAULT_CAPABILITIES);
    assert_eq!(programs.len(), 1);
    assert!(!programs[0].is_empty() && programs[0].len() <= BPF_MAXINSNS);
    // The path of any syscall is short (binary search): count the instructions executed for
    // every number of the native ABI and a few out of range.
    let mut longest = 0;
    for nr in (0..600).chain([0x4000_0000, u32::MAX]) {
        let data = seccomp_data(nr, host_abis()[0].audit, [0; 6]);
        longest = longest.max(steps(&programs[0], &data));
    }
    assert!(longest < 60, "longest path {longest} instructions");
}

/// How many instructions [`run_bpf`] executes.
fn steps(program: &[sock_filter], data: &[u8; 64]) -> usize {
    let mut n = 0;
    let mut pc = 0usize;
    let mut a: u32 = 0;
    loop {
        n += 1;
        let ins = &program[pc];
        pc += 1;
        let class = u32::from(ins.code) & 0x07;
        let op = u32::from(ins.code) & 0xf0;
        if class == libc::BPF_RET {
            return n;
        } else if class == libc::BPF_LD {
            let k = ins.k as usize;
            a = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
        } else if class == libc::BPF_ALU {
            a &= ins.k;
        } else if op == libc::BPF_JA {
            pc += ins.k as usize;
        } else {
            let taken = match op {
                o if o == libc::BPF_JEQ => a == ins.k,
                o if o == libc::BPF_JGT => a > ins.k,
                _ => a >= ins.k,
            };
            pc += usize::from(if taken { ins.jt } else { ins.jf });
        }
    }
}

/// Every system call of the native ABI, with all-zero arguments, gets from the compiled
/// programs exactly what the profile's rules say; and the allowed ones are the profile's names.
#[test]
fn compiled_programs_agree_with_profile_for_every_syscall() {
    let abi = host_abis()[0];
    for caps in [DEFAULT_CAPABILITIES.to_vec(), vec![], {
        let mut c = DEFAULT_CAPABILITIES.to_vec();
        c.extend([
            Capability::SysAdmin,
            Capability::SysPtrace,
            Capability::SysTime,
        ]);
        c
    }] {
        let (profile, programs) = docker_programs(&caps);
        let mut allowed = Vec::new();
        for (name, nr) in abi.table {
            let got = run_stack(&programs, &seccomp_data(*nr, abi.audit, [0; 6]));
            let want = reference(&profile, name, [0; 6]);
            assert_eq!(
                got, want,
                "{name} ({nr}) with {caps:?}: got {got:#x}, want {want:#x}"
            );
            if got == libc::SECCOMP_RET_ALLOW {
                allowed.push(*name);
            }
        }
        // The allowed names are the profile's ALLOW names that this ABI has.
        let mut from_profile: Vec<&str> = profile
            .syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
            .flat_map(|r| r.names().iter().map(String::as_str))
            .filter(|n| syscall_number(abi.table, n).is_some())
            .collect();
        from_profile.sort_unstable();
        from_profile.dedup();
        allowed.sort_unstable();
        assert_eq!(allowed, from_profile, "with {caps:?}");
        assert!(allowed.len() > 280, "{}", allowed.len());
    }
}

#[test]
fn compiled_programs_check_arguments() {
    let abi = host_abis()[0];
    let (profile, programs) = docker_programs(DEFAULT_CAPABILITIES);
    let nr = |name| syscall_number(abi.table, name).unwrap();
    let clone_newuser = libc::CLONE_NEWUSER as u64 | libc::SIGCHLD as u64;
    let thread_flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64;
    let cases: &[(&str, u64, u32)] = &[
        ("personality", 0, libc::SECCOMP_RET_ALLOW),
        ("personality", 0xffff_ffff, libc::SECCOMP_RET_ALLOW),
        ("personality", 8, libc::SECCOMP_RET_ALLOW),
        ("personality", 0x20008, libc::SECCOMP_RET_ALLOW),
        ("personality", 6, EPERM_RET),
        ("personality", 0x1_0000_0000, EPERM_RET),
        ("socket", libc::AF_UNIX as u64, libc::SECCOMP_RET_ALLOW),
        ("socket", libc::AF_INET6 as u64, libc::SECCOMP_RET_ALLOW),
        ("socket", libc::AF_NETLINK as u64, libc::SECCOMP_RET_ALLOW),
        ("socket", libc::AF_PACKET as u64, libc::SECCOMP_RET_ALLOW),
        ("socket", 12, EPERM_RET), // AF_DECnet, removed from Linux
        ("socket", 38, EPERM_RET), // AF_ALG
        ("socket", 39, libc::SECCOMP_RET_ALLOW), // AF_NFC
        ("socket", 40, EPERM_RET), // AF_VSOCK
        ("socket", 44, libc::SECCOMP_RET_ALLOW), // AF_XDP
        ("socket", 46, EPERM_RET),
        ("clone", libc::SIGCHLD as u64, libc::SECCOMP_RET_ALLOW),
        ("clone", thread_flags, libc::SECCOMP_RET_ALLOW),
        ("clone", clone_newuser, EPERM_RET),
        ("clone", libc::CLONE_NEWNS as u64, EPERM_RET),
        ("clone", libc::CLONE_NEWNET as u64, EPERM_RET),
        ("clone3", 0, ENOSYS_RET),
        ("kexec_load", 0, EPERM_RET),
        ("getpid", 0, libc::SECCOMP_RET_ALLOW),
    ];
    for (name, arg0, want) in cases {
        let args = [*arg0, 0, 0, 0, 0, 0];
        let got = run_stack(&programs, &seccomp_data(nr(name), abi.audit, args));
        assert_eq!(got, *want, "{name}({arg0:#x}): got {got:#x}");
        assert_eq!(
            reference(&profile, name, args),
            *want,
            "reference for {name}({arg0:#x})"
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn compiled_programs_filter_i386_and_kill_other_abis() {
    let (_, programs) = docker_programs(DEFAULT_CAPABILITIES);
    let i386 = |name| syscall_number(syscalls::I386, name).unwrap();
    let run = |nr, arch, a0| run_stack(&programs, &seccomp_data(nr, arch, [a0, 0, 0, 0, 0, 0]));
    assert_eq!(
        run(i386("getpid"), AUDIT_ARCH_I386, 0),
        libc::SECCOMP_RET_ALLOW
    );
    assert_eq!(
        run(i386("socketcall"), AUDIT_ARCH_I386, 0),
        libc::SECCOMP_RET_ALLOW
    );
    assert_eq!(run(i386("kexec_load"), AUDIT_ARCH_I386, 0), EPERM_RET);
    assert_eq!(run(i386("clone3"), AUDIT_ARCH_I386, 0), ENOSYS_RET);
    assert_eq!(run(i386("personality"), AUDIT_ARCH_I386, 6), EPERM_RET);
    // i386's 20 is getpid but x86_64's 20 is writev: the numbers follow the ABI.
    assert_eq!(run(20, AUDIT_ARCH_X86_64, 0), libc::SECCOMP_RET_ALLOW);
    // x32 numbers (bit 30) match nothing: the default action.
    assert_eq!(run(0x4000_0000 | 39, AUDIT_ARCH_X86_64, 0), EPERM_RET);
    // Another ABI is killed.
    assert_eq!(
        run(172, AUDIT_ARCH_AARCH64, 0),
        libc::SECCOMP_RET_KILL_PROCESS
    );
}

#[test]
fn compile_generic_profiles() {
    let abi = host_abis()[0];
    let nr = |name| syscall_number(abi.table, name).unwrap();
    // A deny-list profile (default ALLOW) with two errnos and a LOG rule weaker than the default.
    let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
        {"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
        {"names":["rmdir"],"action":"SCMP_ACT_ERRNO"},
        {"names":["getpid"],"action":"SCMP_ACT_LOG"},
        {"names":["no_such_call"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#;
    let profile = Profile::from_json(json).unwrap().resolve(&[]);
    let programs = compile(&profile).unwrap();
    let run = |name| run_stack(&programs, &seccomp_data(nr(name), abi.audit, [0; 6]));
    assert_eq!(run("mkdirat"), libc::SECCOMP_RET_ERRNO | 13);
    assert_eq!(run("rmdir"), EPERM_RET);
    assert_eq!(run("getpid"), libc::SECCOMP_RET_LOG);
    assert_eq!(run("read"), libc::SECCOMP_RET_ALLOW);

    // An allow-list profile with a LOG rule: LOG must win over the default ERRNO.
    let json = r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,"syscalls":[
        {"names":["read"],"action":"SCMP_ACT_ALLOW"},
        {"names":["getpid"],"action":"SCMP_ACT_LOG"},
        {"names":["write"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#;
    let profile = Profile::from_json(json).unwrap().resolve(&[]);
    let programs = compile(&profile).unwrap();
    let run = |name| run_stack(&programs, &seccomp_data(nr(name), abi.audit, [0; 6]));
    assert_eq!(run("read"), libc::SECCOMP_RET_ALLOW);
    assert_eq!(run("getpid"), libc::SECCOMP_RET_LOG);
    assert_eq!(run("write"), EPERM_RET);
    assert_eq!(run("close"), EPERM_RET);

    let notify = r#"{"defaultAction":"SCMP_ACT_NOTIFY","syscalls":[]}"#;
    let profile = Profile::from_json(notify).unwrap().resolve(&[]);
    assert!(matches!(compile(&profile), Err(SandboxError::Seccomp(_))));
    let bad_index = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],
        "action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#;
    let profile = Profile::from_json(bad_index).unwrap().resolve(&[]);
    assert!(matches!(compile(&profile), Err(SandboxError::Seccomp(_))));
}

// ---- the real thing, in a forked child ----

/// What the child reports: one value per probe (`-errno` on failure).
const PROBES: usize = 11;

/// In the forked child: install `programs` (unless empty), run the probes, write the results to
/// `fd`, then `execve` `sh -c 'exit 7'`. Only raw system calls: nothing here allocates.
///
/// # Safety
/// Must be called in a freshly forked child; never returns.
unsafe fn child(
    programs: &[BpfProgram],
    fd: libc::c_int,
    sh: &std::ffi::CStr,
    argv: &[*const libc::c_char],
) -> ! {
    fn ret(r: libc::c_long) -> i64 {
        if r < 0 {
            -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            r
        }
    }
    // SAFETY: raw system calls with valid (or deliberately invalid but harmless) arguments.
    unsafe {
        if !programs.is_empty() {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(100);
            }
            for p in programs {
                let prog = libc::sock_fprog {
                    len: p.len() as u16,
                    filter: p.as_ptr().cast::<libc::sock_filter>().cast_mut(),
                };
                if libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog) != 0 {
                    libc::_exit(101);
                }
            }
        }
        let missing = c"/nonexistent-kiln-seccomp-test";
        let mut out = [0i64; PROBES];
        out[0] = ret(libc::syscall(libc::SYS_getpid));
        out[1] = ret(libc::syscall(libc::SYS_keyctl, 0, -1i64, 0)); // KEYCTL_GET_KEYRING_ID thread
        out[2] = ret(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER));
        out[3] = ret(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0));
        out[4] = ret(libc::syscall(libc::SYS_personality, 0xffff_ffffu64));
        out[5] = ret(libc::syscall(libc::SYS_personality, 6)); // PER_BSD
        out[6] = ret(libc::syscall(libc::SYS_socket, 40, libc::SOCK_STREAM, 0));
        out[7] = ret(libc::syscall(libc::SYS_socket, 38, libc::SOCK_SEQPACKET, 0));
        out[8] = ret(libc::syscall(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_STREAM,
            0,
        ));
        out[9] = ret(libc::syscall(
            libc::SYS_mount,
            c"none".as_ptr(),
            missing.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            0,
        ));
        out[10] = ret(libc::syscall(libc::SYS_chroot, missing.as_ptr()));
        let bytes = std::mem::size_of_val(&out);
        if libc::write(fd, out.as_ptr().cast(), bytes) != bytes as isize {
            libc::_exit(102);
        }
        libc::close(fd);
        let envp = [std::ptr::null::<libc::c_char>()];
        libc::execve(sh.as_ptr(), argv.as_ptr(), envp.as_ptr());
        libc::_exit(103);
    }
}

/// Fork, run [`child`] with `programs`, return its probe results and its wait status.
fn probe(programs: &[BpfProgram]) -> ([i64; PROBES], libc::c_int) {
    let sh = c"/bin/sh";
    let argv = [
        c"sh".as_ptr(),
        c"-c".as_ptr(),
        c"exit 7".as_ptr(),
        std::ptr::null(),
    ];
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: plain pipe/fork/read/waitpid; the child only runs `child`.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let pid = libc::fork();
        assert!(pid >= 0, "fork");
        if pid == 0 {
            libc::close(fds[0]);
            child(programs, fds[1], sh, &argv);
        }
        libc::close(fds[1]);
        let mut out = [0i64; PROBES];
        let want = std::mem::size_of_val(&out);
        let mut got = 0usize;
        while got < want {
            let n = libc::read(
                fds[0],
                out.as_mut_ptr().cast::<u8>().add(got).cast(),
                want - got,
            );
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
        libc::close(fds[0]);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert_eq!(
            got, want,
            "the child reported {got} of {want} bytes (wait status {status:#x})"
        );
        (out, status)
    }
}

#[test]
fn installed_default_profile_blocks_and_allows_in_a_child() {
    let (_, programs) = docker_programs(DEFAULT_CAPABILITIES);
    let (unfiltered, status) = probe(&[]);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7,
        "{status:#x}"
    );
    let (filtered, status) = probe(&programs);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7,
        "execve of /bin/sh and the shell must work under the filter: wait status {status:#x}"
    );
    let eperm = -i64::from(libc::EPERM);
    assert!(filtered[0] > 0, "getpid");
    assert_eq!(filtered[1], eperm, "keyctl");
    assert_eq!(filtered[2], eperm, "unshare(CLONE_NEWUSER)");
    assert_eq!(filtered[3], -i64::from(libc::ENOSYS), "clone3");
    assert!(
        filtered[4] >= 0,
        "personality(0xffffffff) queries: {}",
        filtered[4]
    );
    assert_eq!(filtered[5], eperm, "personality(PER_BSD)");
    assert_eq!(filtered[6], eperm, "socket(AF_VSOCK)");
    assert_eq!(filtered[7], eperm, "socket(AF_ALG)");
    assert!(filtered[8] >= 0, "socket(AF_UNIX): {}", filtered[8]);
    assert_eq!(filtered[9], eperm, "mount");
    assert_eq!(
        filtered[10],
        -i64::from(libc::ENOENT),
        "chroot is allowed with CAP_SYS_CHROOT"
    );
    // Without the filter the same calls behave differently, so the filter is what said no
    // (unless the tests themselves run under a seccomp filter, e.g. in a Docker container).
    let status = fs_err::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.split_whitespace().eq(["Seccomp:", "0"]))
    {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("SKIP unfiltered comparison: the test process is already under seccomp");
        }
        return;
    }
    assert_eq!(
        unfiltered[3],
        -i64::from(libc::EINVAL),
        "clone3(NULL, 0) unfiltered"
    );
    assert!(
        unfiltered[5] >= 0,
        "personality(PER_BSD) unfiltered: {}",
        unfiltered[5]
    );
    assert_ne!(unfiltered[1], eperm, "keyctl unfiltered");
}

/// How long installing the default profile takes (fork + install + `_exit`, minus a bare
/// fork + `_exit`): the kernel checks, translates and JITs each program and precomputes which
/// syscalls it always allows. `cargo test --lib install_cost -- --ignored --nocapture`.
#[test]
#[ignore = "measurement"]
#[allow(clippy::print_stderr)]
fn install_cost() {
    let (_, programs) = docker_programs(DEFAULT_CAPABILITIES);
    let sizes: Vec<usize> = programs.iter().map(Vec::len).collect();
    let time = |programs: &[BpfProgram]| {
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = std::time::Instant::now();
            // SAFETY: the child makes raw system calls only and exits.
            unsafe {
                let pid = libc::fork();
                if pid == 0 {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                    for p in programs {
                        let prog = libc::sock_fprog {
                            len: p.len() as u16,
                            filter: p.as_ptr().cast::<libc::sock_filter>().cast_mut(),
                        };
                        libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog);
                    }
                    libc::_exit(0);
                }
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
            }
            times.push(t.elapsed());
        }
        times.sort();
        times[100]
    };
    let bare = time(&[]);
    let filtered = time(&programs);
    eprintln!("programs {sizes:?}: median fork+exit {bare:?}, with the filters {filtered:?}");
}

/// Every comparison operator on 64-bit (and 32-bit) arguments, on values around the word
/// boundaries, against direct evaluation.
#[test]
fn generated_comparisons_match_direct_evaluation() {
    use super::bpf::{AbiRules, Cmp, Cond, Rule, program};
    let values: Vec<u64> = vec![
        0,
        1,
        2,
        0xffff_fffe,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        0x2_0000_0000,
        0x7fff_ffff_ffff_ffff,
        u64::MAX - 1,
        u64::MAX,
    ];
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    for &v in &values {
        let cmps = [
            Cmp::Eq(v),
            Cmp::Ne(v),
            Cmp::Lt(v),
            Cmp::Le(v),
            Cmp::Gt(v),
            Cmp::Ge(v),
            Cmp::MaskedEq {
                mask: v,
                value: v & 0xffff_0000_ffff_0000,
            },
        ];
        for cmp in cmps {
            for qword in [true, false] {
                let abi = AbiRules {
                    audit: 1,
                    qword,
                    rules: [(
                        7u32,
                        vec![Rule {
                            conds: vec![Cond { index: 2, cmp }],
                            ret: ALLOW,
                            rank: 7,
                        }],
                    )]
                    .into(),
                };
                let prog = program(&[abi], EPERM_RET);
                for &a in &values {
                    let (x, y) = if qword {
                        (a, v)
                    } else {
                        (a & 0xffff_ffff, v & 0xffff_ffff)
                    };
                    let holds = match cmp {
                        Cmp::Eq(_) => x == y,
                        Cmp::Ne(_) => x != y,
                        Cmp::Lt(_) => x < y,
                        Cmp::Le(_) => x <= y,
                        Cmp::Gt(_) => x > y,
                        Cmp::Ge(_) => x >= y,
                        Cmp::MaskedEq { mask, value } => {
                            let (m, w) = if qword {
                                (mask, value)
                            } else {
                                (mask & 0xffff_ffff, value & 0xffff_ffff)
                            };
                            x & m == w
                        }
                    };
                    let data = seccomp_data(7, 1, [0, 0, a, 0, 0, 0]);
                    let want = if holds { ALLOW } else { EPERM_RET };
                    assert_eq!(
                        run_bpf(&prog, &data),
                        want,
                        "{cmp:?} qword={qword} arg={a:#x}"
                    );
                }
                // Other numbers and architectures are not touched by the rule.
                assert_eq!(run_bpf(&prog, &seccomp_data(8, 1, [0; 6])), EPERM_RET);
                assert_eq!(
                    run_bpf(&prog, &seccomp_data(7, 2, [0; 6])),
                    libc::SECCOMP_RET_KILL_PROCESS
                );
            }
        }
    }
}
