//! One snapshotter conformance suite, run against every storage driver (containerd's
//! `snapshots/testsuite` idea): each case in `cases` is instantiated once per driver by the
//! `conformance!` macro, as `overlay::<case>` and `copy::<case>`.
//!
//! The suite mounts, so it needs root; the overlay driver also needs overlayfs on the temp
//! directory's filesystem. When a requirement is missing a case prints `SKIP <test>: <reason>` to
//! stderr and returns, never passing silently. Mounts are held by guards and temp directories by
//! `TempDir`, so both are cleaned up on panic too.

use std::fs::Permissions;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use snapshotter::snapshot::{
    self, ActiveKey, Changes, CommittedName, Kind, LocalSnapshotter, MountGuard, Mounts,
    OverlayApi, SnapshotError, SnapshotName, Snapshotter, StorageDriver,
};
use snapshotter::{ChainId, DiffId, Digest};

/// Environment variables that turn `crash_helper_subprocess` into the crashing process.
const HELPER_ROOT: &str = "KILN_SNAPSHOT_CRASH_HELPER_ROOT";
const HELPER_DRIVER: &str = "KILN_SNAPSHOT_CRASH_HELPER_DRIVER";

struct Fixture {
    sn: LocalSnapshotter,
    root: PathBuf,
    mount_count: AtomicU32,
    // Dropped last: removes every file once all guards have unmounted.
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A fresh store for `driver`, or `None` after printing why this test cannot run here.
    fn new(driver: StorageDriver, test: &str) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            skip(test, "needs root to mount snapshots");
            return None;
        }
        let dir = tempfile::tempdir().expect("create temp dir");
        let root = dir.path().join("snapshots");
        match snapshot::open(&root, Some(driver)) {
            Ok(sn) => Some(Self {
                sn,
                root,
                mount_count: AtomicU32::new(0),
                dir,
            }),
            Err(err @ SnapshotError::OverlayUnsupported { .. }) => {
                skip(test, &error_chain(&err));
                None
            }
            Err(err) => panic!("open {driver} store: {}", error_chain(&err)),
        }
    }

    fn reopen(&mut self) {
        self.sn = snapshot::open(&self.root, Some(self.sn.driver())).expect("reopen store");
    }

    /// Mount `mounts` on a fresh directory; unmounted when the guard drops.
    fn mount<'m>(&self, mounts: &'m Mounts) -> MountGuard<'m> {
        let n = self.mount_count.fetch_add(1, Ordering::Relaxed);
        let target = self.dir.path().join("mnt").join(n.to_string());
        fs_err::create_dir_all(&target).expect("create mount target");
        mounts
            .mount_at(&target)
            .unwrap_or_else(|err| panic!("mount {mounts:?}: {}", error_chain(&err)))
    }
}

