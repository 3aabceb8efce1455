//! End-to-end tests of the embedded runtime (`kiln::sandbox` with `Backend::Embedded`): real
//! containers on a busybox rootfs. They need root (namespaces, mounts) and skip with a printed
//! reason otherwise.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln::sandbox::{self, Backend, ExitStatus, SandboxError, Spec, Stdio, StdioConfig};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilitiesBuilder, LinuxNamespaceType, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, UserBuilder, get_default_mounts,
};

use crate::harness::rootfs::{BusyboxRootfs, busybox_rootfs};
use crate::harness::{self, skip_unless};

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
fn docker_caps() -> Capabilities {
    use Capability as C;
    [
        C::Chown,
        C::DacOverride,
        C::Fsetid,
        C::Fowner,
        C::Mknod,
        C::NetRaw,
        C::Setgid,
        C::Setuid,
        C::Setfcap,
        C::Setpcap,
        C::NetBindService,
        C::SysChroot,
        C::Kill,
        C::AuditWrite,
    ]
    .into_iter()
    .collect()
}

const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A Docker-like spec: default namespaces, mounts, masked and read-only paths from `oci-spec`
/// (the same lists as runc's and Docker's), Docker's capabilities, no cgroup.
fn spec(root: &Path, args: &[&str]) -> Spec {
    let mut spec = Spec::default();
    spec.set_hostname(Some("kiln-test".into()));
    spec.set_root(Some(
        RootBuilder::default()
            .path(root)
            .readonly(false)
            .build()
            .unwrap(),
    ));
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(docker_caps())
        .effective(docker_caps())
        .permitted(docker_caps())
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .unwrap();
    let process = ProcessBuilder::default()
        .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .env(vec![PATH.to_string()])
        .cwd("/")
        .user(UserBuilder::default().uid(0u32).gid(0u32).build().unwrap())
        .capabilities(caps)
        .no_new_privileges(true)
        .build()
        .unwrap();
    spec.set_process(Some(process));
    if let Some(linux) = spec.linux_mut() {
        linux.set_resources(None);
    }
    spec
}

fn sh(root: &Path, script: &str) -> Spec {
    spec(root, &["sh", "-c", script])
}

#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn try_run(spec: &Spec) -> Result<Output, SandboxError> {
    let stdio = StdioConfig {
        stdin: Stdio::Null,
        stdout: Stdio::Pipe,
        stderr: Stdio::Pipe,
    };
    let mut c = sandbox::start(&Backend::Embedded, "it-sandbox", spec, stdio)?;
    let mut err = c.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let mut stdout = String::new();
    c.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = c.wait()?;
    let stderr = reader.join().unwrap();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

#[track_caller]
fn run(spec: &Spec) -> Output {
    try_run(spec).unwrap_or_else(|e| panic!("{}", error_chain(&e)))
}

/// Runs and asserts success; returns stdout.
#[track_caller]
fn run_ok(spec: &Spec) -> String {
    let out = run(spec);
    assert_eq!(out.status, ExitStatus::Code(0), "{out:?}");
    out.stdout
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Root and a fresh busybox rootfs, or a printed skip.
macro_rules! rootfs {
    () => {{
        skip_unless!(harness::root_required());
        skip_unless!(busybox_rootfs())
    }};
}

#[test]
fn exit_codes_and_signals_are_reported() {
    let fs: BusyboxRootfs = rootfs!();
    assert_eq!(run(&sh(fs.path(), "exit 3")).status, ExitStatus::Code(3));
    assert_eq!(run(&sh(fs.path(), "true")).status, ExitStatus::Code(0));
    assert_eq!(
        run(&sh(fs.path(), "kill -9 $$")).status,
        ExitStatus::Signal(9)
    );
}

#[test]
fn stdout_and_stderr_are_separate() {
    let fs = rootfs!();
    let out = run(&sh(fs.path(), "echo to-out; echo to-err >&2"));
    assert_eq!(out.stdout, "to-out\n");
    assert_eq!(out.stderr, "to-err\n");
}

#[test]
fn env_and_cwd() {
    let fs = rootfs!();
    let mut s = sh(fs.path(), "echo \"$FOO\"; pwd");
    let p = s.process_mut().as_mut().unwrap();
    p.set_env(Some(vec![PATH.into(), "FOO=bar baz".into()]));
    p.set_cwd("/tmp".into());
    assert_eq!(run_ok(&s), "bar baz\n/tmp\n");

    // A missing cwd is created (as runc does).
    s.process_mut()
        .as_mut()
        .unwrap()
        .set_cwd("/work/app".into());
    assert_eq!(run_ok(&s), "bar baz\n/work/app\n");
    assert!(fs.path().join("work/app").is_dir());
}

#[test]
fn uid_gid_and_supplementary_groups() {
    let fs = rootfs!();
    let mut s = spec(fs.path(), &["id"]);
    s.process_mut().as_mut().unwrap().set_user(
        UserBuilder::default()
            .uid(1000u32)
            .gid(1000u32)
            .additional_gids(vec![1000u32, 2000])
            .build()
            .unwrap(),
    );
    assert_eq!(
        run_ok(&s),
        "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)\n"
    );
    // A non-root user has no effective capabilities after execve (as in Docker).
    s.process_mut().as_mut().unwrap().set_args(Some(vec![
        "grep".into(),
        "CapEff".into(),
        "/proc/self/status".into(),
    ]));
    assert_eq!(run_ok(&s), "CapEff:\t0000000000000000\n");
}

#[test]
fn hostname_is_set() {
    let fs = rootfs!();
    assert_eq!(run_ok(&spec(fs.path(), &["hostname"])), "kiln-test\n");
}

#[test]
fn pid_1_is_the_init_and_no_host_process_is_visible() {
    let fs = rootfs!();
    let out = run_ok(&sh(fs.path(), "echo $$; cd /proc && echo [0-9]*"));
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("2"),
        "the process is PID 2 under the init: {out}"
    );
    let pids: Vec<u32> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    // The init (1), sh (2); nothing of the host's.
    assert_eq!(pids, [1, 2], "{out}");
}

