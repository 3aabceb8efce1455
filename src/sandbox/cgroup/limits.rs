//! The cgroup files to write for an OCI `LinuxResources`, on v1 and on v2 (the table in the
//! module docs of `sandbox::cgroup`). Pure: no file is touched here.

use oci_spec::runtime::LinuxResources;

use super::Layout;
use crate::sandbox::{Result, SandboxError};

/// Which version of the cgroup files a [`Write`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteTo {
    V1,
    V2,
}

/// One value for one file of the container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Write {
    pub(super) version: WriteTo,
    /// The controller owning the file (v1: the hierarchy to write in).
    pub(super) controller: &'static str,
    pub(super) file: String,
    pub(super) value: String,
}

impl Write {
    fn new(version: WriteTo, controller: &'static str, file: &str, value: impl ToString) -> Self {
        Self {
            version,
            controller,
            file: file.to_string(),
            value: value.to_string(),
        }
    }
}

/// The v1 controllers a container joins for `writes` on a host of `layout` (see the module
/// docs): `memory`, `pids` and `cpu` always, `freezer` where there is no cgroup2 `cgroup.kill`
/// to kill with (v1 only), and the controllers of the writes (`cpuset`, `devices`).
pub(super) fn wanted_v1_controllers(layout: Layout, writes: &[Write]) -> Vec<&'static str> {
    let mut wanted = vec!["memory", "pids", "cpu"];
    if layout == Layout::V1 {
        wanted.push("freezer");
    }
    for write in writes {
        if write.version == WriteTo::V1 && !wanted.contains(&write.controller) {
            wanted.push(write.controller);
        }
    }
    wanted
}

/// The files to write for `resources` on a host of `layout`, in order. Pure: the unit tests
/// check the conversions.
pub(super) fn planned_writes(layout: Layout, r: &LinuxResources) -> Result<Vec<Write>> {
    refuse_unsupported(r)?;
    let mut writes = match layout {
        Layout::Unified => v2_writes(r)?,
        Layout::V1 | Layout::Hybrid | Layout::None => v1_writes(r)?,
    };
    if let Some(unified) = r.unified().as_ref().filter(|u| !u.is_empty()) {
        if layout != Layout::Unified {
            return Err(SandboxError::Spec(
                "`linux.resources.unified` needs a cgroup v2 (unified) host".into(),
            ));
        }
        // Sorted: a HashMap's order must not decide the order of writes.
        let mut entries: Vec<_> = unified.iter().collect();
        entries.sort();
        for (file, value) in entries {
            let controller = unified_controller(file)?;
            writes.push(Write::new(WriteTo::V2, controller, file, value));
        }
    }
    Ok(writes)
}

/// The controller a `unified` key belongs to (`memory.high` → `memory`); keys must be plain
/// `controller.file` names (no `/`, no `cgroup.*` core files).
fn unified_controller(file: &str) -> Result<&'static str> {
    const CONTROLLERS: [&str; 8] = [
        "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc",
    ];
    let prefix = file.split('.').next().unwrap_or_default();
    CONTROLLERS
        .into_iter()
        .find(|c| *c == prefix && !file.contains('/') && file.len() > c.len() + 1)
        .ok_or_else(|| {
            SandboxError::Spec(format!(
                "`linux.resources.unified` key `{file}` is not a controller file"
            ))
        })
}

fn refuse_unsupported(r: &LinuxResources) -> Result<()> {
    let unsupported = [
        ("blockIO", r.block_io().is_some()),
        (
            "hugepageLimits",
            r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()),
        ),
        ("network", r.network().is_some()),
        ("rdma", r.rdma().as_ref().is_some_and(|h| !h.is_empty())),
    ];
    match unsupported.into_iter().find(|(_, set)| *set) {
        Some((name, _)) => Err(SandboxError::Spec(format!(
            "cgroup resource `linux.resources.{name}` is not supported"
        ))),
        None => Ok(()),
    }
}

/// v1 files: `-1` means "no limit" for the memory and quota files.
fn v1_writes(r: &LinuxResources) -> Result<Vec<Write>> {
    use WriteTo::V1;
    let mut w = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(limit) = m.limit() {
            w.push(Write::new(V1, "memory", "memory.limit_in_bytes", limit));
        }
        if let Some(reservation) = m.reservation() {
            w.push(Write::new(
                V1,
                "memory",
                "memory.soft_limit_in_bytes",
                reservation,
            ));
        }
        if let Some(swap) = m.swap() {
            // memory+swap may not be below memory: written after the memory limit.
            check_swap(m.limit(), swap)?;
            w.push(Write::new(
                V1,
                "memory",
                "memory.memsw.limit_in_bytes",
                swap,
            ));
        }
        if let Some(swappiness) = m.swappiness() {
            if swappiness > 100 {
                return Err(SandboxError::Spec(format!(
                    "memory swappiness {swappiness} is not in 0..=100"
                )));
            }
            w.push(Write::new(V1, "memory", "memory.swappiness", swappiness));
        }
        if m.disable_oom_killer() == Some(true) {
            w.push(Write::new(V1, "memory", "memory.oom_control", 1));
        }
    }
    if let Some(value) = r.pids().and_then(|p| pids_max(p.limit())) {
        w.push(Write::new(V1, "pids", "pids.max", value));
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            w.push(Write::new(V1, "cpu", "cpu.shares", shares));
        }
        if let Some(period) = cpu.period().filter(|p| *p != 0) {
            w.push(Write::new(V1, "cpu", "cpu.cfs_period_us", period));
        }
        if let Some(quota) = cpu.quota().filter(|q| *q != 0) {
            w.push(Write::new(V1, "cpu", "cpu.cfs_quota_us", quota));
        }
        if let Some(burst) = cpu.burst() {
            w.push(Write::new(V1, "cpu", "cpu.cfs_burst_us", burst));
        }
        if let Some(idle) = cpu.idle() {
            w.push(Write::new(V1, "cpu", "cpu.idle", idle));
        }
        if let Some(period) = cpu.realtime_period().filter(|p| *p != 0) {
            w.push(Write::new(V1, "cpu", "cpu.rt_period_us", period));
        }
        if let Some(runtime) = cpu.realtime_runtime().filter(|r| *r != 0) {
            w.push(Write::new(V1, "cpu", "cpu.rt_runtime_us", runtime));
        }
        cpuset_writes(cpu, V1, &mut w);
    }
    for rule in r.devices().iter().flatten() {
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let mut rule = rule.clone();
        if rule.access().as_deref().is_none_or(str::is_empty) {
            rule.set_access(Some("rwm".into()));
        }
        w.push(Write::new(V1, "devices", file, rule));
    }
    Ok(w)
}