/// Report a skipped test on the real stderr: libtest captures `eprintln!` of passing tests, and a
/// skip must be visible without `--nocapture`.
fn skip(test: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn key(text: &str) -> ActiveKey {
    ActiveKey::new(text).expect("valid key")
}

fn name(text: &str) -> CommittedName {
    CommittedName::new(text).expect("valid name")
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs_err::create_dir_all(path.parent().expect("has parent")).expect("create parents");
    fs_err::write(path, content).expect("write file");
}

fn read(root: &Path, rel: &str) -> Option<String> {
    fs_err::read_to_string(root.join(rel)).ok()
}

/// The directory collecting an unmounted active snapshot's writes (how layer apply writes).
fn upper(active: &snapshot::ActiveSnapshot) -> &Path {
    active
        .mounts()
        .upperdir()
        .expect("active snapshots are writable")
}

/// Prepare `key` on `parent`, let `fill` write through a real mount, unmount, commit as `to`.
fn layer(
    fx: &Fixture,
    key_text: &str,
    parent: Option<&CommittedName>,
    to: &str,
    fill: impl FnOnce(&Path),
) -> CommittedName {
    let active = fx.sn.prepare(key(key_text), parent).expect("prepare");
    {
        let rootfs = fx.mount(active.mounts());
        fill(rootfs.target());
        rootfs.unmount().expect("unmount");
    }
    fx.sn.commit(name(to), active).expect("commit")
}

mod cases {
    use super::*;

    pub fn lifecycle_prepare_commit_view_remove(fx: &Fixture) {
        let sn = &fx.sn;
        let active = sn.prepare(key("a"), None).expect("prepare");
        assert_eq!(active.key(), &key("a"));
        assert_eq!(active.parent(), None);
        let info = sn.stat((&key("a")).into()).expect("stat active");
        assert_eq!((info.kind, info.parent), (Kind::Active, None));
        assert_eq!(sn.mounts(&key("a")).expect("mounts"), *active.mounts());
        write(upper(&active), "f", "1");

        let base = active.commit(sn, name("base")).expect("commit");
        let info = sn.stat((&base).into()).expect("stat committed");
        assert_eq!(info.kind, Kind::Committed);
        assert!(matches!(
            sn.stat((&key("a")).into()),
            Err(SnapshotError::NotFound { .. })
        ));
        assert!(matches!(
            sn.mounts(&key("a")),
            Err(SnapshotError::NotFound { .. })
        ));
        assert!(matches!(
            sn.resume(&key("a")),
            Err(SnapshotError::NotFound { .. })
        ));
        // The key is free again once committed.
        let again = sn
            .prepare(key("a"), Some(&base))
            .expect("key reusable after commit");
        assert_eq!(again.parent(), Some(&base));

        let view = sn.view(key("v"), Some(&base)).expect("view");
        let info = sn.stat(view.key().into()).expect("stat view");
        assert_eq!((info.kind, info.parent), (Kind::View, Some(base.clone())));
        assert!(matches!(
            sn.resume(&key("v")),
            Err(SnapshotError::IsView { .. })
        ));
        {
            let mounted = fx.mount(view.mounts());
            assert_eq!(read(mounted.target(), "f").as_deref(), Some("1"));
            let err =
                fs_err::write(mounted.target().join("g"), "x").expect_err("view is read-only");
            assert_eq!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem);
        }

        let resumed = sn.resume(&key("a")).expect("resume");
        assert_eq!(resumed, again);
        sn.remove(view.key().into()).expect("remove view");
        sn.remove(resumed.key().into()).expect("remove active");
        sn.remove((&base).into()).expect("remove committed");
        assert_eq!(sn.walk().expect("walk"), []);
        assert_eq!(
            snapshot_dirs(fx),
            0,
            "directories are removed with their records"
        );
    }

    pub fn child_sees_parent_files(fx: &Fixture) {
        let base = layer(fx, "k0", None, "base", |root| {
            write(root, "etc/hello", "hi");
            write(root, "d/inner", "in");
        });
        let child = fx
            .sn
            .prepare(key("k1"), Some(&base))
            .expect("prepare child");
        let rootfs = fx.mount(child.mounts());
        assert_eq!(read(rootfs.target(), "etc/hello").as_deref(), Some("hi"));
        assert_eq!(read(rootfs.target(), "d/inner").as_deref(), Some("in"));
        // Writes in the child stay in the child.
        write(rootfs.target(), "etc/hello", "changed");
        drop(rootfs);
        let view = fx.sn.view(key("v"), Some(&base)).expect("view");
        let base_fs = fx.mount(view.mounts());
        assert_eq!(read(base_fs.target(), "etc/hello").as_deref(), Some("hi"));
        // The changes are where the differ looks for them.
        match child.changes() {
            Changes::Upper(dir) => {
                assert_eq!(read(dir, "etc/hello").as_deref(), Some("changed"));
                assert_eq!(read(dir, "d/inner"), None, "upperdir holds only changes");
            }
            Changes::FullTree { tree, parent } => {
                assert_eq!(read(tree, "etc/hello").as_deref(), Some("changed"));
                let parent = parent.as_deref().expect("has parent");
                assert_eq!(read(parent, "etc/hello").as_deref(), Some("hi"));
            }
        }
    }

    pub fn deletion_in_child_hides_parent_file(fx: &Fixture) {
        let base = layer(fx, "k0", None, "base", |root| {
            write(root, "etc/gone", "x");
            write(root, "etc/kept", "k");
            write(root, "d/inner", "in");
        });
        let child = layer(fx, "k1", Some(&base), "child", |root| {
            fs_err::remove_file(root.join("etc/gone")).expect("delete file");
            fs_err::remove_dir_all(root.join("d")).expect("delete dir");
            write(root, "d/new", "n");
        });
        let view = fx.sn.view(key("v1"), Some(&child)).expect("view child");
        let merged = fx.mount(view.mounts());
        assert!(!merged.target().join("etc/gone").exists());
        assert_eq!(read(merged.target(), "etc/kept").as_deref(), Some("k"));
        assert!(
            !merged.target().join("d/inner").exists(),
            "replaced dir is opaque"
        );
        assert_eq!(read(merged.target(), "d/new").as_deref(), Some("n"));
        let base_view = fx.sn.view(key("v0"), Some(&base)).expect("view base");
        let base_fs = fx.mount(base_view.mounts());
        assert_eq!(read(base_fs.target(), "etc/gone").as_deref(), Some("x"));
        assert_eq!(read(base_fs.target(), "d/inner").as_deref(), Some("in"));
    }

    pub fn child_preserves_metadata(fx: &Fixture) {
        let base = layer(fx, "k0", None, "base", |root| {
            write(root, "bin/tool", "#!/bin/sh\n");
            let tool = root.join("bin/tool");
            rustix::fs::chown(
                &tool,
                Some(rustix::fs::Uid::from_raw(1234)),
                Some(rustix::fs::Gid::from_raw(5678)),
            )
            .expect("chown");
            fs_err::set_permissions(&tool, Permissions::from_mode(0o4755)).expect("chmod");
            rustix::fs::setxattr(&tool, "user.kiln", b"1", rustix::fs::XattrFlags::empty())
                .expect("setxattr");
            fs_err::hard_link(&tool, root.join("bin/alias")).expect("hard link");
            fs_err::os::unix::fs::symlink("tool", root.join("bin/link")).expect("symlink");
            rustix::fs::mknodat(
                rustix::fs::CWD,
                root.join("fifo"),
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o640),
                0,
            )
            .expect("mkfifo");
        });
        let child = fx
            .sn
            .prepare(key("k1"), Some(&base))
            .expect("prepare child");
        let rootfs = fx.mount(child.mounts());
        let root = rootfs.target();
        let tool = fs_err::symlink_metadata(root.join("bin/tool")).expect("stat tool");
        assert_eq!(
            (tool.uid(), tool.gid(), tool.mode() & 0o7777),
            (1234, 5678, 0o4755)
        );
        let alias = fs_err::symlink_metadata(root.join("bin/alias")).expect("stat alias");
        assert_eq!(alias.ino(), tool.ino(), "hard link kept");
        let mut value = [0u8; 8];
        let n = rustix::fs::getxattr(root.join("bin/tool"), "user.kiln", &mut value[..])
            .expect("getxattr");
        assert_eq!(&value[..n], b"1");
        assert_eq!(
            fs_err::read_link(root.join("bin/link")).expect("readlink"),
            Path::new("tool")
        );
        let fifo = fs_err::symlink_metadata(root.join("fifo")).expect("stat fifo");
        assert_eq!(
            rustix::fs::FileType::from_raw_mode(fifo.mode()),
            rustix::fs::FileType::Fifo
        );
        assert_eq!(fifo.mode() & 0o7777, 0o640);
    }

    pub fn remove_refused_with_children(fx: &Fixture) {
        let sn = &fx.sn;
        let base = layer(fx, "k0", None, "base", |root| write(root, "f", "1"));
        let child = sn.prepare(key("k1"), Some(&base)).expect("prepare child");
        let err = sn
            .remove((&base).into())
            .expect_err("parent with active child");
        match err {
            SnapshotError::HasChildren { snapshot, children } => {
                assert_eq!(snapshot, SnapshotName::Committed(base.clone()));
                assert_eq!(children, [SnapshotName::Active(key("k1"))]);
            }
            other => panic!("expected HasChildren, got {other}"),
        }
        let view = sn.view(key("v"), Some(&base)).expect("view");
        sn.remove(child.key().into()).expect("remove child");
        assert!(matches!(
            sn.remove((&base).into()),
            Err(SnapshotError::HasChildren { .. })
        ));
        sn.remove(view.key().into()).expect("remove view");
        sn.remove((&base).into()).expect("remove parent");
        assert!(matches!(
            sn.remove((&base).into()),
            Err(SnapshotError::NotFound { .. })
        ));
    }

    pub fn orphan_sweep_after_crash(fx: &mut Fixture) {
        let base = layer(fx, "k0", None, "base", |root| write(root, "f", "1"));
        // A crash after creating a directory but before its record became visible, and one
        // after a record was deleted but before its directory was: both are orphans.
        let half = fx.sn.root().join("snapshots").join("999999");
        write(&half, "fs/junk", "half-done");
        let temp = fx.sn.root().join("meta").join(".tmp-999999.json");
        fs_err::write(&temp, "{").expect("write temp record");
        fx.reopen();
        assert!(!half.exists(), "orphan directory swept");
        assert!(!temp.exists(), "temp record swept");
        let info = fx
            .sn
            .stat((&base).into())
            .expect("committed snapshot survives");
        assert_eq!(info.kind, Kind::Committed);
        let view = fx.sn.view(key("v"), Some(&base)).expect("view");
        let mounted = fx.mount(view.mounts());
        assert_eq!(read(mounted.target(), "f").as_deref(), Some("1"));
    }

    pub fn active_of_dead_process_is_swept(fx: &mut Fixture) {
        let base = layer(fx, "k0", None, "base", |root| write(root, "f", "1"));
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "crash_helper_subprocess",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ROOT, &fx.root)
            .env(HELPER_DRIVER, fx.sn.driver().as_str())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run helper process");
        assert!(status.success(), "helper failed: {status}");
        // The helper prepared `crashed` and `kept` (persisted), then exited without committing.
        let keys = |sn: &LocalSnapshotter| -> Vec<String> {
            let walk = sn.walk().expect("walk");
            walk.iter().map(|i| i.name.as_str().to_owned()).collect()
        };
        fx.reopen();
        assert_eq!(keys(&fx.sn), ["base", "kept"]);
        fx.sn
            .prepare(key("crashed"), Some(&base))
            .expect("key is free again");
        assert_eq!(snapshot_dirs(fx), 3);
    }

    pub fn stack_of_150_layers(fx: &Fixture) {
        const LAYERS: usize = 150;
        let sn = &fx.sn;
        let mut parent: Option<CommittedName> = None;
        for i in 0..LAYERS {
            let active = sn
                .prepare(key(&format!("k{i}")), parent.as_ref())
                .expect("prepare");
            write(upper(&active), &format!("layers/{i}"), &i.to_string());
            write(upper(&active), "top", &i.to_string());
            parent = Some(
                sn.commit(name(&format!("layer-{i}")), active)
                    .expect("commit"),
            );
        }
        let top = sn
            .prepare(key("top"), parent.as_ref())
            .expect("prepare top");
        let check = |root: &Path| {
            for i in 0..LAYERS {
                assert_eq!(
                    read(root, &format!("layers/{i}")),
                    Some(i.to_string()),
                    "layer {i}"
                );
            }
            assert_eq!(read(root, "top"), Some((LAYERS - 1).to_string()));
            write(root, "written-on-top", "ok");
        };
        if let Mounts::Overlay(overlay) = top.mounts() {
            assert_eq!(overlay.lowerdirs.len(), LAYERS);
            let options_len = top.mounts().options().join(",").len();
            assert!(
                options_len > rustix::param::page_size(),
                "{options_len} bytes of absolute options must exceed a page to prove the point"
            );
            // Both strategies, explicitly; the automatic mount below uses the kernel's best.
            for api in [OverlayApi::LowerdirPlus, OverlayApi::Legacy] {
                if api == OverlayApi::LowerdirPlus && snapshot::overlay_api() != api {
                    skip(
                        "overlay::stack_of_150_layers (lowerdir+ part)",
                        "this kernel has no overlayfs `lowerdir+` (Linux < 6.8)",
                    );
                    continue;
                }
                let target = fx.dir.path().join(format!("{api:?}"));
                fs_err::create_dir_all(&target).expect("create target");
                let mounted = top
                    .mounts()
                    .mount_at_with(&target, api)
                    .unwrap_or_else(|err| panic!("{api:?} mount: {}", error_chain(&err)));
                check(mounted.target());
                mounted.unmount().expect("unmount");
            }
        }
        let rootfs = fx.mount(top.mounts());
        check(rootfs.target());
        drop(rootfs);
        assert_eq!(read(upper(&top), "written-on-top").as_deref(), Some("ok"));
    }

    pub fn usage_counts_size_and_inodes(fx: &Fixture) {
        let sn = &fx.sn;
        let active = sn.prepare(key("k0"), None).expect("prepare");
        let dir = upper(&active);
        fs_err::write(dir.join("big"), vec![7u8; 1 << 20]).expect("write big");
        write(dir, "small", "s");
        fs_err::hard_link(dir.join("small"), dir.join("small-link")).expect("hard link");
        let live = sn.usage((&key("k0")).into()).expect("usage active");
        // root dir + big + small (its hard link counts once)
        assert_eq!(live.inodes, 3);
        assert!(live.size >= 1 << 20, "{live:?}");
        let base = sn.commit(name("base"), active).expect("commit");
        assert_eq!(sn.usage((&base).into()).expect("usage committed"), live);

        let child = sn.prepare(key("k1"), Some(&base)).expect("prepare child");
        write(upper(&child), "more", "m");
        let child_usage = sn.usage(child.key().into()).expect("usage child");
        match sn.driver() {
            // Only the child's own layer: its root and one file.
            StorageDriver::Overlay => assert_eq!(child_usage.inodes, 2),
            // The full copied tree plus the new file.
            StorageDriver::Copy => {
                assert_eq!(child_usage.inodes, 4);
                assert!(child_usage.size >= 1 << 20);
            }
        }
    }

    pub fn walk_lists_all(fx: &Fixture) {
        let sn = &fx.sn;
        let base = layer(fx, "k0", None, "base", |_| {});
        let _active = sn.prepare(key("active"), Some(&base)).expect("prepare");
        let _view = sn.view(key("view"), Some(&base)).expect("view");
        let _empty = sn.view(key("empty"), None).expect("empty view");
        let walk = sn.walk().expect("walk");
        let summary: Vec<(&str, Kind, Option<&str>)> = walk
            .iter()
            .map(|i| {
                (
                    i.name.as_str(),
                    i.kind,
                    i.parent.as_ref().map(|p| p.as_str()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("active", Kind::Active, Some("base")),
                ("base", Kind::Committed, None),
                ("empty", Kind::View, None),
                ("view", Kind::View, Some("base")),
            ]
        );
    }

    pub fn keys_and_names_share_one_namespace(fx: &Fixture) {
        let sn = &fx.sn;
        let base = layer(fx, "k0", None, "base", |_| {});
        assert!(matches!(
            sn.prepare(key("base"), None),
            Err(SnapshotError::AlreadyExists { .. })
        ));
        let active = sn.prepare(key("k1"), Some(&base)).expect("prepare");
        assert!(matches!(
            sn.prepare(key("k1"), None),
            Err(SnapshotError::AlreadyExists { .. })
        ));
        // A failed commit leaves the active snapshot in place, to resume or remove.
        assert!(matches!(
            sn.commit(name("base"), active),
            Err(SnapshotError::AlreadyExists { .. })
        ));
        let active = sn.resume(&key("k1")).expect("still active");
        sn.commit(name("k1-done"), active)
            .expect("commit under a free name");
        assert!(matches!(
            sn.prepare(key("k2"), Some(&name("missing"))),
            Err(SnapshotError::ParentNotFound { .. })
        ));
        assert_eq!(
            snapshot_dirs(fx),
            2,
            "a refused prepare leaves nothing behind"
        );
    }

    pub fn chain_id_names_are_shared(fx: &Fixture) {
        let sn = &fx.sn;
        let l0 = DiffId(Digest::of(b"layer 0"));
        let l1 = DiffId(Digest::of(b"layer 1"));
        let c0 = ChainId::of_stack(&[l0]).expect("chain");
        let c01 = ChainId::of_stack(&[l0, l1]).expect("chain");
        assert_eq!(sn.committed_for_chain(&c0).expect("lookup"), None);
        let active = sn.prepare(key("extract-1"), None).expect("prepare");
        let base = active
            .commit(sn, CommittedName::for_chain(&c0))
            .expect("commit");
        assert_eq!(
            sn.committed_for_chain(&c0).expect("lookup"),
            Some(base.clone())
        );
        assert_eq!(sn.committed_for_chain(&c01).expect("lookup"), None);
        // A second image with the same base finds it instead of applying the layer again, and a
        // racing extraction of the same stack is refused rather than duplicated.
        let racing = sn.prepare(key("extract-2"), None).expect("prepare");
        assert!(matches!(
            sn.commit(CommittedName::for_chain(&c0), racing),
            Err(SnapshotError::AlreadyExists { .. })
        ));
        sn.remove((&key("extract-2")).into())
            .expect("drop the racing extraction");
        let upper_layer = sn.prepare(key("extract-3"), Some(&base)).expect("prepare");
        let top = sn
            .commit(CommittedName::for_chain(&c01), upper_layer)
            .expect("commit");
        assert_eq!(top.chain_id(), Some(c01));
    }

    pub fn persisted_active_survives_reopen(fx: &mut Fixture) {
        let active = fx.sn.prepare(key("rootfs"), None).expect("prepare");
        fx.sn.persist(active.key()).expect("persist");
        fx.reopen();
        let resumed = fx.sn.resume(&key("rootfs")).expect("resume");
        assert_eq!(resumed.mounts(), active.mounts());
    }
}

fn snapshot_dirs(fx: &Fixture) -> usize {
    fs_err::read_dir(fx.sn.root().join("snapshots"))
        .expect("list snapshots")
        .count()
}

/// Not a test of its own: `active_of_dead_process_is_swept` runs the test binary with only this
/// function and the environment set, to get a process that prepares snapshots and dies.
#[test]
fn crash_helper_subprocess() {
    let (Some(root), Some(driver)) = (
        std::env::var_os(HELPER_ROOT),
        std::env::var(HELPER_DRIVER).ok(),
    ) else {
        return;
    };
    let driver: StorageDriver = driver.parse().expect("driver");
    let sn = snapshot::open(Path::new(&root), Some(driver)).expect("open in helper");
    let base = name("base");
    let _crashed = sn
        .prepare(key("crashed"), Some(&base))
        .expect("prepare crashed");
    let kept = sn.prepare(key("kept"), Some(&base)).expect("prepare kept");
    sn.persist(kept.key()).expect("persist");
    // Exit without committing or removing anything, as a killed build would.
    std::process::exit(0);
}

macro_rules! conformance {
    (shared: [$($shared:ident),* $(,)?], exclusive: [$($exclusive:ident),* $(,)?]) => {
        conformance!(@driver overlay, StorageDriver::Overlay, [$($shared),*], [$($exclusive),*]);
        conformance!(@driver copy, StorageDriver::Copy, [$($shared),*], [$($exclusive),*]);
    };
    (@driver $module:ident, $driver:expr, [$($shared:ident),*], [$($exclusive:ident),*]) => {
        mod $module {
            use super::*;
            $(
                #[test]
                fn $shared() {
                    let test = concat!(stringify!($module), "::", stringify!($shared));
                    if let Some(fx) = Fixture::new($driver, test) {
                        cases::$shared(&fx);
                    }
                }
            )*
            $(
                #[test]
                fn $exclusive() {
                    let test = concat!(stringify!($module), "::", stringify!($exclusive));
                    if let Some(mut fx) = Fixture::new($driver, test) {
                        cases::$exclusive(&mut fx);
                    }
                }
            )*
        }
    };
}

conformance!(
    shared: [
        lifecycle_prepare_commit_view_remove,
        child_sees_parent_files,
        deletion_in_child_hides_parent_file,
        child_preserves_metadata,
        remove_refused_with_children,
        stack_of_150_layers,
        usage_counts_size_and_inodes,
        walk_lists_all,
        keys_and_names_share_one_namespace,
        chain_id_names_are_shared,
    ],
    exclusive: [
        orphan_sweep_after_crash,
        active_of_dead_process_is_swept,
        persisted_active_survives_reopen,
    ]
);

/// Automatic choice picks overlay exactly when overlay works here.
#[test]
fn automatic_driver_choice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let auto = snapshot::open(&dir.path().join("auto"), None).expect("open automatic");
    let forced = snapshot::open(&dir.path().join("forced"), Some(StorageDriver::Overlay));
    match (auto.driver(), forced) {
        (StorageDriver::Overlay, Ok(_)) => {}
        (StorageDriver::Copy, Err(err)) => skip(
            "automatic_driver_choice",
            &format!("overlay unavailable, chose copy: {}", error_chain(&err)),
        ),
        (driver, forced) => panic!("automatic chose {driver}, forcing overlay gave {forced:?}"),
    }
    assert!(
        dir.path()
            .join("auto")
            .join(auto.driver().as_str())
            .is_dir()
    );
}

