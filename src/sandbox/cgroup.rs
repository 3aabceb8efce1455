//! cgroups v1 and v2: a container's cgroup with its memory, pids and cpu limits.
//!
//! [`Cgroup::create`] makes one directory per cgroup hierarchy the container needs and writes the
//! limits of an [`oci_spec::runtime::LinuxResources`] into it; [`Cgroup::add_process`] moves a
//! process in (the embedded runtime's parent calls it with the child's host PID before the child
//! goes on, so no descriptor is passed across); [`Cgroup::destroy`] kills what is left inside and
//! removes the directories. Dropping a [`Cgroup`] does the same, ignoring errors.
//!
//! Hosts come in three [`Layout`]s (four with [`Layout::None`], no cgroups mounted: containers
//! then get no cgroup, and limits are refused), detected once per process (`statfs(2)` of
//! `/sys/fs/cgroup`, then `/proc/self/mountinfo`):
//!
//! - **v1**: one hierarchy per controller (or group of controllers). The cgroup is made in the
//!   `memory`, `pids`, `cpu` and `freezer` hierarchies (and in whatever is co-mounted with them,
//!   often `cpuacct`), plus `devices` when the spec has device rules and `cpuset` when it pins
//!   CPUs or memory nodes. Other hierarchies (`cpuacct` on its own, `blkio`, `name=systemd`, ...)
//!   are not joined: the process stays in the caller's cgroup there. Each joined hierarchy costs
//!   a `mkdir`, a write to `cgroup.procs` and an `rmdir` per container (10-40 µs each here).
//! - **hybrid** (this is what systemd calls it; the development machine is one): v1 controllers
//!   plus a cgroup2 hierarchy without controllers, usually at `/sys/fs/cgroup/unified`. As v1,
//!   except that the process joins a cgroup in the cgroup2 hierarchy instead of `freezer`: its
//!   `cgroup.kill` is the race-free way to kill everything inside.
//! - **unified** (v2): one hierarchy at `/sys/fs/cgroup`. The controllers the limits need are
//!   enabled in `cgroup.subtree_control` of each parent below the caller's own cgroup. cgroup2's
//!   "no internal processes" rule makes that fail with `EBUSY` when the caller's own cgroup (other
//!   than the root) holds processes: give kiln a delegated cgroup (`systemd-run --scope -p
//!   Delegate=yes`) or an absolute path.
//!
//! A relative `path` (`kiln/<id>`) is taken relative to the caller's own cgroup in each hierarchy,
//! as `runc` does with a relative `cgroupsPath`: the container stays inside any limits kiln itself
//! runs under (a CI job, a systemd service). An absolute path (`/kiln/<id>`) starts at the root of
//! each hierarchy. The parents in `path` (`kiln`) are made as needed and removed by `destroy`
//! when no other container uses them (the last one out removes them; a concurrent `create` that
//! loses that race retries), so nothing is left behind. Limits meant for all containers together
//! therefore belong on the caller's own cgroup, not on `kiln`.
//!
//! Limits (files and conversions as in runc):
//!
//! | OCI | v1 | v2 |
//! | --- | --- | --- |
//! | `memory.limit` | `memory.limit_in_bytes` | `memory.max` |
//! | `memory.reservation` | `memory.soft_limit_in_bytes` | `memory.low` |
//! | `memory.swap` (memory + swap) | `memory.memsw.limit_in_bytes` | `memory.swap.max` = swap − limit |
//! | `memory.swappiness`, `disableOOMKiller` | `memory.swappiness`, `memory.oom_control` | error |
//! | `pids.limit` (0 = unset, < 0 = no limit) | `pids.max` | `pids.max` |
//! | `cpu.shares` | `cpu.shares` | `cpu.weight` = 1 + (shares − 2) × 9999 / 262142 |
//! | `cpu.quota`, `cpu.period` | `cpu.cfs_quota_us`, `cpu.cfs_period_us` | `cpu.max` |
//! | `cpu.burst`, `cpu.idle` | `cpu.cfs_burst_us`, `cpu.idle` | `cpu.max.burst`, `cpu.idle` |
//! | `cpu.realtimeRuntime/Period` | `cpu.rt_runtime_us`, `cpu.rt_period_us` | error |
//! | `cpu.cpus`, `cpu.mems` | `cpuset.cpus`, `cpuset.mems` | `cpuset.cpus`, `cpuset.mems` |
//! | `devices` | `devices.allow` / `devices.deny`, in order | not applied (needs eBPF) |
//! | `unified` | error | written as given |
//!
//! `memory.kernel`, `memory.kernelTCP` and `memory.useHierarchy` are ignored (obsolete, as in
//! runc). Device rules are not enforced on cgroup2, which needs an eBPF program: the container
//! still only gets the device nodes its spec lists. `blockIO`, `hugepageLimits`, `network` and `rdma` are refused with
//! [`SandboxError::Spec`] rather than silently not enforced.
//!
//! Not responsible for: choosing the limits (the spec builder), namespaces, or the cgroup
//! namespace and `/sys/fs/cgroup` mount inside the container (the embedded runtime).

