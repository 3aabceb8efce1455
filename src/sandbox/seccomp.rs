//! Docker's default seccomp profile, and compiling a spec's profile to BPF (seccompiler).
//!
//! Responsible for: the profile *data* ([`Profile`], Docker's JSON format with `archMap` and
//! per-rule `includes`/`excludes`), resolving it for a capability set into the OCI
//! [`LinuxSeccomp`] that goes into a spec ([`docker_default`], [`Profile::resolve`]), and turning
//! an OCI profile into classic-BPF programs for this host ([`compile`]).
//!
//! Not responsible for: installing the programs (the embedded runtime does, in the container's
//! process just before `execve`; an OCI runtime compiles `config.json`'s profile itself), nor for
//! choosing the capability set (`spec`).
//!
//! # The default profile
//!
//! `seccomp/default.json` is moby's default profile as published in moby/profiles
//! `seccomp/default.json` (commit 02e898b, the profile moby vendors as
//! `github.com/moby/profiles/seccomp`), restated in the same JSON format: the default action is
//! `SCMP_ACT_ERRNO` with `EPERM`; ~360 syscalls are allowed outright; `socket(2)` is allowed for
//! every address family the kernel implements except `AF_ALG` (38, CVE-2026-31431) and
//! `AF_VSOCK` (40); `personality(2)` only for the five personas Docker allows; without
//! `CAP_SYS_ADMIN`, `clone(2)` only without namespace flags (`flags & 0x7E020000 == 0`) and
//! `clone3(2)` fails with `ENOSYS` so that libcs fall back to `clone(2)`; capability-gated
//! groups (`CAP_SYS_ADMIN`: mount, unshare, setns, bpf, ...; `CAP_SYS_PTRACE`, `CAP_SYS_TIME`,
//! `CAP_SYS_MODULE`, `CAP_SYS_BOOT`, `CAP_SYS_CHROOT`, `CAP_SYS_NICE`, `CAP_SYSLOG`, `CAP_BPF`,
//! `CAP_PERFMON`, ...) are allowed only when the capability is in the bounding set. Resolution
//! follows moby's `setupSeccomp` (moby/profiles `seccomp/seccomp_linux.go`): a rule is dropped
//! when an `excludes` capability is present or the native architecture is excluded, and kept only
//! when every `includes` capability is present, the native architecture is included and the
//! running kernel is at least `minKernel`.
//!
//! # Compiling: one program per action, stacked
//!
//! seccompiler builds filters with a single match action and a single mismatch action, while an
//! OCI profile gives every rule its own action. [`compile`] therefore returns several programs,
//! to be installed in order:
//!
//! 1. the *default* program (only when the default action is not `ALLOW`): every rule whose action
//!    differs from the default, whatever that action is, matched → `ALLOW`, anything else → the
//!    default action;
//! 2. one program per other action `A` used by the rules (e.g. `ERRNO(ENOSYS)` for `clone3`):
//!    that action's rules matched → `A`, anything else → `ALLOW`.
//!
//! The kernel runs every installed filter for each system call and returns the action of highest
//! precedence (`KILL_PROCESS` > `KILL_THREAD` > `TRAP` > `ERRNO` > `USER_NOTIF` > `TRACE` > `LOG` >
//! `ALLOW`); between equal actions it keeps the one from the most recently installed filter
//! (`seccomp(2)`, "filters are evaluated ... most recently installed first"; `seccomp_run_filters`
//! in kernel/seccomp.c keeps the first of equal precedence while walking from the newest). So a
//! call that matches no rule gets the default action from program 1 and `ALLOW` from the others;
//! a call that matches a rule of action `A` gets `ALLOW` from program 1 and `A` from program `A`,
//! so `A`, even when `A` is weaker than the default (`LOG`) or an `ERRNO` with other data
//! (`clone3` → `ENOSYS`, not `EPERM`). If rules of several actions match one call, the strongest
//! wins (for two `ERRNO`s, the later program's).
//!
//! # Architectures
//!
//! Each program starts with its own dispatch on `seccomp_data.arch`: the native ABI and, on
//! x86_64, the i386 ABI (Docker's `SCMP_ARCH_X86` sub-architecture: 32-bit programs such as
//! `FROM --platform=linux/386` images run natively) each get the same rules with their own
//! syscall numbers (`seccomp/syscalls.rs`). Any other ABI is killed
//! (`SECCOMP_RET_KILL_PROCESS`). Known differences from libseccomp/runc: x32 system calls (x86_64
//! numbers with bit 30 set) match no rule and get the default action, and 32-bit ARM programs on
//! aarch64 are killed (Docker allows both through its `SCMP_ARCH_X32`/`SCMP_ARCH_ARM`
//! sub-architectures). As in libseccomp, system call names unknown for an architecture are
//! skipped.