/// cgroup2 files, with runc's conversions.
fn v2_writes(r: &LinuxResources) -> Result<Vec<Write>> {
    use WriteTo::V2;
    let mut w = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(limit) = m.limit() {
            w.push(Write::new(V2, "memory", "memory.max", max_or(limit)));
        }
        if let Some(reservation) = m.reservation() {
            w.push(Write::new(V2, "memory", "memory.low", max_or(reservation)));
        }
        if let Some(swap) = m.swap() {
            let value = v2_swap_max(m.limit(), swap)?;
            w.push(Write::new(V2, "memory", "memory.swap.max", value));
        }
        if m.swappiness().is_some() || m.disable_oom_killer() == Some(true) {
            return Err(SandboxError::Spec(
                "memory swappiness and disableOOMKiller need cgroup v1".into(),
            ));
        }
    }
    if let Some(value) = r.pids().and_then(|p| pids_max(p.limit())) {
        w.push(Write::new(V2, "pids", "pids.max", value));
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            w.push(Write::new(V2, "cpu", "cpu.weight", cpu_weight(shares)));
        }
        let quota = cpu.quota().unwrap_or(0);
        let period = cpu.period().unwrap_or(0);
        if quota != 0 || period != 0 {
            let quota = if quota > 0 {
                quota.to_string()
            } else {
                "max".into()
            };
            let period = if period == 0 { 100_000 } else { period };
            w.push(Write::new(
                V2,
                "cpu",
                "cpu.max",
                format!("{quota} {period}"),
            ));
        }
        if let Some(burst) = cpu.burst() {
            w.push(Write::new(V2, "cpu", "cpu.max.burst", burst));
        }
        if let Some(idle) = cpu.idle() {
            w.push(Write::new(V2, "cpu", "cpu.idle", idle));
        }
        if cpu.realtime_period().is_some_and(|p| p != 0)
            || cpu.realtime_runtime().is_some_and(|r| r != 0)
        {
            return Err(SandboxError::Spec(
                "realtime cpu limits need cgroup v1".into(),
            ));
        }
        cpuset_writes(cpu, V2, &mut w);
    }
    Ok(w)
}

fn cpuset_writes(cpu: &oci_spec::runtime::LinuxCpu, version: WriteTo, w: &mut Vec<Write>) {
    if let Some(cpus) = cpu.cpus().as_deref().filter(|c| !c.is_empty()) {
        w.push(Write::new(version, "cpuset", "cpuset.cpus", cpus));
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|m| !m.is_empty()) {
        w.push(Write::new(version, "cpuset", "cpuset.mems", mems));
    }
}

/// OCI swap is memory + swap: it needs a memory limit and may not be below it.
fn check_swap(limit: Option<i64>, swap: i64) -> Result<()> {
    match limit {
        _ if swap == -1 => Ok(()),
        None | Some(-1) => Err(SandboxError::Spec(
            "a memory+swap limit needs a memory limit".into(),
        )),
        Some(limit) if swap < limit => Err(SandboxError::Spec(format!(
            "memory+swap limit {swap} is below the memory limit {limit}"
        ))),
        Some(_) => Ok(()),
    }
}

/// cgroup2 limits swap alone: `memory.swap.max` = (memory + swap) − memory.
fn v2_swap_max(limit: Option<i64>, swap: i64) -> Result<String> {
    check_swap(limit, swap)?;
    Ok(match limit {
        Some(limit) if swap != -1 => (swap - limit).to_string(),
        _ => "max".into(),
    })
}

fn max_or(value: i64) -> String {
    if value < 0 {
        "max".into()
    } else {
        value.to_string()
    }
}

/// `pids.max`: 0 leaves the default, a negative limit is "max".
fn pids_max(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        l if l < 0 => Some("max".into()),
        l => Some(l.to_string()),
    }
}

/// runc's `ConvertCPUSharesToCgroupV2Value`: shares 2..=262144 onto weight 1..=10000.
pub(super) fn cpu_weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}
