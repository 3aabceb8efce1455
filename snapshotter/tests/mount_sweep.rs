//! The stale-mount sweep, for real: mounts left on mountpoints named for a process that is gone
//! are detached and their directories removed; a live owner's mount and directories kiln did
//! not name stay. Needs root (it mounts tmpfs); skipped with a message otherwise.

#![allow(clippy::print_stderr)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{MountFlags, UnmountFlags};
use snapshotter::snapshot::{mountpoint_in, sweep_stale_mounts};

fn skip(reason: &str) {
    // libtest captures eprintln! of passing tests; a skip must be visible without --nocapture.
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIP stale_mounts_of_dead_owners_are_swept: {reason}"
    );
}

/// Mounts made by the test, detached on drop whatever happened.
struct Mounted(Vec<PathBuf>);

impl Drop for Mounted {
    fn drop(&mut self) {
        for path in self.0.iter().rev() {
            let _ = rustix::mount::unmount(path, UnmountFlags::DETACH);
        }
    }
}

fn mount_tmpfs(at: &Path, mounted: &mut Mounted) {
    rustix::mount::mount("tmpfs", at, "tmpfs", MountFlags::empty(), c"size=1m")
        .unwrap_or_else(|e| panic!("mount tmpfs at {}: {e}", at.display()));
    mounted.0.push(at.to_owned());
}

/// How many times `path` is a mount point in this mount namespace.
fn mount_count(path: &Path) -> usize {
    let text = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_str().unwrap();
    text.lines()
        .filter(|line| line.split(' ').nth(4) == Some(want))
        .count()
}

/// The pid and start time (clock ticks) of a process that has exited and been reaped.
fn dead_process() -> (u32, u64) {
    let mut child = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
    let start: u64 = after_comm
        .split_whitespace()
        .nth(22 - 3)
        .unwrap()
        .parse()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    (pid, start)
}

#[test]
fn stale_mounts_of_dead_owners_are_swept() {
    if !rustix::process::geteuid().is_root() {
        skip("needs root to mount tmpfs");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().canonicalize().unwrap().join("mnt");
    fs_err::create_dir_all(&mnt).unwrap();
    let mut mounted = Mounted(Vec::new());

    // A killed kiln: its mountpoint, mounted twice over, with a mount nested inside.
    let (pid, start) = dead_process();
    let dead = mnt.join(format!("rootfs-{pid}-{start}-0"));
    fs_err::create_dir(&dead).unwrap();
    mount_tmpfs(&dead, &mut mounted);
    mount_tmpfs(&dead, &mut mounted);
    let nested = dead.join("proc");
    fs_err::create_dir(&nested).unwrap();
    mount_tmpfs(&nested, &mut mounted);
    // Same pid, another start time: a process that merely reused the pid is not the owner.
    let me = std::process::id();
    let my_start = {
        let stat = fs_err::read_to_string("/proc/self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
        after_comm
            .split_whitespace()
            .nth(22 - 3)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let reused = mnt.join(format!("rootfs-{me}-{}-0", my_start + 1));
    fs_err::create_dir(&reused).unwrap();
    mount_tmpfs(&reused, &mut mounted);
    // An unmounted leftover directory of a dead owner.
    let leftover = mnt.join(format!("rootfs-{pid}-{start}-1"));
    fs_err::create_dir(&leftover).unwrap();

    // A live owner (this process) and a name kiln did not make: both stay.
    let live = mountpoint_in(&mnt).unwrap();
    mount_tmpfs(live.path(), &mut mounted);
    let foreign = mnt.join("rootfs-abc123");
    fs_err::create_dir(&foreign).unwrap();
    mount_tmpfs(&foreign, &mut mounted);

    assert_eq!(mount_count(&dead), 2);
    assert_eq!(mount_count(&nested), 1);
    let report = sweep_stale_mounts(&mnt).unwrap();

    assert_eq!(mount_count(&dead), 0, "{report:?}");
    assert_eq!(mount_count(&nested), 0, "{report:?}");
    assert_eq!(mount_count(&reused), 0, "{report:?}");
    assert!(!dead.exists() && !reused.exists() && !leftover.exists());
    assert_eq!(mount_count(live.path()), 1);
    assert_eq!(mount_count(&foreign), 1);
    assert!(live.path().is_dir() && foreign.is_dir());
    assert_eq!(report.unmounted[0], nested, "deepest first: {report:?}");
    for path in [&dead, &reused, &leftover] {
        assert!(report.removed.contains(path), "{path:?} in {report:?}");
    }

    // Sweeping again finds nothing; a missing directory is an empty sweep.
    let again = sweep_stale_mounts(&mnt).unwrap();
    assert!(again.unmounted.is_empty() && again.removed.is_empty());
    assert!(
        sweep_stale_mounts(&tmp.path().join("missing"))
            .unwrap()
            .unmounted
            .is_empty()
    );

    let live_path = live.path().to_owned();
    drop(mounted);
    drop(live);
    assert!(!live_path.exists());
}
