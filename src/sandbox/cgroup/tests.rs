//! Unit tests of `sandbox::cgroup`: parsing, the v1/v2 file plans, `create` against fake
//! hierarchies in a temporary directory, and (as root, on a v1 or hybrid host) real cgroups.

use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, ChildStdin, Command, Stdio};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResourcesBuilder,
};

use super::files::*;
use super::host::*;
use super::limits::*;
use super::*;

/// What this host (the development machine) shows: v1 controllers and a controller-less
/// cgroup2 at `/sys/fs/cgroup/unified`.
const HYBRID_MOUNTINFO: &str = "\
23 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
99 35 0:32 / /mnt/memory\\040again rw - cgroup cgroup rw,memory
";

fn v1(controllers: &[&str]) -> Version {
    Version::V1(controllers.iter().map(|c| c.to_string()).collect())
}

#[test]
fn parses_a_hybrid_mountinfo() {
    let found = parse_mountinfo(HYBRID_MOUNTINFO);
    let summary: Vec<_> = found
        .iter()
        .map(|h| (h.mountpoint.to_str().unwrap(), h.version.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("/sys/fs/cgroup/cpu,cpuacct", v1(&["cpu", "cpuacct"])),
            ("/sys/fs/cgroup/memory", v1(&["memory"])),
            ("/sys/fs/cgroup/pids", v1(&["pids"])),
            ("/sys/fs/cgroup/systemd", v1(&["name=systemd"])),
            ("/sys/fs/cgroup/unified", Version::V2),
        ]
    );
    assert_eq!(host_from(false, found.clone()).layout, Layout::Hybrid);
    assert_eq!(host_from(false, found[..4].to_vec()).layout, Layout::V1);
    let unified = host_from(true, found);
    assert_eq!(unified.layout, Layout::Unified);
    assert_eq!(unified.hierarchies.len(), 1, "only cgroup2 is used");
    assert_eq!(host_from(false, Vec::new()).layout, Layout::None);
    assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
}

#[test]
fn own_cgroup_is_the_base_of_relative_paths() {
    let own = parse_proc_cgroup("9:name=systemd:/\n4:memory:/ci/job 7\n1:cpu,cpuacct:/\n0::/\n");
    assert_eq!(own.len(), 4);
    let memory = Hierarchy {
        mountpoint: "/sys/fs/cgroup/memory".into(),
        root: "/".into(),
        version: v1(&["memory"]),
    };
    assert_eq!(
        own_dir(&memory, &own),
        Path::new("/sys/fs/cgroup/memory/ci/job 7")
    );
    // A bind mount of a sub-tree (inside a container): its root is stripped.
    let bound = Hierarchy {
        root: "/ci".into(),
        ..memory.clone()
    };
    assert_eq!(
        own_dir(&bound, &own),
        Path::new("/sys/fs/cgroup/memory/job 7")
    );
    let v2 = Hierarchy {
        mountpoint: "/sys/fs/cgroup/unified".into(),
        root: "/".into(),
        version: Version::V2,
    };
    assert_eq!(own_dir(&v2, &own), Path::new("/sys/fs/cgroup/unified"));
    let pids = Hierarchy {
        version: v1(&["pids"]),
        ..memory
    };
    assert_eq!(
        own_dir(&pids, &own),
        Path::new("/sys/fs/cgroup/memory"),
        "unlisted"
    );
}

#[test]
fn paths_must_be_plain() {
    assert_eq!(relative_path("kiln/abc").unwrap(), Path::new("kiln/abc"));
    assert_eq!(relative_path("/kiln/abc").unwrap(), Path::new("kiln/abc"));
    for bad in ["", "/", "kiln/../x", "./kiln", ".."] {
        assert!(relative_path(bad).is_err(), "{bad:?} accepted");
    }
}

fn resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .reservation(32 << 20)
                .swap(96 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(100).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000)
                .period(100_000u64)
                .cpus("0")
                .build()
                .unwrap(),
        )
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1)
                .minor(3)
                .access("rwm")
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap()
}