mod files;
mod host;
mod limits;

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use self::files::{CgroupFs, REAL_FS, read_procs, read_to_string, remove_dir, write_file};
use self::host::{Hierarchy, Host, OwnCgroup, Version, host, own_dir, parse_proc_cgroup};
use self::limits::{Write, WriteTo, planned_writes, wanted_v1_controllers};
use super::{Result, SandboxError};

/// How cgroups are mounted on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// No cgroup filesystem is mounted: containers run without cgroups.
    None,
    /// Only v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 hierarchy (usually at `/sys/fs/cgroup/unified`).
    Hybrid,
    /// cgroup2 only, at `/sys/fs/cgroup`.
    Unified,
}

/// This host's cgroup layout (detected once per process).
pub fn layout() -> Layout {
    host().layout
}

/// The cgroup2 mount point of a hybrid host (`/sys/fs/cgroup/unified`); `None` on other
/// layouts.
pub(crate) fn hybrid_cgroup2_mount() -> Option<&'static Path> {
    let host = host();
    if host.layout != Layout::Hybrid {
        return None;
    }
    host.hierarchies
        .iter()
        .find(|h| h.version == Version::V2)
        .map(|h| h.mountpoint.as_path())
}

/// How a process being created joins a [`Cgroup`] without the usual cost of moving a process.
///
/// Writing a pid to `cgroup.procs` takes the kernel's global `cgroup_threadgroup_rwsem` for
/// writing, which waits for an RCU grace period unless another migration happened just before:
/// about 11 ms a container on the development machine (measured with `strace -T`: a `tasks`
/// write of `0` took 50 µs, a `cgroup.procs` write 11-12 ms). Two moves skip that lock:
///
/// - `clone3(CLONE_INTO_CGROUP)` with [`JoinHandles::v2_dir`] creates the process directly in
///   the cgroup2 directory (Linux 5.7; it takes the lock for reading only);
/// - a single-threaded process writing `0` (the calling thread) to a v1 hierarchy's `tasks`
///   file moves only itself, which the kernel does without the global lock
///   (`cgroup_procs_write_start`: "If we migrate a single thread, we don't care about
///   threadgroup stability"). The container's init is single-threaded when it does this.
///
/// Permission for both is checked against the credentials of whoever opened the descriptors
/// (the caller), as for a `cgroup.procs` write.
#[derive(Debug)]
pub struct JoinHandles {
    /// The cgroup2 directory (`O_PATH`), for `CLONE_INTO_CGROUP`.
    pub v2_dir: Option<std::os::fd::OwnedFd>,
    /// Each v1 hierarchy's `tasks` file of the cgroup, opened for writing, with its path.
    pub v1_tasks: Vec<(PathBuf, std::os::fd::OwnedFd)>,
}

