//! The embedded runtime with a user namespace (rootless mode): as root with a shifted map
//! (`0 100000 65536`), and as an unprivileged user (uid 65534, `nobody`) mapping container root
//! onto itself.
//!
//! How the unprivileged case runs: the test (as root) prepares a busybox rootfs owned by
//! 65534, then re-executes this test binary with `setpriv --reuid=65534 --regid=65534
//! --clear-groups` (util-linux) to run only the `#[ignore]`d [`unprivileged_child`] test, which
//! starts the container with `kiln::sandbox` as that user and writes the container's output to
//! a file; the parent checks that output and the host side (file owners, no leaked mount). The
//! child test does nothing (it reports a skip) when run without the parent.
//!
//! Every test skips with a printed reason without root, `setpriv`, busybox-static, or user
//! namespaces (`user.max_user_namespaces` = 0, Debian's
//! `kernel.unprivileged_userns_clone` = 0, Ubuntu's AppArmor restriction).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::sandbox::spec::{self, Network, SandboxConfig, SeccompPolicy, UserNamespace};
use kiln::sandbox::{self, Backend, ExitStatus, Spec, Stdio, StdioConfig};
use oci_spec::runtime::{Capability, Mount, MountBuilder};

use crate::harness::rootfs::busybox_rootfs;
use crate::harness::{self, Skip, skip_unless};

/// Container root on the host in the privileged tests.
const SHIFT: u32 = 100_000;
/// The unprivileged user.
const NOBODY: u32 = 65_534;
/// Set for the re-executed child: the scratch directory holding `rootfs`, `shared`, `hostroot`.
const CHILD_ENV: &str = "KILN_USERNS_CHILD";

fn read_sysctl(path: &str) -> Option<i64> {
    fs_err::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether this kernel lets us (as root, or as an unprivileged user) create user namespaces.
fn userns_supported(unprivileged: bool) -> Result<(), Skip> {
    if !Path::new("/proc/self/ns/user").exists() {
        return Err(Skip::new("the kernel has no user namespaces"));
    }
    if read_sysctl("/proc/sys/user/max_user_namespaces") == Some(0) {
        return Err(Skip::new(
            "user namespaces are disabled (user.max_user_namespaces = 0)",
        ));
    }
    if unprivileged {
        if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
            return Err(Skip::new(
                "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)",
            ));
        }
        if read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
            return Err(Skip::new(
                "AppArmor restricts unprivileged user namespaces \
                 (kernel.apparmor_restrict_unprivileged_userns = 1)",
            ));
        }
    }
    Ok(())
}