mod syscalls;

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator,
    LinuxSyscall,
};
use seccompiler::{BpfProgram, SeccompAction};
use serde::Deserialize;

use super::{Result, SandboxError};

/// Docker's default profile in Docker's JSON format (see the module docs).
const DEFAULT_PROFILE: &str = include_str!("seccomp/default.json");

/// The errno of `SCMP_ACT_ERRNO` (and data of `SCMP_ACT_TRACE`) when a profile gives none, as in
/// runc (`libcontainer/seccomp/seccomp_linux.go`).
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// The most instructions one classic-BPF program may have (`BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;

/// Docker's default profile for a process whose bounding set is `capabilities`, resolved for
/// this host's architecture and kernel (moby `GetDefaultProfile`).
pub fn docker_default(capabilities: &[Capability]) -> LinuxSeccomp {
    // The embedded profile is checked by the tests in this module; failing here is a build bug.
    #[allow(clippy::expect_used)]
    let profile = Profile::from_json(DEFAULT_PROFILE).expect("the embedded default profile parses");
    profile.resolve_for(capabilities, &Host::current())
}

/// A seccomp profile in Docker's format: an OCI [`LinuxSeccomp`] whose rules may carry
/// `includes`/`excludes` conditions and whose architectures may be given as an `archMap`
/// (moby/profiles `seccomp/seccomp.go`). [`Profile::resolve`] turns it into a plain
/// [`LinuxSeccomp`] for one capability set.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

/// An architecture and the sub-architectures (other ABIs its kernel runs) that go with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

/// One rule of a [`Profile`]: an OCI syscall rule plus conditions on whether it applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

/// When a [`Rule`] applies: capabilities in the bounding set, the native architecture (by
/// libseccomp's names: `amd64`, `arm64`, `x86`, ...) and the running kernel's version.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<Capability>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What a profile is resolved against.
#[derive(Debug, Clone)]
struct Host {
    /// libseccomp's name for the native architecture (`amd64`, `arm64`, ...), if known.
    native: Option<&'static str>,
    /// The running kernel's `(major, minor)`, if it could be read.
    kernel: Option<(u32, u32)>,
}

impl Host {
    fn current() -> Self {
        let uname = rustix::system::uname();
        let release = uname.release().to_string_lossy();
        Self {
            native: native_arch().map(|(name, _)| name),
            kernel: parse_kernel_version(&release),
        }
    }
}

/// libseccomp's name and the OCI [`Arch`] of this build's architecture.
fn native_arch() -> Option<(&'static str, Arch)> {
    if cfg!(target_arch = "x86_64") {
        Some(("amd64", Arch::ScmpArchX86_64))
    } else if cfg!(target_arch = "aarch64") {
        Some(("arm64", Arch::ScmpArchAarch64))
    } else if cfg!(target_arch = "riscv64") {
        Some(("riscv64", Arch::ScmpArchRiscv64))
    } else {
        None
    }
}

/// `"6.1.0-18-amd64"` → `(6, 1)`.
fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl Profile {
    /// Parse a profile in Docker's JSON format (as `docker run --security-opt seccomp=FILE` takes).
    pub fn from_json(text: &str) -> Result<Self> {
        let profile: Self = serde_json::from_str(text)
            .map_err(|e| SandboxError::Seccomp(format!("cannot parse profile: {e}")))?;
        if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
            return Err(SandboxError::Seccomp(
                "both `architectures` and `archMap` are given; use one".into(),
            ));
        }
        for rule in &profile.syscalls {
            if rule.name.is_some() && !rule.names.is_empty() {
                return Err(SandboxError::Seccomp(
                    "a rule gives both `name` and `names`; use one".into(),
                ));
            }
        }
        Ok(profile)
    }

    /// The OCI profile for a process whose bounding set is `capabilities`, on this host.
    pub fn resolve(&self, capabilities: &[Capability]) -> LinuxSeccomp {
        self.resolve_for(capabilities, &Host::current())
    }

    fn resolve_for(&self, capabilities: &[Capability], host: &Host) -> LinuxSeccomp {
        let mut architectures = self.architectures.clone();
        if let Some((_, native)) = native_arch()
            && let Some(entry) = self.arch_map.iter().find(|a| a.architecture == native)
        {
            architectures.push(entry.architecture);
            architectures.extend(entry.sub_architectures.iter().flatten().copied());
        }
        let syscalls: Vec<LinuxSyscall> = self
            .syscalls
            .iter()
            .filter(|rule| rule.applies(capabilities, host))
            .map(Rule::to_oci)
            .collect();
        let mut out = LinuxSeccomp::default();
        out.set_default_action(self.default_action);
        out.set_default_errno_ret(self.default_errno_ret);
        out.set_architectures((!architectures.is_empty()).then_some(architectures));
        out.set_syscalls(Some(syscalls));
        out
    }
}

