//! Classic-BPF code generation for a resolved seccomp profile: one program, syscall numbers
//! found by binary search.
//!
//! Why not seccompiler's generator: it tests syscall numbers one after another, so Docker's
//! profile becomes a 3,730-instruction chain. When a filter is installed the kernel emulates it
//! for every syscall number to find the ones it always allows (`seccomp_cache_prepare`), which
//! and translates and JITs the whole program: on that chain it costs ~1.3 ms per container start
//! (measured: `install_cost` in the tests). Searching spans of numbers makes the program a few
//! hundred instructions and each syscall's path ~20, which cuts both costs. Matching semantics are
//! unchanged and checked against the profile for every syscall number by the tests.
//!
//! Layout: the architecture dispatch, then per ABI a search tree over spans of syscall numbers
//! (runs of consecutive numbers with the same constant outcome are one span), each leaf a
//! return or one syscall's rules, most restrictive action first (what the
//! kernel's precedence gave when each action had its own stacked filter); a rule's conditions
//! are ANDed, and 64-bit arguments are compared as two 32-bit words (little-endian
//! `seccomp_data`). Conditional jumps only ever skip a few instructions; every longer jump is a
//! `ja` with a 32-bit offset, fixed up once the layout is known.

use seccompiler::sock_filter;

/// `offsetof(struct seccomp_data, nr)`, `arch`, `args`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// A comparison of one argument (libseccomp's operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq(u64),
    Ne(u64),
    Lt(u64),
    Le(u64),
    Gt(u64),
    Ge(u64),
    /// `(arg & mask) == value`.
    MaskedEq {
        mask: u64,
        value: u64,
    },
}

/// One condition: argument `index` (0..=5) compared with `cmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cond {
    pub index: u8,
    pub cmp: Cmp,
}

/// A rule of one syscall: when every condition holds, return `ret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub conds: Vec<Cond>,
    pub ret: u32,
    /// Lower is more restrictive (the kernel's precedence of actions).
    pub rank: u8,
}

/// One ABI's part of the filter.
#[derive(Debug, Clone)]
pub struct AbiRules {
    /// `AUDIT_ARCH_*`.
    pub audit: u32,
    /// Arguments are 64-bit (else only the low 32 bits are compared).
    pub qword: bool,
    /// Syscall number → its rules (any order; sorted here).
    pub rules: std::collections::BTreeMap<u32, Vec<Rule>>,
}

/// The kernel's precedence of a seccomp return value (lower wins), from its action bits.
pub fn rank(ret: u32) -> u8 {
    match ret & libc::SECCOMP_RET_ACTION_FULL {
        libc::SECCOMP_RET_KILL_PROCESS => 0,
        libc::SECCOMP_RET_KILL_THREAD => 1,
        libc::SECCOMP_RET_TRAP => 2,
        libc::SECCOMP_RET_ERRNO => 3,
        libc::SECCOMP_RET_USER_NOTIF => 4,
        libc::SECCOMP_RET_TRACE => 5,
        libc::SECCOMP_RET_LOG => 6,
        _ => 7,
    }
}

/// An assembler: instructions plus `ja` fix-ups to labels.
#[derive(Default)]
struct Asm {
    code: Vec<sock_filter>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, usize)>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.code.push(sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        });
    }

    fn jump(&mut self, code: u16, k: u32, jt: u8, jf: u8) {
        self.code.push(sock_filter { code, jt, jf, k });
    }

    fn ja(&mut self, label: usize) {
        self.fixups.push((self.code.len(), label));
        self.stmt(JA, 0);
    }

    fn finish(mut self) -> Vec<sock_filter> {
        for (at, label) in self.fixups {
            let target = self.labels[label].expect("every label is placed");
            // Only forward jumps are emitted.
            self.code[at].k = u32::try_from(target - at - 1).expect("a program fits in u32");
        }
        self.code
    }
}

/// The program for `abis` (native first); other architectures kill the process, numbers with
/// no rule get `default`.
pub fn program(abis: &[AbiRules], default: u32) -> Vec<sock_filter> {
    let mut asm = Asm::default();
    asm.stmt(LD_W_ABS, DATA_ARCH);
    let bodies: Vec<usize> = abis.iter().map(|_| asm.label()).collect();
    for (abi, body) in abis.iter().zip(&bodies) {
        asm.jump(JEQ, abi.audit, 0, 1);
        asm.ja(*body);
    }
    asm.stmt(RET, libc::SECCOMP_RET_KILL_PROCESS);
    for (abi, body) in abis.iter().zip(&bodies) {
        asm.place(*body);
        asm.stmt(LD_W_ABS, DATA_NR);
        let spans = spans(abi, default);
        tree(&mut asm, &spans, abi.qword);
    }
    asm.finish()
}

/// What a range of syscall numbers gets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome<'a> {
    /// The same return value whatever the arguments.
    Const(u32),
    /// One number whose rules look at its arguments (and the default after them).
    Rules(&'a [Rule], u32),
}