#[test]
fn only_stdio_descriptors_are_open() {
    let fs = rootfs!();
    // Descriptors the caller has open without O_CLOEXEC must not leak in either.
    let leaked = fs_err::File::open("/dev/null").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&leaked);
    // SAFETY: clearing FD_CLOEXEC on a descriptor we own.
    assert!(unsafe { libc::fcntl(raw, libc::F_SETFD, 0) } == 0);
    let out = run_ok(&spec(fs.path(), &["ls", "/proc/self/fd"]));
    // 0, 1, 2 and the directory `ls` has open.
    let fds: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{out}");
    drop(leaked);
}

#[test]
fn standard_mounts_and_devices_are_present() {
    let fs = rootfs!();
    let out = run_ok(&sh(
        fs.path(),
        "for d in null zero full random urandom tty; do test -c /dev/$d || echo missing $d; done; \
         test -d /dev/pts || echo missing pts; \
         ls -l /dev/ptmx /dev/fd /dev/stdin; \
         echo hello > /dev/shm/x && cat /dev/shm/x; \
         head -c 4 /dev/zero | wc -c; \
         cat /proc/self/mountinfo",
    ));
    assert!(!out.contains("missing"), "{out}");
    assert!(out.contains("/dev/ptmx -> pts/ptmx"), "{out}");
    assert!(out.contains("/dev/fd -> /proc/self/fd"), "{out}");
    assert!(out.contains("hello\n4\n"), "{out}");
    let mounts = mountinfo(&out);
    for (point, fstype) in [
        ("/proc", "proc"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/sys", "sysfs"),
    ] {
        let m = mounts
            .iter()
            .find(|m| m.point == point)
            .unwrap_or_else(|| panic!("no mount on {point}:\n{out}"));
        assert_eq!(m.fstype, fstype, "{out}");
    }
    let sys = mounts.iter().find(|m| m.point == "/sys").unwrap();
    assert!(sys.options.split(',').any(|o| o == "ro"), "{out}");
    // cgroup v1 hierarchies (or cgroup2) under /sys/fs/cgroup, read-only.
    assert!(
        mounts
            .iter()
            .any(|m| m.point.starts_with("/sys/fs/cgroup") && m.fstype.starts_with("cgroup")),
        "{out}"
    );
    // Writing to a read-only sysfs fails.
    let out = run(&sh(fs.path(), "echo x > /sys/kernel/uevent_helper"));
    assert_ne!(out.status, ExitStatus::Code(0), "{out:?}");
}

struct MountEntry {
    point: String,
    options: String,
    fstype: String,
}

fn mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let fstype = right.split(' ').next()?;
            Some(MountEntry {
                point: l.get(4)?.to_string(),
                options: l.get(5)?.to_string(),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

#[test]
fn masked_paths_are_empty_and_readonly_paths_read_only() {
    let fs = rootfs!();
    let s = sh(
        fs.path(),
        "for p in $MASKED; do \
           if [ -d $p ]; then echo \"$p $(ls -A $p | wc -l)\"; \
           elif [ -e $p ]; then echo \"$p $(cat $p | wc -c)\"; fi; done; \
         echo 1 > /proc/sys/kernel/domainname && echo wrote-proc-sys; \
         ls /proc/bus > /dev/null && touch /proc/bus/x && echo wrote-proc-bus; echo done",
    );
    let masked = s
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap();
    let mut s = s;
    s.process_mut().as_mut().unwrap().set_env(Some(vec![
        PATH.into(),
        format!("MASKED={}", masked.join(" ")),
    ]));
    let out = run(&s);
    // Every masked path the host has is there, empty (a kernel may lack some, e.g. kcore).
    let present: Vec<&String> = masked.iter().filter(|p| Path::new(p).exists()).collect();
    assert!(!present.is_empty());
    for p in present {
        assert!(
            out.stdout.lines().any(|l| l == format!("{p} 0")),
            "{p} not masked: {out:?}"
        );
    }
    assert!(out.stdout.ends_with("done\n"), "{out:?}");
    assert!(!out.stdout.contains("wrote"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
}

#[test]
fn a_readonly_root_cannot_be_written() {
    let fs = rootfs!();
    let mut s = sh(fs.path(), "touch /x; echo tmp > /tmp/y; echo rc=$?");
    s.root_mut().as_mut().unwrap().set_readonly(Some(true));
    let out = run(&s);
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(out.stdout.contains("rc=1"), "{out:?}");
    assert!(!fs.path().join("x").exists());
}

#[test]
fn mount_is_not_permitted_and_capabilities_are_dockers() {
    let fs = rootfs!();
    let out = run(&sh(
        fs.path(),
        "mount -t tmpfs none /tmp && echo mounted; grep -E '^Cap(Eff|Bnd|Prm|Inh|Amb)' /proc/self/status; grep NoNewPrivs /proc/self/status",
    ));
    assert!(!out.stdout.contains("mounted"), "{out:?}");
    assert!(
        out.stderr.contains("Operation not permitted") || out.stderr.contains("ermission"),
        "{out:?}"
    );
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t00000000a80425fb",
        "CapEff:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
    ] {
        assert!(out.stdout.lines().any(|l| l == line), "{line} in {out:?}");
    }
}

#[test]
fn a_background_process_does_not_keep_the_container_alive() {
    let fs = rootfs!();
    let started = Instant::now();
    let out = run(&sh(fs.path(), "sleep 1000 & echo started"));
    assert_eq!(out.status, ExitStatus::Code(0));
    assert_eq!(out.stdout, "started\n");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn orphaned_zombies_are_reaped_by_the_init() {
    let fs = rootfs!();
    // The inner sh exits at once, leaving `sleep 0.2` to the init; once it ends, nothing may
    // be left as a zombie.
    let out = run_ok(&sh(
        fs.path(),
        "sh -c 'sleep 0.2 &'; sleep 1; ps -o pid,stat,comm",
    ));
    let zombies: Vec<&str> = out
        .lines()
        .skip(1)
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|s| s.starts_with('Z'))
        })
        .collect();
    assert!(zombies.is_empty(), "{out}");
    assert!(!out.contains("sleep 0.2"), "{out}");
}

#[test]
fn signals_are_forwarded_to_the_process() {
    let fs = rootfs!();
    let s = sh(
        fs.path(),
        "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
    );
    let stdio = StdioConfig {
        stdout: Stdio::Pipe,
        ..StdioConfig::default()
    };
    let mut c = sandbox::start(&Backend::Embedded, "it-signal", &s, stdio).unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    c.signal(libc::SIGTERM).unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(c.wait().unwrap(), ExitStatus::Code(7));
    assert_eq!(rest, "got-term\n");
    // After wait: the handle refuses rather than signalling a recycled pid.
    assert!(c.signal(libc::SIGTERM).is_err());
}

#[test]
fn sigkill_through_the_handle_ends_everything() {
    let fs = rootfs!();
    let s = sh(fs.path(), "sleep 1000 & sleep 1000");
    let mut c = sandbox::start(&Backend::Embedded, "it-kill", &s, StdioConfig::default()).unwrap();
    c.signal(libc::SIGKILL).unwrap();
    assert_eq!(c.wait().unwrap(), ExitStatus::Signal(libc::SIGKILL));
}

#[test]
fn the_network_namespace_has_only_lo_and_it_is_up() {
    let fs = rootfs!();
    let out = run_ok(&sh(
        fs.path(),
        "ls /sys/class/net; cat /sys/class/net/lo/flags; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping-ok",
    ));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("lo"), "{out}");
    let flags = lines.next().unwrap();
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & libc::IFF_UP as u32, libc::IFF_UP as u32, "{out}");
    assert_eq!(lines.next(), Some("ping-ok"), "{out}");
}