impl Rule {
    /// moby's `setupSeccomp` conditions, in its order.
    fn applies(&self, capabilities: &[Capability], host: &Host) -> bool {
        if let Some(ex) = &self.excludes {
            if host
                .native
                .is_some_and(|n| ex.arches.iter().any(|a| a == n))
            {
                return false;
            }
            if ex.caps.iter().any(|c| capabilities.contains(c)) {
                return false;
            }
            if ex
                .min_kernel
                .as_deref()
                .is_some_and(|v| kernel_at_least(host, v))
            {
                return false;
            }
        }
        if let Some(inc) = &self.includes {
            if !inc.arches.is_empty()
                && !host
                    .native
                    .is_some_and(|n| inc.arches.iter().any(|a| a == n))
            {
                return false;
            }
            if !inc.caps.iter().all(|c| capabilities.contains(c)) {
                return false;
            }
            if inc
                .min_kernel
                .as_deref()
                .is_some_and(|v| !kernel_at_least(host, v))
            {
                return false;
            }
        }
        true
    }

    fn to_oci(&self) -> LinuxSyscall {
        let mut out = LinuxSyscall::default();
        let names = match &self.name {
            Some(name) => vec![name.clone()],
            None => self.names.clone(),
        };
        out.set_names(names);
        out.set_action(self.action);
        out.set_errno_ret(self.errno_ret);
        out.set_args(self.args.clone());
        out
    }
}

/// Whether the host's kernel is at least `version` (`"4.8"`). An unreadable running version
/// counts as new enough: kiln needs a far newer kernel than any `minKernel` in Docker's profile.
fn kernel_at_least(host: &Host, version: &str) -> bool {
    match (host.kernel, parse_kernel_version(version)) {
        (Some(have), Some(want)) => have >= want,
        _ => true,
    }
}

/// `AUDIT_ARCH_*` values (linux/audit.h) that `seccomp_data.arch` holds.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

/// An ABI a filter can dispatch to: its `AUDIT_ARCH_*`, its syscall table, the width of its
/// syscall arguments.
#[derive(Debug, Clone, Copy)]
struct Abi {
    oci: Arch,
    audit: u32,
    table: &'static [(&'static str, u32)],
    arg_len: ArgLen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgLen {
    Dword,
    Qword,
}

/// The ABIs this build can filter: the native one first.
fn host_abis() -> Vec<Abi> {
    let x86_64 = Abi {
        oci: Arch::ScmpArchX86_64,
        audit: AUDIT_ARCH_X86_64,
        table: syscalls::X86_64,
        arg_len: ArgLen::Qword,
    };
    let i386 = Abi {
        oci: Arch::ScmpArchX86,
        audit: AUDIT_ARCH_I386,
        table: syscalls::I386,
        arg_len: ArgLen::Dword,
    };
    let aarch64 = Abi {
        oci: Arch::ScmpArchAarch64,
        audit: AUDIT_ARCH_AARCH64,
        table: syscalls::AARCH64,
        arg_len: ArgLen::Qword,
    };
    if cfg!(target_arch = "x86_64") {
        vec![x86_64, i386]
    } else if cfg!(target_arch = "aarch64") {
        vec![aarch64]
    } else {
        Vec::new()
    }
}

/// The number of system call `name` in `table`, if the ABI has it.
fn syscall_number(table: &[(&str, u32)], name: &str) -> Option<u32> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table[i].1)
}