/// How long [`Cgroup::destroy`] waits for killed processes to leave the cgroup.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

/// A container's cgroup: one directory in each hierarchy it joined.
#[derive(Debug)]
pub struct Cgroup {
    layout: Layout,
    dirs: Vec<Dir>,
    fs: &'static dyn CgroupFs,
    destroyed: bool,
}

/// The cgroup's directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dir {
    path: PathBuf,
    version: Version,
    /// The directories between the caller's cgroup (or the root) and `path`, deepest first
    /// (`kiln` of `kiln/<id>`): removed on destroy when no other container uses them.
    parents: Vec<PathBuf>,
}

impl Cgroup {
    /// Creates the cgroup `path` (see the module docs for relative and absolute paths) in every
    /// hierarchy it needs and applies `resources`.
    ///
    /// The last component is the container's own: if it exists already (left over by a crashed
    /// run) it is reused when empty and refused when it holds processes.
    pub fn create(path: &str, resources: Option<&LinuxResources>) -> Result<Cgroup> {
        let own = read_to_string(&REAL_FS, Path::new("/proc/self/cgroup"))?;
        create_in(host(), &parse_proc_cgroup(&own), &REAL_FS, path, resources)
    }

    /// Moves process `pid` (a host PID) into the cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for dir in &self.dirs {
            write_file(self.fs, &dir.path.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// Moves process `pid` into the cgroup's cgroup2 directory only (a no-op without one): what
    /// is left of [`Cgroup::add_process`] when the process moves itself in the v1 hierarchies
    /// ([`Cgroup::join_handles`]).
    pub fn add_process_v2(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for dir in self.dirs.iter().filter(|d| d.version == Version::V2) {
            write_file(self.fs, &dir.path.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// Descriptors with which a process about to be created joins the cgroup cheaply (see
    /// [`JoinHandles`]). Opens the real files: for cgroups made on the host's hierarchies.
    pub fn join_handles(&self) -> Result<JoinHandles> {
        use rustix::fs::{Mode, OFlags, open};
        let opened = |path: &Path, flags: OFlags| {
            open(path, flags | OFlags::CLOEXEC, Mode::empty()).map_err(|e| SandboxError::Cgroup {
                path: path.to_path_buf(),
                source: e.into(),
            })
        };
        let mut handles = JoinHandles {
            v2_dir: None,
            v1_tasks: Vec::new(),
        };
        for dir in &self.dirs {
            match dir.version {
                Version::V2 => {
                    handles.v2_dir = Some(opened(&dir.path, OFlags::PATH | OFlags::DIRECTORY)?);
                }
                Version::V1(_) => {
                    let tasks = dir.path.join("tasks");
                    let fd = opened(&tasks, OFlags::WRONLY)?;
                    handles.v1_tasks.push((tasks, fd));
                }
            }
        }
        Ok(handles)
    }

    /// The cgroup's directory in the hierarchy of `controller` (`memory`, `pids`,
    /// `name=systemd`, ...). On a unified host every controller is in the one cgroup2
    /// directory; `"cgroup2"` names the cgroup2 directory on any layout.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        let v2 = self.dirs.iter().find(|d| d.version == Version::V2);
        let v1 = self.dirs.iter().find(|d| match &d.version {
            Version::V1(controllers) => controllers.iter().any(|c| c == controller),
            Version::V2 => false,
        });
        match (controller, v1, v2) {
            ("cgroup2", _, Some(v2)) => Some(&v2.path),
            (_, Some(v1), _) => Some(&v1.path),
            (_, None, Some(v2)) if self.layout == Layout::Unified => Some(&v2.path),
            _ => None,
        }
    }

    /// Every directory of the cgroup (one per joined hierarchy).
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path.as_path())
    }

    /// The PIDs in the cgroup (in any of its hierarchies), sorted, without duplicates.
    pub fn procs(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for dir in &self.dirs {
            pids.extend(read_procs(self.fs, &dir.path)?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup (`oom_kill` of
    /// v1 `memory.oom_control` or v2 `memory.events`); `None` without a memory controller.
    pub fn oom_kills(&self) -> Result<Option<u64>> {
        let Some(dir) = self.dir("memory") else {
            return Ok(None);
        };
        let file = match self.layout {
            Layout::Unified => "memory.events",
            _ => "memory.oom_control",
        };
        let text = read_to_string(self.fs, &dir.join(file))?;
        Ok(text.lines().find_map(|line| {
            let value = line.strip_prefix("oom_kill ")?;
            value.trim().parse().ok()
        }))
    }

    /// Kills every process in the cgroup with `SIGKILL` and waits until none is left.
    ///
    /// With a cgroup2 directory (unified or hybrid host) that is one write to `cgroup.kill`.
    /// Otherwise the processes are frozen first (v1 `freezer.state`), so none can fork while
    /// the list is read, killed, and thawed, until the cgroup is empty.
    pub fn kill_all(&self) -> Result<()> {
        let v2 = self.dirs.iter().find(|d| d.version == Version::V2);
        if let Some(dir) = v2
            && self.fs.exists(&dir.path.join("cgroup.kill"))
        {
            write_file(self.fs, &dir.path.join("cgroup.kill"), "1")?;
        } else {
            self.kill_loop()?;
        }
        self.wait_empty()
    }

    /// Kills every process and removes the cgroup's directories, and its parents (`kiln` of
    /// `kiln/<id>`) when no other cgroup uses them: the last container out removes them.
    pub fn destroy(mut self) -> Result<()> {
        self.destroyed = true;
        self.kill_all()?;
        for dir in &self.dirs {
            remove_dir(self.fs, &dir.path)?;
            for parent in &dir.parents {
                // Shared with other containers: busy (or already gone) is fine.
                if self.fs.rmdir(parent).is_err() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// v1 (or cgroup2 without `cgroup.kill`): freeze, kill each listed process, thaw; repeat
    /// until the list is empty.
    fn kill_loop(&self) -> Result<()> {
        let freezer = self.dirs.iter().find_map(|d| match &d.version {
            Version::V1(c) if c.iter().any(|c| c == "freezer") => {
                Some((d.path.join("freezer.state"), "FROZEN", "THAWED"))
            }
            Version::V2 if self.fs.exists(&d.path.join("cgroup.freeze")) => {
                Some((d.path.join("cgroup.freeze"), "1", "0"))
            }
            _ => None,
        });
        let deadline = Instant::now() + EMPTY_TIMEOUT;
        loop {
            if let Some((file, frozen, _)) = &freezer {
                write_file(self.fs, file, frozen)?;
                self.wait_frozen(file, deadline)?;
            }
            let pids = self.procs();
            for pid in pids.iter().flatten() {
                if let Some(pid) = rustix::process::Pid::from_raw(*pid) {
                    // ESRCH: it is already gone.
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            if let Some((file, _, thawed)) = &freezer {
                write_file(self.fs, file, thawed)?;
            }
            if pids?.is_empty() || Instant::now() > deadline {
                return Ok(());
            }
            // Killed processes need a moment to exit.
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Waits until a v1 `freezer.state` reads `FROZEN` (it goes through `FREEZING`); cgroup2's
    /// `cgroup.freeze` is read back from `cgroup.events`.
    fn wait_frozen(&self, file: &Path, deadline: Instant) -> Result<()> {
        let v2 = file.ends_with("cgroup.freeze");
        let events = file.with_file_name("cgroup.events");
        let mut pause = Duration::from_micros(100);
        loop {
            let frozen = if v2 {
                read_to_string(self.fs, &events)?
                    .lines()
                    .any(|l| l.trim() == "frozen 1")
            } else {
                read_to_string(self.fs, file)?.trim() == "FROZEN"
            };
            if frozen || Instant::now() > deadline {
                return Ok(());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Polls until no directory lists a process (the kernel drops a killed process from
    /// `cgroup.procs` when it exits, before it is reaped).
    fn wait_empty(&self) -> Result<()> {
        let deadline = Instant::now() + EMPTY_TIMEOUT;
        let mut pause = Duration::from_micros(50);
        loop {
            let pids = self.procs()?;
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SandboxError::Cgroup {
                    path: self.dirs[0].path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("processes {pids:?} still in the cgroup after SIGKILL"),
                    ),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.destroyed {
            let me = Cgroup {
                layout: self.layout,
                dirs: std::mem::take(&mut self.dirs),
                fs: self.fs,
                destroyed: false,
            };
            let _ = me.destroy();
        }
    }
}

/// `create` on the given host description, own cgroups and file system (tests use a fake).
/// Remove the empty cgroups under `parent` (relative to kiln's own cgroup, as [`Cgroup::create`]
/// places relative paths) whose name `is_stale` says are left over, e.g. by a kiln that was
/// killed before it could destroy them. A cgroup that still holds processes is never removed
/// (`rmdir` refuses it). Returns how many directories were removed.
pub fn remove_stale(parent: &str, is_stale: impl Fn(&str) -> bool) -> usize {
    let Ok(own) = read_to_string(&REAL_FS, Path::new("/proc/self/cgroup")) else {
        return 0;
    };
    let own = parse_proc_cgroup(&own);
    let Ok(rel) = relative_path(parent) else {
        return 0;
    };
    let mut removed = 0;
    for hierarchy in &host().hierarchies {
        let dir = own_dir(hierarchy, &own).join(&rel);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && is_stale(name)
                && std::fs::remove_dir(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

fn create_in(
    host: &Host,
    own: &[OwnCgroup],
    fs: &'static dyn CgroupFs,
    path: &str,
    resources: Option<&LinuxResources>,
) -> Result<Cgroup> {
    let rel = relative_path(path)?;
    let absolute = path.starts_with('/');
    let writes = match resources {
        Some(r) => planned_writes(host.layout, r)?,
        None => Vec::new(),
    };
    let wanted = wanted_v1_controllers(host.layout, &writes);
    let mut cgroup = Cgroup {
        layout: host.layout,
        dirs: Vec::new(),
        fs,
        destroyed: false,
    };
    for hierarchy in &host.hierarchies {
        let joins = match &hierarchy.version {
            Version::V2 => true,
            Version::V1(controllers) => controllers.iter().any(|c| wanted.contains(&c.as_str())),
        };
        if !joins {
            continue;
        }
        let base = if absolute {
            hierarchy.mountpoint.clone()
        } else {
            own_dir(hierarchy, own)
        };
        let (dir, parents) = make_dirs(fs, &base, &rel, hierarchy)?;
        cgroup.dirs.push(Dir {
            path: dir,
            version: hierarchy.version.clone(),
            parents,
        });
        if host.layout == Layout::Unified {
            enable_controllers(fs, &base, &rel, &writes)?;
        }
    }
    if cgroup.dirs.is_empty() && !writes.is_empty() {
        return Err(SandboxError::Spec(
            "the spec sets cgroup limits but no cgroup hierarchy is mounted".into(),
        ));
    }
    for write in &writes {
        let dir = cgroup
            .dirs
            .iter()
            .find(|d| match (&d.version, write.version) {
                (Version::V1(c), WriteTo::V1) => c.iter().any(|c| c == write.controller),
                (Version::V2, WriteTo::V2) => true,
                _ => false,
            })
            .ok_or_else(|| {
                SandboxError::Spec(format!(
                    "the spec limits `{}` but the `{}` cgroup controller is not mounted",
                    write.file, write.controller
                ))
            })?;
        let file = dir.path.join(&write.file);
        if write.file == "memory.memsw.limit_in_bytes" && !fs.exists(&file) {
            return Err(SandboxError::Spec(
                "the spec limits swap but the kernel does not account it \
                 (no memory.memsw.limit_in_bytes; boot with swapaccount=1)"
                    .into(),
            ));
        }
        write_file(fs, &file, &write.value)?;
    }
    Ok(cgroup)
}

/// The components of `path`, refusing `..`, `.` and empty paths.
fn relative_path(path: &str) -> Result<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    let ok = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !ok || rel.as_os_str().is_empty() {
        return Err(SandboxError::Spec(format!(
            "cgroup path `{path}` must be a plain path like `kiln/<id>`"
        )));
    }
    Ok(rel.to_path_buf())
}

/// `mkdir -p base/rel`: the leaf, and the parents between `base` and it (deepest first). A
/// concurrent `destroy` may remove a shared parent between two `mkdir`s: that is retried.
fn make_dirs(
    fs: &dyn CgroupFs,
    base: &Path,
    rel: &Path,
    hierarchy: &Hierarchy,
) -> Result<(PathBuf, Vec<PathBuf>)> {
    let cpuset = matches!(&hierarchy.version, Version::V1(c) if c.iter().any(|c| c == "cpuset"));
    let mut attempts = 0;
    'retry: loop {
        attempts += 1;
        let mut parents = Vec::new();
        let mut dir = base.to_path_buf();
        let count = rel.components().count();
        for (i, component) in rel.components().enumerate() {
            let parent = dir.clone();
            dir.push(component);
            let leaf = i + 1 == count;
            match fs.mkdir(&dir) {
                Ok(()) => {
                    if cpuset {
                        copy_cpuset(fs, &parent, &dir)?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if leaf && !read_procs(fs, &dir)?.is_empty() {
                        return Err(SandboxError::Cgroup {
                            path: dir,
                            source: std::io::Error::new(
                                std::io::ErrorKind::AlreadyExists,
                                "the cgroup exists and holds processes",
                            ),
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 5 => {
                    continue 'retry;
                }
                Err(source) => return Err(SandboxError::Cgroup { path: dir, source }),
            }
            if !leaf {
                parents.push(dir.clone());
            }
        }
        parents.reverse();
        return Ok((dir, parents));
    }
}

/// A new v1 cpuset cgroup has no CPUs and no memory nodes (nothing can join it): start with the
/// parent's.
fn copy_cpuset(fs: &dyn CgroupFs, parent: &Path, dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read_to_string(fs, &dir.join(file))?.trim().is_empty() {
            let value = read_to_string(fs, &parent.join(file))?;
            write_file(fs, &dir.join(file), value.trim())?;
        }
    }
    Ok(())
}

/// cgroup2: enable the controllers the writes need in every directory from `base` down to the
/// leaf's parent (`+cpu +memory +pids`, plus `cpuset` and any other the writes use), as far as
/// `base` offers them.
fn enable_controllers(fs: &dyn CgroupFs, base: &Path, rel: &Path, writes: &[Write]) -> Result<()> {
    let available = read_to_string(fs, &base.join("cgroup.controllers"))?;
    let available: Vec<&str> = available.split_whitespace().collect();
    let mut wanted: Vec<&str> = vec!["cpu", "memory", "pids"];
    for write in writes {
        if !wanted.contains(&write.controller) {
            wanted.push(write.controller);
        }
    }
    if let Some(missing) = writes.iter().find(|w| !available.contains(&w.controller)) {
        return Err(SandboxError::Spec(format!(
            "the spec limits `{}` but the `{}` controller is not available in {}",
            missing.file,
            missing.controller,
            base.display()
        )));
    }
    let line = wanted
        .iter()
        .filter(|c| available.contains(c))
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        return Ok(());
    }
    let mut dir = base.to_path_buf();
    for component in rel.components() {
        write_file(fs, &dir.join("cgroup.subtree_control"), &line)?;
        dir.push(component);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