/// A failed overlay mount says which step failed and what the kernel logged about it.
#[test]
fn mount_failure_names_step_and_kernel_message() {
    let test = "mount_failure_names_step_and_kernel_message";
    if !rustix::process::geteuid().is_root() {
        return skip(test, "needs root to mount");
    }
    if snapshot::overlay_api() != OverlayApi::LowerdirPlus {
        return skip(
            test,
            "this kernel has no overlayfs `lowerdir+` (Linux < 6.8)",
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let [lower, upper, work, target] = ["lower", "upper", "work", "target"].map(|d| {
        let path = dir.path().join(d);
        fs_err::create_dir(&path).expect("create dir");
        path
    });
    // A file where a layer directory belongs: overlayfs logs this one to the fs context (others,
    // such as a missing path, go to the kernel log only).
    let not_a_dir = dir.path().join("file");
    fs_err::write(&not_a_dir, "x").expect("write file");
    let mounts = Mounts::Overlay(snapshot::OverlayMount {
        lowerdirs: vec![lower, not_a_dir],
        upper: Some(snapshot::UpperDir {
            upperdir: upper,
            workdir: work,
        }),
    });
    match mounts.mount_at(&target) {
        Err(SnapshotError::Mount {
            step, kernel_log, ..
        }) => {
            assert_eq!(step, snapshot::MountStep::Configure("lowerdir+"));
            assert!(
                kernel_log
                    .0
                    .iter()
                    .any(|line| line.contains("not a directory")),
                "kernel explains the failure: {kernel_log:?}"
            );
        }
        Ok(_guard) => panic!("mounting a missing lowerdir succeeded"),
        Err(other) => panic!("expected a mount error, got {}", error_chain(&other)),
    }
}