/// Compile `profile` into BPF programs for this host, to be installed in the returned order (see
/// the module docs for why there are several and how they combine).
///
/// Installing needs `no_new_privs` or `CAP_SYS_ADMIN`: with `noNewPrivileges: false` (the default
/// for `RUN`) a runtime installs the programs while it still has `CAP_SYS_ADMIN`, as runc does,
/// and the calls it makes afterwards (`capset`, `setresuid`, `setgroups`, `prctl`, `execve`, ...)
/// must be allowed by the profile; Docker's profile allows them. `seccompiler::apply_filter`
/// always sets `no_new_privs`, so it does not fit that case.
///
/// Errors: an action seccompiler cannot express (`SCMP_ACT_NOTIFY`), an argument index above 5,
/// a host architecture without a syscall table, a program over `BPF_MAXINSNS`.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<BpfProgram>> {
    compile_for(profile, &host_abis())
}

fn compile_for(profile: &LinuxSeccomp, host: &[Abi]) -> Result<Vec<BpfProgram>> {
    if host.is_empty() {
        return Err(SandboxError::Seccomp(format!(
            "no seccomp support for this architecture ({})",
            std::env::consts::ARCH
        )));
    }
    // The ABIs to filter: the native one always (libseccomp's default), the others when the
    // profile lists them.
    let listed = profile.architectures().as_deref().unwrap_or_default();
    let abis: Vec<Abi> = host
        .iter()
        .enumerate()
        .filter(|(i, abi)| *i == 0 || listed.contains(&abi.oci))
        .map(|(_, abi)| *abi)
        .collect();

    let default = u32::from(action(
        profile.default_action(),
        profile.default_errno_ret(),
    )?);
    let rules = profile.syscalls().as_deref().unwrap_or_default();
    let mut per_abi = Vec::with_capacity(abis.len());
    for abi in &abis {
        let mut by_nr: BTreeMap<u32, Vec<bpf::Rule>> = BTreeMap::new();
        for rule in rules {
            let ret = u32::from(action(rule.action(), rule.errno_ret())?);
            let conds = conditions(rule.args().as_deref().unwrap_or_default())?;
            for name in rule.names() {
                // Unknown on this ABI: skipped, as libseccomp does.
                let Some(nr) = syscall_number(abi.table, name) else {
                    continue;
                };
                by_nr.entry(nr).or_default().push(bpf::Rule {
                    conds: conds.clone(),
                    ret,
                    rank: bpf::rank(ret),
                });
            }
        }
        per_abi.push(bpf::AbiRules {
            audit: abi.audit,
            qword: abi.arg_len == ArgLen::Qword,
            rules: by_nr,
        });
    }
    let program = bpf::program(&per_abi, default);
    if program.len() > BPF_MAXINSNS {
        return Err(SandboxError::Seccomp(format!(
            "the compiled filter has {} instructions, more than the kernel's {BPF_MAXINSNS}",
            program.len()
        )));
    }
    Ok(vec![program])
}

/// The seccompiler action for an OCI action (runc's mapping; `SCMP_ACT_KILL` is the thread).
fn action(act: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction> {
    Ok(match act {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(DEFAULT_ERRNO)),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(DEFAULT_ERRNO)),
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SandboxError::Seccomp(
                "SCMP_ACT_NOTIFY needs a seccomp agent, which kiln does not have".into(),
            ));
        }
    })
}

/// The conditions of one OCI rule (all must hold).
fn conditions(args: &[LinuxSeccompArg]) -> Result<Vec<bpf::Cond>> {
    args.iter()
        .map(|arg| {
            let index = u8::try_from(arg.index())
                .ok()
                .filter(|i| *i <= 5)
                .ok_or_else(|| {
                    SandboxError::Seccomp(format!("argument index {} is over 5", arg.index()))
                })?;
            let v = arg.value();
            let cmp = match arg.op() {
                LinuxSeccompOperator::ScmpCmpNe => bpf::Cmp::Ne(v),
                LinuxSeccompOperator::ScmpCmpLt => bpf::Cmp::Lt(v),
                LinuxSeccompOperator::ScmpCmpLe => bpf::Cmp::Le(v),
                LinuxSeccompOperator::ScmpCmpEq => bpf::Cmp::Eq(v),
                LinuxSeccompOperator::ScmpCmpGe => bpf::Cmp::Ge(v),
                LinuxSeccompOperator::ScmpCmpGt => bpf::Cmp::Gt(v),
                // libseccomp: (arg & value) == valueTwo.
                LinuxSeccompOperator::ScmpCmpMaskedEq => bpf::Cmp::MaskedEq {
                    mask: v,
                    value: arg.value_two().unwrap_or(0),
                },
            };
            Ok(bpf::Cond { index, cmp })
        })
        .collect()
}

mod bpf;

#[cfg(test)]
mod tests;