/// The numbers `0..=u32::MAX` cut into spans `(first number, outcome)`, adjacent numbers with
/// the same constant outcome merged: Docker's allow list is mostly runs of consecutive numbers,
/// so the search tree has a few dozen leaves instead of hundreds.
fn spans(abi: &AbiRules, default: u32) -> Vec<(u32, Outcome<'_>)> {
    fn push<'a>(out: &mut Vec<(u32, Outcome<'a>)>, start: u32, outcome: Outcome<'a>) {
        if let (Some((_, Outcome::Const(prev))), Outcome::Const(cur)) = (out.last(), &outcome)
            && prev == cur
        {
            return;
        }
        out.push((start, outcome));
    }
    let mut out: Vec<(u32, Outcome<'_>)> = Vec::new();
    let mut next = 0u32;
    for (&nr, rules) in &abi.rules {
        if nr > next {
            push(&mut out, next, Outcome::Const(default));
        }
        let mut sorted: Vec<&Rule> = rules.iter().collect();
        sorted.sort_by_key(|r| r.rank);
        // Rules after the first unconditional one are unreachable; with only that one left,
        // the number's outcome is constant.
        let first = &sorted[0];
        if first.conds.is_empty() {
            push(&mut out, nr, Outcome::Const(first.ret));
        } else {
            push(&mut out, nr, Outcome::Rules(rules, default));
        }
        next = match nr.checked_add(1) {
            Some(n) => n,
            None => return out,
        };
    }
    push(&mut out, next, Outcome::Const(default));
    out
}

/// Binary search over the spans' first numbers, with the syscall number in A.
fn tree(asm: &mut Asm, spans: &[(u32, Outcome<'_>)], qword: bool) {
    if let [(_, outcome)] = spans {
        match outcome {
            Outcome::Const(ret) => asm.stmt(RET, *ret),
            Outcome::Rules(r, default) => rules(asm, r, qword, *default),
        }
        return;
    }
    let mid = spans.len() / 2;
    let right = asm.label();
    asm.jump(JGE, spans[mid].0, 0, 1);
    asm.ja(right);
    tree(asm, &spans[..mid], qword);
    asm.place(right);
    tree(asm, &spans[mid..], qword);
}

/// One syscall's rules, most restrictive first; none matching → `default`.
fn rules(asm: &mut Asm, rules: &[Rule], qword: bool, default: u32) {
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by_key(|r| r.rank);
    for rule in sorted {
        if rule.conds.is_empty() {
            asm.stmt(RET, rule.ret);
            return;
        }
        let fail = asm.label();
        for cond in &rule.conds {
            condition(asm, *cond, qword, fail);
        }
        asm.stmt(RET, rule.ret);
        asm.place(fail);
    }
    asm.stmt(RET, default);
}

/// Falls through when `cond` holds, jumps to `fail` otherwise.
fn condition(asm: &mut Asm, cond: Cond, qword: bool, fail: usize) {
    let lo_off = DATA_ARGS + 8 * u32::from(cond.index);
    let hi_off = lo_off + 4;
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    if !qword {
        asm.stmt(LD_W_ABS, lo_off);
        match cond.cmp {
            Cmp::Eq(v) => asm.jump(JEQ, v as u32, 1, 0),
            Cmp::Ne(v) => asm.jump(JEQ, v as u32, 0, 1),
            Cmp::Gt(v) => asm.jump(JGT, v as u32, 1, 0),
            Cmp::Ge(v) => asm.jump(JGE, v as u32, 1, 0),
            Cmp::Lt(v) => asm.jump(JGE, v as u32, 0, 1),
            Cmp::Le(v) => asm.jump(JGT, v as u32, 0, 1),
            Cmp::MaskedEq { mask, value } => {
                asm.stmt(AND, mask as u32);
                asm.jump(JEQ, value as u32, 1, 0);
            }
        }
        asm.ja(fail);
        return;
    }
    match cond.cmp {
        Cmp::Eq(v) => {
            let (hi, lo) = split(v);
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JEQ, hi, 1, 0);
            asm.ja(fail);
            asm.stmt(LD_W_ABS, lo_off);
            asm.jump(JEQ, lo, 1, 0);
            asm.ja(fail);
        }
        Cmp::MaskedEq { mask, value } => {
            let ((mhi, mlo), (vhi, vlo)) = (split(mask), split(value));
            asm.stmt(LD_W_ABS, hi_off);
            asm.stmt(AND, mhi);
            asm.jump(JEQ, vhi, 1, 0);
            asm.ja(fail);
            asm.stmt(LD_W_ABS, lo_off);
            asm.stmt(AND, mlo);
            asm.jump(JEQ, vlo, 1, 0);
            asm.ja(fail);
        }
        Cmp::Ne(v) => {
            // Holds when either word differs.
            let (hi, lo) = split(v);
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JEQ, hi, 0, 3);
            asm.stmt(LD_W_ABS, lo_off);
            asm.jump(JEQ, lo, 0, 1);
            asm.ja(fail);
        }
        Cmp::Gt(v) | Cmp::Ge(v) => {
            // hi > vhi holds; hi == vhi compares the low words; hi < vhi fails.
            let (hi, lo) = split(v);
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JGT, hi, 5, 0);
            asm.jump(JEQ, hi, 1, 0);
            asm.ja(fail);
            asm.stmt(LD_W_ABS, lo_off);
            let op = if matches!(cond.cmp, Cmp::Gt(_)) {
                JGT
            } else {
                JGE
            };
            asm.jump(op, lo, 1, 0);
            asm.ja(fail);
        }
        Cmp::Lt(v) | Cmp::Le(v) => {
            // hi < vhi holds; hi == vhi compares the low words; hi > vhi fails.
            let (hi, lo) = split(v);
            asm.stmt(LD_W_ABS, hi_off);
            asm.jump(JGE, hi, 0, 5);
            asm.jump(JEQ, hi, 1, 0);
            asm.ja(fail);
            asm.stmt(LD_W_ABS, lo_off);
            // Lt fails when lo >= vlo; Le fails when lo > vlo.
            let op = if matches!(cond.cmp, Cmp::Lt(_)) {
                JGE
            } else {
                JGT
            };
            asm.jump(op, lo, 0, 1);
            asm.ja(fail);
        }
    }
}