/// `chown -hR` shifting every owner by `offset` (what a rootless unpack does).
fn shift_ownership(path: &Path, offset: u32) {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs_err::symlink_metadata(path).unwrap();
    std::os::unix::fs::lchown(path, Some(meta.uid() + offset), Some(meta.gid() + offset))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", path.display()));
    if meta.is_dir() {
        for entry in fs_err::read_dir(path).unwrap() {
            shift_ownership(&entry.unwrap().path(), offset);
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn bind(source: &Path, dest: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap()
}

/// The scratch layout both cases use: `rootfs` (with `/shared` and `/hostroot` mount points and
/// an empty `/mnt`), `shared` (bound read-write at `/shared`, owned by `root_on_host`) and
/// `hostroot` (a file owned by real root, bound at `/hostroot`). Everything is reachable by
/// `root_on_host` (the temp dir is 0700 by default).
fn prepare(scratch: &Path, rootfs: &Path, root_on_host: u32) {
    for d in ["shared", "mnt"] {
        fs_err::create_dir(rootfs.join(d)).unwrap();
    }
    fs_err::write(rootfs.join("hostroot"), "").unwrap();
    shift_ownership(rootfs, root_on_host);
    let shared = scratch.join("shared");
    fs_err::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(root_on_host), Some(root_on_host)).unwrap();
    fs_err::write(scratch.join("hostroot"), "owned by real root\n").unwrap();
    chmod(scratch, 0o755);
}

/// Docker's defaults (spec builder) in a user namespace, plus `CAP_SYS_ADMIN` (for the tmpfs
/// mount), with `/proc/sys` left writable as far as mounts go (so a refused write shows the
/// user namespace at work) and the two binds.
fn userns_spec(
    scratch: &Path,
    script: &str,
    user_namespace: UserNamespace,
    network: Network,
) -> Spec {
    let mut capabilities = spec::DEFAULT_CAPABILITIES.to_vec();
    capabilities.push(Capability::SysAdmin);
    let cfg = SandboxConfig {
        rootfs: scratch.join("rootfs"),
        args: vec!["sh".into(), "-c".into(), script.into()],
        hostname: "userns".into(),
        network,
        mounts: vec![
            bind(&scratch.join("shared"), "/shared", &["rbind", "rw"]),
            bind(&scratch.join("hostroot"), "/hostroot", &["bind", "ro"]),
        ],
        capabilities,
        seccomp: SeccompPolicy::DockerDefault,
        user_namespace,
        ..SandboxConfig::default()
    };
    let mut spec = spec::build(&cfg).unwrap();
    if let Some(linux) = spec.linux_mut() {
        linux.set_readonly_paths(None);
    }
    spec
}

/// What every user namespace container reports (one `key=value` per line).
const PROBE: &str = r#"
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
echo made > /shared/made-inside && echo made=ok
echo "hostroot=$(stat -c %u:%g /hostroot)"
echo "rootdir=$(stat -c %u:%g /)"
echo "devnull=$(stat -c '%u:%g %F %t:%T' /dev/null)"
v=$(cat /proc/sys/vm/swappiness)
if (echo "$v" > /proc/sys/vm/swappiness) 2>/dev/null; then echo sysctl=written; else echo sysctl=refused; fi
mount -t tmpfs tmpfs /mnt && echo inside > /mnt/f && echo "tmpfs=$(grep -c ' /mnt ' /proc/self/mountinfo)"
echo "hostname=$(hostname)"
echo "caps=$(grep CapEff /proc/self/status | cut -f2)"
echo "net=$(ls /sys/class/net | tr '\n' ' ')"
echo "sys=$(grep ' /sys ' /proc/self/mountinfo | cut -d' ' -f6 | cut -d, -f1)"
echo "cgroupfs=$(ls /sys/fs/cgroup | wc -l)"
echo "setgroups=$(cat /proc/self/setgroups)"
echo "uidmap=$(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //')"
echo "gidmap=$(cat /proc/self/gid_map | tr -s ' ' | sed 's/^ //')"
"#;

#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    // Shown (through `Debug`) by failing assertions.
    #[allow(dead_code)]
    stderr: String,
}

impl Output {
    /// The value of `key=` in the probe's output.
    fn get(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {key}= in {self:?}"))
            .trim()
    }
}

fn run(spec: &Spec, id: &str) -> Result<Output, String> {
    let stdio = StdioConfig {
        stdin: Stdio::Null,
        stdout: Stdio::Pipe,
        stderr: Stdio::Pipe,
    };
    let mut c = sandbox::start(&Backend::Embedded, id, spec, stdio).map_err(|e| chain(&e))?;
    let mut err = c.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    c.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .map_err(|e| e.to_string())?;
    let status = c.wait().map_err(|e| chain(&e))?;
    Ok(Output {
        status,
        stdout,
        stderr: reader.join().unwrap(),
    })
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn owner(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    let m = fs_err::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// Nothing is mounted at or below `dir` in the caller's mount namespace.
fn no_host_mount_below(dir: &Path) -> bool {
    let info = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy();
    !info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp.starts_with(dir.as_ref()))
}

/// The checks both cases share: root inside, files made inside owned by `root_on_host`
/// outside, host root's files seen as nobody, `/proc/sys` refused, a tmpfs mount that works
/// and stays inside, devices that are the host's nodes.
fn check_probe(out: &Output, scratch: &Path, root_on_host: u32, groups: &str) {
    let shift = if root_on_host == NOBODY {
        format!("0 {NOBODY} 1")
    } else {
        format!("0 {root_on_host} 65536")
    };
    assert_eq!(out.get("uidmap"), shift, "{out:?}");
    assert_eq!(out.get("gidmap"), shift, "{out:?}");
    assert_eq!(out.status, ExitStatus::Code(0), "{out:?}");
    assert_eq!(
        out.get("uid"),
        format!("0 gid=0 groups={groups}"),
        "{out:?}"
    );
    assert_eq!(out.get("made"), "ok", "{out:?}");
    let made = scratch.join("shared/made-inside");
    assert_eq!(owner(&made), (root_on_host, root_on_host), "{out:?}");
    assert_eq!(out.get("hostroot"), "65534:65534", "{out:?}");
    assert_eq!(out.get("rootdir"), "0:0", "{out:?}");
    // The host's /dev/null, bind-mounted (a mknod'ed node would be root's inside).
    assert_eq!(
        out.get("devnull"),
        "65534:65534 character special file 1:3",
        "{out:?}"
    );
    assert_eq!(out.get("sysctl"), "refused", "{out:?}");
    assert_eq!(out.get("tmpfs"), "1", "{out:?}");
    assert_eq!(out.get("hostname"), "userns", "{out:?}");
    // Docker's set plus CAP_SYS_ADMIN, relative to the user namespace.
    assert_eq!(out.get("caps"), "00000000a82425fb", "{out:?}");
    assert_ne!(out.get("cgroupfs"), "0", "{out:?}");
    let rootfs = scratch.join("rootfs");
    assert!(no_host_mount_below(&rootfs), "a container mount leaked");
    assert_eq!(fs_err::read_dir(rootfs.join("mnt")).unwrap().count(), 0);
}

fn unique_id(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

#[test]
fn root_with_a_shifted_map() {
    skip_unless!(harness::root_required());
    skip_unless!(userns_supported(false));
    let fs = skip_unless!(busybox_rootfs());
    let scratch = fs.scratch();
    prepare(scratch, fs.path(), SHIFT);
    let spec = userns_spec(
        scratch,
        PROBE,
        UserNamespace::shifted(SHIFT, 65_536),
        Network::Private,
    );
    let out = run(&spec, &unique_id("userns-root")).unwrap_or_else(|e| panic!("{e}"));
    check_probe(&out, scratch, SHIFT, "0");
    // A privileged caller leaves setgroups allowed.
    assert_eq!(out.get("setgroups"), "allow", "{out:?}");
    // A new network namespace owned by the user namespace: a fresh sysfs shows only its lo.
    assert_eq!(out.get("net"), "lo", "{out:?}");
    assert_eq!(out.get("sys"), "ro", "{out:?}");
}

#[test]
fn without_a_network_namespace_sys_is_a_readonly_bind_of_the_hosts() {
    skip_unless!(harness::root_required());
    skip_unless!(userns_supported(false));
    let fs = skip_unless!(busybox_rootfs());
    let scratch = fs.scratch();
    prepare(scratch, fs.path(), SHIFT);
    let spec = userns_spec(
        scratch,
        PROBE,
        UserNamespace::shifted(SHIFT, 65_536),
        Network::Host,
    );
    let out = run(&spec, &unique_id("userns-hostnet")).unwrap_or_else(|e| panic!("{e}"));
    check_probe(&out, scratch, SHIFT, "0");
    let host_net: Vec<String> = fs_err::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(host_net.len() > 1, "{host_net:?}");
    for dev in &host_net {
        assert!(
            out.get("net").split(' ').any(|d| d == dev),
            "{dev}: {out:?}"
        );
    }
    assert_eq!(out.get("sys"), "ro", "{out:?}");
}

#[test]
fn unmapped_ids_and_maps_without_a_user_namespace_are_refused() {
    skip_unless!(harness::root_required());
    skip_unless!(userns_supported(false));
    let fs = skip_unless!(busybox_rootfs());
    let scratch = fs.scratch();
    prepare(scratch, fs.path(), SHIFT);
    // A process uid the map leaves out cannot be taken.
    let mut spec = userns_spec(
        scratch,
        "true",
        UserNamespace::shifted(SHIFT, 1000),
        Network::Private,
    );
    let user = oci_spec::runtime::UserBuilder::default()
        .uid(5000u32)
        .gid(0u32)
        .build()
        .unwrap();
    spec.process_mut().as_mut().unwrap().set_user(user);
    let err = run(&spec, &unique_id("userns-unmapped")).unwrap_err();
    assert!(err.contains("setting uid 5000"), "{err}");
    // Maps without a user namespace are a spec error, before anything starts.
    let mut spec = userns_spec(scratch, "true", UserNamespace::Host, Network::Private);
    let maps = spec::build(&SandboxConfig {
        rootfs: scratch.join("rootfs"),
        args: vec!["true".into()],
        user_namespace: UserNamespace::shifted(SHIFT, 1000),
        ..SandboxConfig::default()
    })
    .unwrap();
    let linux = spec.linux_mut().as_mut().unwrap();
    linux.set_uid_mappings(maps.linux().as_ref().unwrap().uid_mappings().clone());
    let err = run(&spec, &unique_id("userns-nomaps")).unwrap_err();
    assert!(err.contains("no new user namespace"), "{err}");
}

/// The unprivileged case: see the module docs.
#[test]
fn an_unprivileged_user_runs_a_rootless_container() {
    skip_unless!(harness::root_required());
    skip_unless!(userns_supported(true));
    let setpriv = skip_unless!(harness::which("setpriv"));
    let fs = skip_unless!(busybox_rootfs());
    let scratch = fs.scratch();
    prepare(scratch, fs.path(), NOBODY);
    // The child writes its report next to the rootfs.
    std::os::unix::fs::chown(scratch, Some(NOBODY), Some(NOBODY)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .arg(&exe)
        .args([
            "sandbox_userns::unprivileged_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, scratch)
        .env_remove("KILN_TEST_NO_SKIP")
        .output()
        .unwrap();
    let log = format!(
        "child: {}\n{}\n{}",
        child.status,
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(child.status.success(), "{log}");
    let report =
        fs_err::read_to_string(scratch.join("report")).unwrap_or_else(|e| panic!("{e}\n{log}"));
    let (status, stdout) = report.split_once('\n').unwrap();
    let out = Output {
        status: ExitStatus::Code(status.parse().unwrap()),
        stdout: stdout.to_owned(),
        stderr: log,
    };
    // setgroups is denied when mapping a single id: root's only group is 0.
    check_probe(&out, scratch, NOBODY, "0");
    assert_eq!(out.get("setgroups"), "deny", "{out:?}");
    assert_eq!(out.get("net"), "lo", "{out:?}");
}

/// Runs only when re-executed by [`an_unprivileged_user_runs_a_rootless_container`] (as uid
/// 65534): starts the probe container mapping root onto itself and writes `report` (the exit
/// code, then the container's stdout).
#[test]
#[ignore = "helper of an_unprivileged_user_runs_a_rootless_container"]
fn unprivileged_child() {
    let Some(scratch) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        harness::report_skip(&Skip::new(format!(
            "only runs as the helper of an_unprivileged_user_runs_a_rootless_container ({CHILD_ENV} unset)"
        )));
        return;
    };
    assert_eq!(rustix::process::geteuid().as_raw(), NOBODY);
    let spec = userns_spec(
        &scratch,
        PROBE,
        UserNamespace::map_root_to_caller(),
        Network::Private,
    );
    let out = run(&spec, &unique_id("userns-nobody")).unwrap_or_else(|e| panic!("{e}"));
    let code = match out.status {
        ExitStatus::Code(c) => c,
        ExitStatus::Signal(s) => 128 + s,
    };
    fs_err::write(scratch.join("report"), format!("{code}\n{}", out.stdout)).unwrap();
    assert_eq!(out.status, ExitStatus::Code(0), "{out:?}");
}

/// Container A makes a user namespace (shifted map); container B joins it by path with its
/// own pid, mount, ... namespaces: B sees A's maps, is root there, and its mounts work; its
/// init (behind a relay process) forwards signals and dies with the relay.
#[test]
fn a_user_namespace_is_joined_by_path() {
    skip_unless!(harness::root_required());
    skip_unless!(userns_supported(false));
    let fs_a = skip_unless!(busybox_rootfs());
    let fs_b = skip_unless!(busybox_rootfs());
    prepare(fs_a.scratch(), fs_a.path(), SHIFT);
    prepare(fs_b.scratch(), fs_b.path(), SHIFT);
    let holder_spec = userns_spec(
        fs_a.scratch(),
        "read line || true",
        UserNamespace::shifted(SHIFT, 65_536),
        Network::Private,
    );
    let stdio = StdioConfig {
        stdin: Stdio::Pipe,
        ..StdioConfig::default()
    };
    let mut holder = sandbox::start(
        &Backend::Embedded,
        &unique_id("userns-holder"),
        &holder_spec,
        stdio,
    )
    .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let ns = PathBuf::from(format!("/proc/{}/ns/user", holder.pid()));
    let join = || UserNamespace::Join(ns.clone());

    let script = format!("{PROBE}\necho \"mypid=$$\"\n");
    let spec = userns_spec(fs_b.scratch(), &script, join(), Network::Private);
    let out = run(&spec, &unique_id("userns-join")).unwrap_or_else(|e| panic!("{e}"));
    check_probe(&out, fs_b.scratch(), SHIFT, "0");
    assert_eq!(out.get("setgroups"), "allow", "{out:?}");
    assert_eq!(out.get("net"), "lo", "{out:?}");
    // PID 1 is the init, the process comes next.
    assert_eq!(out.get("mypid"), "2", "{out:?}");

    // Signals reach the process through the relay, and its exit code comes back.
    let spec = userns_spec(
        fs_b.scratch(),
        "trap 'exit 7' TERM; echo ready; while :; do sleep 1; done",
        join(),
        Network::Private,
    );
    let stdio = StdioConfig {
        stdout: Stdio::Pipe,
        ..StdioConfig::default()
    };
    let mut c = sandbox::start(&Backend::Embedded, &unique_id("userns-sig"), &spec, stdio)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let mut ready = [0u8; 6];
    c.stdout.as_mut().unwrap().read_exact(&mut ready).unwrap();
    c.signal(libc::SIGTERM).unwrap();
    assert_eq!(c.wait().unwrap(), ExitStatus::Code(7));

    // SIGKILL to the relay ends the container (the init dies with it, and the rest with it).
    let spec = userns_spec(
        fs_b.scratch(),
        "echo ready; sleep 100",
        join(),
        Network::Private,
    );
    let stdio = StdioConfig {
        stdout: Stdio::Pipe,
        ..StdioConfig::default()
    };
    let mut c = sandbox::start(&Backend::Embedded, &unique_id("userns-kill"), &spec, stdio)
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let mut stdout = c.stdout.take().unwrap();
    stdout.read_exact(&mut ready).unwrap();
    c.signal(libc::SIGKILL).unwrap();
    assert_eq!(c.wait().unwrap(), ExitStatus::Signal(libc::SIGKILL));
    // Every holder of the pipe (the sleep included) is gone.
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();

    drop(holder.stdin.take());
    assert_eq!(holder.wait().unwrap(), ExitStatus::Code(0));
}