fn summary(writes: &[Write]) -> Vec<(String, String)> {
    writes
        .iter()
        .map(|w| (w.file.clone(), w.value.clone()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect()
}

#[test]
fn v1_files_in_order() {
    let writes = planned_writes(Layout::Hybrid, &resources()).unwrap();
    assert_eq!(
        summary(&writes),
        pairs(&[
            ("memory.limit_in_bytes", "67108864"),
            ("memory.soft_limit_in_bytes", "33554432"),
            ("memory.memsw.limit_in_bytes", "100663296"),
            ("pids.max", "100"),
            ("cpu.shares", "512"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "50000"),
            ("cpuset.cpus", "0"),
            ("devices.deny", "a *:* rwm"),
            ("devices.allow", "c 1:3 rwm"),
        ])
    );
    assert!(writes.iter().all(|w| w.version == WriteTo::V1));
    let wanted = wanted_v1_controllers(Layout::Hybrid, &writes);
    assert!(wanted.contains(&"cpuset") && wanted.contains(&"devices"));
    assert!(!wanted.contains(&"freezer"), "hybrid kills through cgroup2");
    assert_eq!(
        wanted_v1_controllers(Layout::V1, &[]),
        ["memory", "pids", "cpu", "freezer"]
    );
}

#[test]
fn v2_files_with_runc_conversions() {
    let writes = planned_writes(Layout::Unified, &resources()).unwrap();
    assert_eq!(
        summary(&writes),
        pairs(&[
            ("memory.max", "67108864"),
            ("memory.low", "33554432"),
            ("memory.swap.max", "33554432"),
            ("pids.max", "100"),
            ("cpu.weight", "20"),
            ("cpu.max", "50000 100000"),
            ("cpuset.cpus", "0"),
        ]),
        "devices are not applied on cgroup2"
    );
    assert_eq!(cpu_weight(2), 1);
    assert_eq!(cpu_weight(1024), 39);
    assert_eq!(cpu_weight(262_144), 10_000);
    let unlimited = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(-1)
                .swap(-1)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .period(50_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(
        summary(&planned_writes(Layout::Unified, &unlimited).unwrap()),
        pairs(&[
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("pids.max", "max"),
            ("cpu.max", "max 50000"),
        ])
    );
}

#[test]
fn refuses_what_it_cannot_enforce() {
    let swap_only = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().swap(1 << 20).build().unwrap())
        .build()
        .unwrap();
    let swap_below = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(2 << 20)
                .swap(1 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let swappiness = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .swappiness(10u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut unified_map = LinuxResources::default();
    unified_map.set_unified(Some([("memory.high".into(), "1G".into())].into()));
    let mut escaping = LinuxResources::default();
    escaping.set_unified(Some([("memory.x/../../y".into(), "1".into())].into()));
    let mut core_file = LinuxResources::default();
    core_file.set_unified(Some([("cgroup.procs".into(), "1".into())].into()));
    let mut block_io = LinuxResources::default();
    block_io.set_block_io(Some(Default::default()));
    for (layout, r) in [
        (Layout::V1, &swap_only),
        (Layout::Unified, &swap_only),
        (Layout::V1, &swap_below),
        (Layout::Unified, &swappiness),
        (Layout::Hybrid, &unified_map),
        (Layout::Unified, &escaping),
        (Layout::Unified, &core_file),
        (Layout::V1, &block_io),
    ] {
        let err = planned_writes(layout, r).expect_err("accepted");
        assert!(matches!(err, SandboxError::Spec(_)), "{err}");
    }
    assert_eq!(
        summary(&planned_writes(Layout::Unified, &unified_map).unwrap()),
        pairs(&[("memory.high", "1G")])
    );
}

/// A plain directory standing in for a cgroup file system: `write` appends a line (so a
/// test sees every write in order), missing files read as empty, and `rmdir` removes a
/// directory with its files but, like the kernel, not one with child cgroups.
#[derive(Debug)]
struct TempFs;

static TEMP_FS: TempFs = TempFs;

impl CgroupFs for TempFs {
    fn mkdir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::DirBuilder::new().create(path)
    }

    fn rmdir(&self, path: &Path) -> std::io::Result<()> {
        for entry in fs_err::read_dir(path)? {
            if entry?.file_type()?.is_dir() {
                return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
            }
        }
        fs_err::remove_dir_all(path)
    }

    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        let mut file = fs_err::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        writeln!(file, "{value}")
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        match fs_err::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            other => other,
        }
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

fn read(path: &Path) -> String {
    fs_err::read_to_string(path).unwrap()
}

/// cgroup2 with controllers cannot be exercised on the (hybrid) development machine: this
/// runs `create_in` for a unified host against a temporary directory laid out like a v2
/// hierarchy, and checks the files it writes.
#[test]
fn creates_a_v2_cgroup_in_a_fake_hierarchy() {
    let root = tempfile::tempdir().unwrap();
    let own_dir = root.path().join("ci.slice");
    fs_err::create_dir(&own_dir).unwrap();
    fs_err::write(
        own_dir.join("cgroup.controllers"),
        "cpuset cpu io memory pids\n",
    )
    .unwrap();
    let host = host_from(
        true,
        vec![Hierarchy {
            mountpoint: root.path().into(),
            root: "/".into(),
            version: Version::V2,
        }],
    );
    let own = parse_proc_cgroup("0::/ci.slice\n");
    let cgroup = create_in(&host, &own, &TEMP_FS, "kiln/c1", Some(&resources())).unwrap();
    let leaf = own_dir.join("kiln/c1");
    assert_eq!(cgroup.paths().collect::<Vec<_>>(), [leaf.as_path()]);
    assert_eq!(cgroup.dir("memory"), Some(leaf.as_path()));
    assert_eq!(cgroup.dir("cgroup2"), Some(leaf.as_path()));
    for dir in [&own_dir, &own_dir.join("kiln")] {
        assert_eq!(
            read(&dir.join("cgroup.subtree_control")),
            "+cpu +memory +pids +cpuset\n",
            "{}",
            dir.display()
        );
    }
    assert!(!leaf.join("cgroup.subtree_control").exists());
    for (file, value) in [
        ("memory.max", "67108864\n"),
        ("memory.low", "33554432\n"),
        ("memory.swap.max", "33554432\n"),
        ("pids.max", "100\n"),
        ("cpu.weight", "20\n"),
        ("cpu.max", "50000 100000\n"),
        ("cpuset.cpus", "0\n"),
    ] {
        assert_eq!(read(&leaf.join(file)), value, "{file}");
    }
    cgroup.destroy().unwrap();
    assert!(!own_dir.join("kiln").exists(), "created parent left behind");
    assert!(own_dir.exists(), "the caller's own cgroup was removed");

    // A controller the parent does not offer is refused, naming it.
    fs_err::write(own_dir.join("cgroup.controllers"), "cpu memory\n").unwrap();
    let err = create_in(&host, &own, &TEMP_FS, "kiln/c2", Some(&resources())).unwrap_err();
    assert!(err.to_string().contains("pids"), "{err}");
}

#[test]
fn creates_v1_cgroups_in_fake_hierarchies() {
    let root = tempfile::tempdir().unwrap();
    let mut hierarchies = Vec::new();
    for (dir, controllers) in [
        ("cpu,cpuacct", &["cpu", "cpuacct"][..]),
        ("cpuset", &["cpuset"]),
        ("memory", &["memory"]),
        ("pids", &["pids"]),
        ("blkio", &["blkio"]),
        ("devices", &["devices"]),
        ("systemd", &["name=systemd"]),
    ] {
        let mountpoint = root.path().join(dir);
        fs_err::create_dir(&mountpoint).unwrap();
        hierarchies.push(Hierarchy {
            mountpoint,
            root: "/".into(),
            version: v1(controllers),
        });
    }
    fs_err::write(root.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
    fs_err::write(root.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
    fs_err::write(root.path().join("memory/memory.memsw.limit_in_bytes"), "").unwrap();
    let host = host_from(false, hierarchies);
    let own = parse_proc_cgroup("4:memory:/\n");
    // Absolute: the memory/memsw check reads the root's file, not the leaf's.
    let cgroup = create_in(&host, &own, &TEMP_FS, "/kiln/c1", Some(&resources()));
    let err = cgroup.expect_err("memsw file missing in the new cgroup");
    assert!(err.to_string().contains("swapaccount"), "{err}");

    let mut r = resources();
    r.memory_mut().as_mut().unwrap().set_swap(None);
    let cgroup = create_in(&host, &own, &TEMP_FS, "/kiln/c1", Some(&r)).unwrap();
    let joined: Vec<_> = cgroup
        .paths()
        .map(|p| {
            p.strip_prefix(root.path())
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        joined,
        [
            "cpu,cpuacct/kiln/c1",
            "cpuset/kiln/c1",
            "memory/kiln/c1",
            "pids/kiln/c1",
            "devices/kiln/c1",
        ],
        "blkio and name=systemd are not joined"
    );
    let leaf = |h: &str, file: &str| read(&root.path().join(h).join("kiln/c1").join(file));
    assert_eq!(leaf("memory", "memory.limit_in_bytes"), "67108864\n");
    assert_eq!(leaf("pids", "pids.max"), "100\n");
    assert_eq!(leaf("cpu,cpuacct", "cpu.cfs_quota_us"), "50000\n");
    assert_eq!(
        leaf("cpuset", "cpuset.cpus"),
        "0-1\n0\n",
        "copied, then set"
    );
    assert_eq!(leaf("cpuset", "cpuset.mems"), "0\n");
    assert_eq!(leaf("devices", "devices.deny"), "a *:* rwm\n");
    assert_eq!(leaf("devices", "devices.allow"), "c 1:3 rwm\n");
    assert_eq!(cgroup.dir("cpuacct"), cgroup.dir("cpu"));
    assert_eq!(cgroup.dir("cgroup2"), None);
    drop(cgroup);
    assert!(!root.path().join("memory/kiln").exists(), "drop cleans up");
}

// ---- real cgroups (root)

/// `Some(reason)` when the real-cgroup tests cannot run here; they print it and return.
fn skip_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root to create cgroups".into());
    }
    if !matches!(layout(), Layout::V1 | Layout::Hybrid) {
        return Some(format!(
            "needs cgroup v1 controllers (layout here: {:?}; cgroup2 is unit-tested on a \
             temp dir)",
            layout()
        ));
    }
    None
}

macro_rules! skip_unless_real_cgroups {
    () => {
        if let Some(reason) = skip_reason() {
            let test = std::thread::current()
                .name()
                .unwrap_or("<test>")
                .to_string();
            if std::env::var_os("KILN_TEST_NO_SKIP").is_some_and(|v| v != "0") {
                panic!("SKIP {test}: {reason} (KILN_TEST_NO_SKIP is set)");
            }
            let line = format!("SKIP {test}: {reason}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            return;
        }
    };
}

/// A cgroup path under a parent of its own (concurrent tests sharing a parent could not
/// remove it: it is busy while another test uses it).
fn unique(name: &str) -> String {
    format!("kiln-test-{name}-{}/c", std::process::id())
}

/// `sh -c script` that waits for a line on stdin first, so that the test can move it into
/// a cgroup before it does anything (as the embedded runtime does with its child).
fn gated_sh(script: &str) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .args(["-c", &format!("read _; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

fn go(mut stdin: ChildStdin) {
    stdin.write_all(b"\n").unwrap();
}

fn pid(child: &Child) -> i32 {
    i32::try_from(child.id()).unwrap()
}

#[test]
fn real_limits_are_written_and_processes_join() {
    skip_unless_real_cgroups!();
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(48 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(20).build().unwrap())
        .cpu(
            LinuxCpuBuilder::default()
                .shares(256u64)
                .quota(20_000)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let cgroup = Cgroup::create(&unique("limits"), Some(&r)).unwrap();
    let file = |controller: &str, name: &str| {
        read_to_string(&REAL_FS, &cgroup.dir(controller).unwrap().join(name))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        file("memory", "memory.limit_in_bytes"),
        (48 << 20).to_string()
    );
    assert_eq!(file("pids", "pids.max"), "20");
    assert_eq!(file("cpu", "cpu.shares"), "256");
    assert_eq!(file("cpu", "cpu.cfs_quota_us"), "20000");
    assert_eq!(file("cpu", "cpu.cfs_period_us"), "100000");

    let (mut child, stdin) = gated_sh("sleep 30");
    cgroup.add_process(pid(&child)).unwrap();
    let paths: Vec<PathBuf> = cgroup.paths().map(Path::to_path_buf).collect();
    for dir in &paths {
        let procs = read_procs(&REAL_FS, dir).unwrap();
        assert_eq!(procs, [pid(&child)], "{}", dir.display());
    }
    if layout() == Layout::Hybrid {
        assert!(
            cgroup.dir("cgroup2").is_some(),
            "joins the cgroup2 hierarchy"
        );
    }
    go(stdin);
    cgroup.destroy().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    for dir in &paths {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn real_memory_limit_oom_kills() {
    skip_unless_real_cgroups!();
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(16 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let cgroup = Cgroup::create(&unique("oom"), Some(&r)).unwrap();
    // The shell keeps the 64 MiB it reads from the pipe in memory.
    let (child, stdin) = gated_sh("x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo ${#x}");
    cgroup.add_process(pid(&child)).unwrap();
    go(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out:?}");
    assert!(cgroup.oom_kills().unwrap().unwrap() >= 1);
    cgroup.destroy().unwrap();
}

#[test]
fn real_pids_limit_stops_forks() {
    skip_unless_real_cgroups!();
    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(4).build().unwrap())
        .build()
        .unwrap();
    let cgroup = Cgroup::create(&unique("pids"), Some(&r)).unwrap();
    let (child, stdin) =
        gated_sh("for i in 1 2 3 4 5 6 7 8; do sleep 30 >/dev/null 2>&1 & done; exit 0");
    cgroup.add_process(pid(&child)).unwrap();
    go(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fork"), "no fork failure: {out:?}");
    let events =
        read_to_string(&REAL_FS, &cgroup.dir("pids").unwrap().join("pids.events")).unwrap();
    assert!(events.trim() != "max 0", "{events}");
    let left = cgroup.procs().unwrap();
    assert!(!left.is_empty() && left.len() <= 4, "{left:?}");
    cgroup.destroy().unwrap();
}

/// The freezer loop (v1 without `cgroup.kill`), exercised by leaving out cgroup2.
#[test]
fn real_v1_kill_loop_kills_a_forking_tree() {
    skip_unless_real_cgroups!();
    let v1_only = Host {
        layout: Layout::V1,
        hierarchies: host()
            .hierarchies
            .iter()
            .filter(|h| h.version != Version::V2)
            .cloned()
            .collect(),
    };
    let own = parse_proc_cgroup(&read_to_string(&REAL_FS, Path::new("/proc/self/cgroup")).unwrap());
    let cgroup = create_in(&v1_only, &own, &REAL_FS, &unique("freezer"), None).unwrap();
    assert!(cgroup.dir("freezer").is_some());
    let (mut child, stdin) = gated_sh("while :; do sleep 30 & sleep 0.01; done");
    cgroup.add_process(pid(&child)).unwrap();
    go(stdin);
    std::thread::sleep(Duration::from_millis(100));
    assert!(cgroup.procs().unwrap().len() > 2);
    let paths: Vec<PathBuf> = cgroup.paths().map(Path::to_path_buf).collect();
    cgroup.destroy().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    for dir in &paths {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn real_existing_busy_cgroup_is_refused() {
    skip_unless_real_cgroups!();
    let path = unique("busy");
    let first = Cgroup::create(&path, None).unwrap();
    let (mut child, stdin) = gated_sh("sleep 30");
    first.add_process(pid(&child)).unwrap();
    let err = Cgroup::create(&path, None).unwrap_err();
    assert!(err.to_string().contains("cgroup"), "{err}");
    drop(stdin);
    first.destroy().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

/// Containers created and destroyed in parallel under one parent: every `create` succeeds
/// (a parent removed under it is made again) and the last one out removes the parent.
#[test]
fn real_parallel_cgroups_share_and_remove_their_parent() {
    skip_unless_real_cgroups!();
    let parent = format!("kiln-test-parallel-{}", std::process::id());
    let probe = Cgroup::create(&format!("{parent}/probe"), None).unwrap();
    let parents: Vec<PathBuf> = probe
        .paths()
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect();
    probe.destroy().unwrap();
    for dir in &parents {
        assert!(!dir.exists(), "{} left by a lone container", dir.display());
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let parent = parent.clone();
            std::thread::spawn(move || {
                for n in 0..25 {
                    let cgroup = Cgroup::create(&format!("{parent}/c{t}-{n}"), None).unwrap();
                    cgroup.destroy().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for dir in &parents {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}