#[test]
fn host_network_when_the_spec_has_no_network_namespace() {
    let fs = rootfs!();
    let mut s = sh(fs.path(), "ls /sys/class/net | wc -l");
    let linux = s.linux_mut().as_mut().unwrap();
    let ns: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap()
        .into_iter()
        .filter(|n| n.typ() != LinuxNamespaceType::Network)
        .collect();
    linux.set_namespaces(Some(ns));
    let host = fs_err::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(run_ok(&s).trim(), host.to_string());
}

#[test]
fn namespaces_with_a_path_are_joined_and_sysctls_written() {
    let fs = rootfs!();
    // Join the caller's own network namespace by path: the host's interfaces are visible.
    let mut s = sh(fs.path(), "ls /sys/class/net | wc -l");
    let linux = s.linux_mut().as_mut().unwrap();
    let ns: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap()
        .into_iter()
        .map(|mut n| {
            if n.typ() == LinuxNamespaceType::Network {
                n.set_path(Some(PathBuf::from("/proc/self/ns/net")));
            }
            n
        })
        .collect();
    linux.set_namespaces(Some(ns));
    let host = fs_err::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(run_ok(&s).trim(), host.to_string());

    // A sysctl of the container's own (network, uts) namespaces.
    let mut s = sh(
        fs.path(),
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/domainname",
    );
    s.linux_mut().as_mut().unwrap().set_sysctl(Some(
        [
            ("net.ipv4.ip_unprivileged_port_start", "80"),
            ("kernel.domainname", "kiln.example"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    ));
    assert_eq!(run_ok(&s), "80\nkiln.example\n");
    // The host's values are untouched.
    assert_ne!(
        fs_err::read_to_string("/proc/sys/kernel/domainname").unwrap(),
        "kiln.example\n"
    );
}

#[test]
fn unsupported_specs_are_refused_before_anything_starts() {
    let fs = rootfs!();
    let mut s = spec(fs.path(), &["true"]);
    let linux = s.linux_mut().as_mut().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    ns.push(
        oci_spec::runtime::LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()
            .unwrap(),
    );
    linux.set_namespaces(Some(ns));
    let err = try_run(&s).unwrap_err();
    assert!(matches!(err, SandboxError::Spec(_)), "{err:?}");

    let mut s = spec(fs.path(), &["true"]);
    s.process_mut().as_mut().unwrap().set_terminal(Some(true));
    assert!(matches!(try_run(&s).unwrap_err(), SandboxError::Spec(_)));
}

#[test]
fn a_symlinked_mount_destination_stays_inside_the_rootfs() {
    let fs = rootfs!();
    // On the host, this directory exists; in the image, /proc points at it with enough `..`
    // to climb out of any rootfs. Resolved in the rootfs, it is <rootfs>/<host dir>.
    let host_dir = tempfile::Builder::new()
        .prefix("kiln-escape-")
        .tempdir_in("/tmp")
        .unwrap();
    let inside = fs.path().join(host_dir.path().strip_prefix("/").unwrap());
    fs_err::create_dir_all(&inside).unwrap();
    fs_err::remove_dir(fs.path().join("proc")).unwrap();
    let target = format!("/../../../../../../..{}", host_dir.path().display());
    std::os::unix::fs::symlink(&target, fs.path().join("proc")).unwrap();

    let out = run_ok(&sh(fs.path(), "cat /proc/self/mountinfo"));
    let point = host_dir.path().to_str().unwrap();
    let proc_mount = mountinfo(&out)
        .into_iter()
        .find(|m| m.fstype == "proc")
        .unwrap_or_else(|| panic!("no proc mount:\n{out}"));
    // Mounted at the path inside the container's root (visible in its mountinfo, which only
    // lists mounts under its root), not on the host's directory.
    assert_eq!(proc_mount.point, point, "{out}");
    assert_eq!(fs_err::read_dir(host_dir.path()).unwrap().count(), 0);

    // When the symlink's target does not exist inside the rootfs, start fails clearly.
    fs_err::remove_dir(&inside).unwrap();
    let err = try_run(&sh(fs.path(), "true")).unwrap_err();
    let msg = error_chain(&err);
    assert!(msg.contains("/proc"), "{msg}");
}

#[test]
fn missing_mount_destination_outside_a_tmpfs_is_an_error_and_stubs_fix_it() {
    let fs = rootfs!();
    let host_file = fs.scratch().join("app.conf");
    fs_err::write(&host_file, "configured\n").unwrap();
    let host_dir = fs.scratch().join("data");
    fs_err::create_dir(&host_dir).unwrap();
    fs_err::write(host_dir.join("f"), "data\n").unwrap();
    // A scratch-like image: no /proc, /dev or /sys either.
    for d in ["proc", "dev", "sys"] {
        fs_err::remove_dir(fs.path().join(d)).unwrap();
    }
    let etc_mtime = fs_err::metadata(fs.path().join("etc"))
        .unwrap()
        .modified()
        .unwrap();
    let root_mtime = fs_err::metadata(fs.path()).unwrap().modified().unwrap();

    let mut s = sh(fs.path(), "cat /etc/app/app.conf /mnt/data/f; ls /dev/null");
    let mut mounts = s.mounts().clone().unwrap();
    mounts.push(bind(&host_file, "/etc/app/app.conf", &["ro"]));
    mounts.push(bind(&host_dir, "/mnt/data", &["rbind", "ro"]));
    s.set_mounts(Some(mounts));

    let err = try_run(&s).unwrap_err();
    let msg = error_chain(&err);
    assert!(
        msg.contains("/proc") && msg.contains("does not exist"),
        "{msg}"
    );

    let stubs = sandbox::linux::prepare_mountpoints(&s).unwrap();
    let created: Vec<PathBuf> = stubs.paths().map(Path::to_path_buf).collect();
    for p in [
        "/proc",
        "/dev",
        "/sys",
        "/etc/app",
        "/etc/app/app.conf",
        "/mnt",
        "/mnt/data",
    ] {
        assert!(
            created.iter().any(|c| c == Path::new(p)),
            "{p} in {created:?}"
        );
    }
    // Beneath the tmpfs on /dev, /proc and /sys: the runtime's job, not the rootfs's.
    assert!(
        !created
            .iter()
            .any(|c| c.starts_with("/dev") && c != Path::new("/dev")),
        "{created:?}"
    );
    assert!(fs.path().join("etc/app/app.conf").is_file());

    assert_eq!(run_ok(&s), "configured\ndata\n/dev/null\n");
    stubs.remove().unwrap();
    for p in ["proc", "dev", "sys", "etc/app", "mnt"] {
        assert!(!fs.path().join(p).exists(), "{p} left behind");
    }
    assert_eq!(
        fs_err::metadata(fs.path().join("etc"))
            .unwrap()
            .modified()
            .unwrap(),
        etc_mtime
    );
    assert_eq!(
        fs_err::metadata(fs.path()).unwrap().modified().unwrap(),
        root_mtime
    );
}

fn bind(source: &Path, dest: &str, options: &[&str]) -> Mount {
    let mut opts = vec!["bind".to_string()];
    opts.extend(options.iter().map(|s| s.to_string()));
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(opts)
        .build()
        .unwrap()
}

#[test]
fn bind_mounts_honour_ro() {
    let fs = rootfs!();
    let host_dir = fs.scratch().join("shared");
    fs_err::create_dir(&host_dir).unwrap();
    fs_err::create_dir(fs.path().join("mnt")).unwrap();
    let mut s = sh(fs.path(), "touch /mnt/x && echo wrote");
    let mut mounts = get_default_mounts();
    mounts.push(bind(&host_dir, "/mnt", &["ro"]));
    s.set_mounts(Some(mounts.clone()));
    let out = run(&s);
    assert!(!out.stdout.contains("wrote"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");

    mounts.pop();
    mounts.push(bind(&host_dir, "/mnt", &["rw"]));
    s.set_mounts(Some(mounts));
    assert_eq!(run_ok(&s), "wrote\n");
    assert!(host_dir.join("x").is_file());
}

#[test]
fn program_not_found_is_reported_like_runc() {
    let fs = rootfs!();
    let err = try_run(&spec(fs.path(), &["no-such-program"])).unwrap_err();
    let msg = error_chain(&err);
    assert!(
        msg.contains("\"no-such-program\": executable file not found in $PATH"),
        "{msg}"
    );
    let err = try_run(&spec(fs.path(), &["/bin/nope"])).unwrap_err();
    let msg = error_chain(&err);
    assert!(
        msg.contains("/bin/nope") && msg.contains("No such file"),
        "{msg}"
    );
}

#[test]
fn rlimits_umask_and_oom_score_adj() {
    let fs = rootfs!();
    let mut s = sh(fs.path(), "ulimit -n; umask; cat /proc/self/oom_score_adj");
    let p = s.process_mut().as_mut().unwrap();
    p.set_rlimits(Some(vec![
        oci_spec::runtime::PosixRlimitBuilder::default()
            .typ(oci_spec::runtime::PosixRlimitType::RlimitNofile)
            .soft(123u64)
            .hard(456u64)
            .build()
            .unwrap(),
    ]));
    p.set_oom_score_adj(Some(500));
    p.user_mut().set_umask(Some(0o027));
    assert_eq!(run_ok(&s), "123\n0027\n500\n");
}

#[test]
fn seccomp_profile_is_installed() {
    let fs = rootfs!();
    let mut s = sh(fs.path(), "grep -E '^Seccomp' /proc/self/status");
    let caps: Vec<Capability> = docker_caps().into_iter().collect();
    s.linux_mut()
        .as_mut()
        .unwrap()
        .set_seccomp(Some(sandbox::seccomp::docker_default(&caps)));
    let out = run_ok(&s);
    assert!(out.contains("Seccomp:\t2"), "{out}");
}

#[test]
fn many_threads_start_containers_at_once() {
    let fs = rootfs!();
    let root = fs.path().to_path_buf();
    // Another thread allocating all the time: if a child allocated after clone it would, now
    // and then, find malloc's lock held by this thread's copy and hang.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v: Vec<u64> = (0..64).collect();
                n = n.wrapping_add(v.iter().sum::<u64>());
            }
            n
        })
    };
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let root = root.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut outs = Vec::new();
                for round in 0..3 {
                    outs.push(run_ok(&sh(&root, &format!("echo container-{i}-{round}"))));
                }
                (outs, started.elapsed())
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let (outs, took) = t.join().unwrap();
        for (round, out) in outs.iter().enumerate() {
            assert_eq!(*out, format!("container-{i}-{round}\n"));
        }
        // Each stdout reached EOF promptly: no other container's init held it open.
        assert!(took < Duration::from_secs(30), "thread {i} took {took:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
}

/// Run in a process of its own by [`no_fd_or_cwd_or_zombie_leak`] (other tests open and
/// close descriptors concurrently in this one).
#[test]
#[ignore = "run by no_fd_or_cwd_or_zombie_leak in a separate process"]
fn leak_probe() {
    if std::env::var_os("KILN_SANDBOX_LEAK_PROBE").is_none() {
        return;
    }
    let fs = rootfs!();
    let s = spec(fs.path(), &["true"]);
    let count_fds = || fs_err::read_dir("/proc/self/fd").unwrap().count();
    let cwd = std::env::current_dir().unwrap();
    run_ok(&s); // warm up lazily opened descriptors
    let before = count_fds();
    for _ in 0..50 {
        run_ok(&s);
    }
    // A container dropped without `wait` is killed and reaped too.
    let sleeper = spec(fs.path(), &["sleep", "1000"]);
    let c = sandbox::start(
        &Backend::Embedded,
        "probe",
        &sleeper,
        StdioConfig::default(),
    )
    .unwrap();
    drop(c);
    assert_eq!(count_fds(), before, "descriptors leaked");
    assert_eq!(std::env::current_dir().unwrap(), cwd);
    let mut children = String::new();
    for task in fs_err::read_dir("/proc/self/task").unwrap() {
        children.push_str(&fs_err::read_to_string(task.unwrap().path().join("children")).unwrap());
    }
    assert_eq!(children.trim(), "", "children left (zombies?)");
}

#[test]
fn no_fd_or_cwd_or_zombie_leak() {
    skip_unless!(harness::root_required());
    let _probe_fs = skip_unless!(busybox_rootfs());
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "sandbox::leak_probe",
            "--ignored",
            "--test-threads=1",
        ])
        .env("KILN_SANDBOX_LEAK_PROBE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// Start-to-exit time of `/bin/true` (`cargo test --release --test it sandbox::startup_time
/// -- --ignored --nocapture`): prints the median of 100 runs of a few specs, to show what the
/// time goes to.
#[test]
#[ignore = "benchmark"]
#[allow(clippy::print_stderr)]
fn startup_time() {
    let fs = rootfs!();
    let docker_like = spec(fs.path(), &["/bin/true"]);
    let mut no_netns = docker_like.clone();
    let linux = no_netns.linux_mut().as_mut().unwrap();
    let ns: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap()
        .into_iter()
        .filter(|n| n.typ() != LinuxNamespaceType::Network)
        .collect();
    linux.set_namespaces(Some(ns));
    let mut minimal = no_netns.clone();
    minimal.set_mounts(Some(get_default_mounts().into_iter().take(2).collect()));
    let linux = minimal.linux_mut().as_mut().unwrap();
    linux.set_masked_paths(None);
    linux.set_readonly_paths(None);
    let id = unique_id("bench");
    let built = built_spec(fs.path(), "true", &id, sandbox::spec::CgroupNamespace::Host);
    let mut built_true = built.clone();
    built_true
        .process_mut()
        .as_mut()
        .unwrap()
        .set_args(Some(vec!["/bin/true".into()]));
    let mut built_no_cgroup = built_true.clone();
    let linux = built_no_cgroup.linux_mut().as_mut().unwrap();
    linux.set_resources(None);
    linux.set_cgroups_path(None);
    let mut built_no_seccomp = built_true.clone();
    built_no_seccomp
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_seccomp(None);
    for (name, s) in [
        ("spec::build (cgroup, seccomp, Docker mounts)", &built_true),
        ("  same without the cgroup", &built_no_cgroup),
        ("  same without seccomp", &built_no_seccomp),
        ("Docker-like, no cgroup, no seccomp", &docker_like),
        ("  same without a network namespace", &no_netns),
        ("  only /proc and /dev, no masked/readonly paths", &minimal),
    ] {
        let mut times = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            let mut c = sandbox::start(&Backend::Embedded, &id, s, StdioConfig::default())
                .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
            assert_eq!(c.wait().unwrap(), ExitStatus::Code(0));
            times.push(t.elapsed());
        }
        times.sort();
        eprintln!(
            "{name}: /bin/true start-to-exit, 100 runs: median {:?}, min {:?}, p90 {:?}",
            times[50], times[0], times[90]
        );
    }
}

/// A container id no other test (or test process) uses: it names the container's cgroup.
fn unique_id(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// The spec the solver runs (`sandbox::spec::build`: Docker's mounts, masked paths,
/// capabilities, seccomp profile, device rules) with a pids limit, in its own cgroup.
fn built_spec(
    root: &Path,
    script: &str,
    id: &str,
    cgroupns: sandbox::spec::CgroupNamespace,
) -> Spec {
    let cfg = sandbox::spec::SandboxConfig {
        rootfs: root.to_path_buf(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        resources: Some(
            oci_spec::runtime::LinuxResourcesBuilder::default()
                .pids(
                    oci_spec::runtime::LinuxPidsBuilder::default()
                        .limit(64i64)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        ),
        cgroups_path: Some(format!("kiln-it/{id}")),
        cgroup_namespace: cgroupns,
        ..Default::default()
    };
    sandbox::spec::build(&cfg).unwrap()
}

fn run_with_id(spec: &Spec, id: &str) -> Output {
    let stdio = StdioConfig {
        stdout: Stdio::Pipe,
        stderr: Stdio::Inherit,
        ..StdioConfig::default()
    };
    let mut c = sandbox::start(&Backend::Embedded, id, spec, stdio)
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let mut stdout = String::new();
    c.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let status = c.wait().unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    Output {
        status,
        stdout,
        stderr: String::new(),
    }
}

const CGROUP_SCRIPT: &str = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
     grep -E '^(CapEff|Seccomp):' /proc/self/status; grep -E '^[0-9]+:(pids)?:' /proc/self/cgroup";

#[test]
fn the_spec_builders_spec_runs_in_its_cgroup() {
    let fs = rootfs!();
    skip_unless!(harness::require(
        sandbox::cgroup::layout() != sandbox::cgroup::Layout::None,
        "no cgroup filesystem mounted"
    ));
    let id = unique_id("it-cg");
    let s = built_spec(
        fs.path(),
        CGROUP_SCRIPT,
        &id,
        sandbox::spec::CgroupNamespace::Host,
    );
    let out = run_with_id(&s, &id);
    assert_eq!(out.status, ExitStatus::Code(0), "{out:?}");
    let mut lines = out.stdout.lines();
    // /sys/fs/cgroup shows the container's own cgroup (a bind of it without a cgroup namespace).
    assert_eq!(lines.next(), Some("64"), "{}", out.stdout);
    assert_eq!(
        lines.next(),
        Some("CapEff:\t00000000a80425fb"),
        "{}",
        out.stdout
    );
    assert_eq!(lines.next(), Some("Seccomp:\t2"), "{}", out.stdout);
    // Without a cgroup namespace the process sees its host cgroup path...
    let line = lines.next().unwrap();
    let path = line.splitn(3, ':').nth(2).unwrap();
    assert!(path.ends_with(&format!("kiln-it/{id}")), "{}", out.stdout);
    // ... which is gone once `wait` returned.
    let version_dir = if line.starts_with("0::") { "" } else { "pids" };
    let host_dir = Path::new("/sys/fs/cgroup")
        .join(version_dir)
        .join(path.trim_start_matches('/'));
    assert!(!host_dir.exists(), "{} left behind", host_dir.display());
}

#[test]
fn with_a_cgroup_namespace_the_container_cgroup_is_the_root() {
    let fs = rootfs!();
    skip_unless!(harness::require(
        sandbox::cgroup::layout() != sandbox::cgroup::Layout::None,
        "no cgroup filesystem mounted"
    ));
    let id = unique_id("it-cgns");
    let s = built_spec(
        fs.path(),
        CGROUP_SCRIPT,
        &id,
        sandbox::spec::CgroupNamespace::Private,
    );
    let out = run_with_id(&s, &id);
    assert_eq!(out.status, ExitStatus::Code(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"64"), "{}", out.stdout);
    assert!(
        lines.last().is_some_and(|l| l.ends_with(":/")),
        "{}",
        out.stdout
    );
}

/// Issue [D] point 4, on the spec the solver runs (`spec::build`: Docker's capabilities,
/// seccomp profile, masked and read-only paths): no host processes, no mount, no module
/// loading, no /proc/sys writes, EPERM from a syscall the profile blocks, no writes outside the
/// rootfs.
#[test]
fn the_solvers_spec_is_as_confined_as_dockers_default() {
    let fs = rootfs!();
    let id = unique_id("it-sec");
    let script = "\
        echo procs=$(ls -d /proc/[0-9]* | wc -l); \
        mount -t tmpfs none /mnt 2>/dev/null && echo mounted; \
        echo x > /tmp/m.ko; insmod /tmp/m.ko 2>&1 | grep -q 'not permitted' && echo insmod-eperm; \
        (echo 1 > /proc/sys/kernel/ostype) 2>/dev/null || echo procsys-ro; \
        unshare -U true 2>&1 | grep -q 'not permitted' && echo unshare-eperm; \
        echo escaped > /../../../escaped-by-kiln-test; \
        grep -E '^(CapEff|Seccomp):' /proc/self/status";
    let s = built_spec(fs.path(), script, &id, sandbox::spec::CgroupNamespace::Host);
    let out = run_with_id(&s, &id);
    assert_eq!(out.status, ExitStatus::Code(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    // sh, ls's subshell and the init: a handful, never the host's hundreds.
    let procs: usize = lines[0]
        .strip_prefix("procs=")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(procs <= 5, "{}", out.stdout);
    for expected in [
        "insmod-eperm",
        "procsys-ro",
        "unshare-eperm",
        "CapEff:\t00000000a80425fb",
        "Seccomp:\t2",
    ] {
        assert!(lines.contains(&expected), "{expected} in {}", out.stdout);
    }
    assert!(!lines.contains(&"mounted"), "{}", out.stdout);
    // `/..` is the rootfs itself: the write landed inside it, not on the host.
    assert!(!Path::new("/escaped-by-kiln-test").exists());
    assert!(fs.path().join("escaped-by-kiln-test").exists());
}

/// Runs `script` under `built_spec`'s pids limit (64) for two seconds, then kills the
/// container; returns the highest `pids.current` seen from the host.
fn pids_seen_under_the_limit(fs: &Path, prefix: &str, script: &str) -> u64 {
    let id = unique_id(prefix);
    let s = built_spec(fs, script, &id, sandbox::spec::CgroupNamespace::Host);
    let mut c = sandbox::start(&Backend::Embedded, &id, &s, StdioConfig::default())
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let current = Path::new("/sys/fs/cgroup/pids/kiln-it")
        .join(&id)
        .join("pids.current");
    let mut max_seen = 0u64;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Ok(v) = fs_err::read_to_string(&current) {
            max_seen = max_seen.max(v.trim().parse().unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The script may have ended already (busybox sh exits when a fork fails).
    let _ = c.signal(libc::SIGKILL);
    c.wait().unwrap();
    assert!(!current.exists(), "the cgroup is removed after wait");
    max_seen
}

/// A fork bomb under a pids limit stays under the limit, and killing the container ends it.
/// A bounded burst (150 sleeps) first proves the limit holds, so the real bomb never runs
/// unconfined.
#[test]
fn a_fork_bomb_is_contained_by_the_pids_limit() {
    let fs = rootfs!();
    skip_unless!(harness::require(
        sandbox::cgroup::layout() == sandbox::cgroup::Layout::Hybrid
            || sandbox::cgroup::layout() == sandbox::cgroup::Layout::V1,
        "the test reads pids.current from the v1 pids hierarchy"
    ));
    // The inner shell dies at the first failed fork; its sleeps stay (reparented to the init)
    // and the outer shell waits without forking.
    let burst = "sh -c 'i=0; while [ $i -lt 150 ]; do sleep 30 & i=$((i+1)); done' 2>/dev/null; \
                 exec sleep 5";
    let seen = pids_seen_under_the_limit(fs.path(), "it-burst", burst);
    assert!(
        (50..=64).contains(&seen),
        "150 forks under pids.max=64: {seen}"
    );
    let seen = pids_seen_under_the_limit(fs.path(), "it-bomb", "b() { b | b & }; b");
    assert!(
        (1..=64).contains(&seen),
        "fork bomb under pids.max=64: {seen}"
    );
}

/// kiln ignores SIGPIPE (Rust's runtime does) and the test harness may block signals: none of
/// that reaches the container's process.
#[test]
fn signal_dispositions_and_mask_are_reset() {
    let fs = rootfs!();
    // Block and ignore a few signals in this thread for the duration of the start.
    // SAFETY: plain signal-mask and disposition calls on this thread / process.
    let old_usr2 = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGUSR2, libc::SIG_IGN)
    };
    // Exec form: the process itself, no shell in between.
    let out = run_ok(&spec(
        fs.path(),
        &["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"],
    ));
    // SAFETY: restoring what was changed above.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGUSR2, old_usr2);
    }
    assert!(
        out.lines().any(|l| l == "SigBlk:\t0000000000000000"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l == "SigIgn:\t0000000000000000"),
        "{out}"
    );
}

/// Output reaches the caller while the process still runs (no buffering until exit).
#[test]
fn output_is_streamed_live() {
    let fs = rootfs!();
    let s = sh(fs.path(), "echo first; sleep 3; echo second");
    let stdio = StdioConfig {
        stdout: Stdio::Pipe,
        ..StdioConfig::default()
    };
    let started = Instant::now();
    let mut c = sandbox::start(&Backend::Embedded, "it-live", &s, stdio).unwrap();
    let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "first");
    let first_at = started.elapsed();
    assert!(
        first_at < Duration::from_secs(2),
        "the first line arrived after {first_at:?}"
    );
    assert_eq!(lines.next().unwrap().unwrap(), "second");
    assert_eq!(c.wait().unwrap(), ExitStatus::Code(0));
}
