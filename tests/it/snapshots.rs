//! File steps on snapshots, through the CLI: COPY and WORKDIR on the busybox base (unpacked into
//! snapshots named by ChainID), snapshot sharing between images, the two storage drivers giving
//! the same image, and no mounts or active snapshots left behind, also after a failing COPY.

use std::path::Path;

use snapshotter::snapshot::{self, Kind, Snapshotter, StorageDriver};
use snapshotter::{ChainId, DiffId};

use crate::harness::{self, Registry, skip_unless};
use crate::support::{inspect, kiln, kiln_env, layer_entries, write_files};

const EPOCH: &str = "1700000000";

/// Mount points under `root` in this mount namespace.
fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    fs_err::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|target| target.starts_with(&root))
        .collect()
}

/// `(committed, other)` snapshot counts of the store at `root` for `driver`.
fn snapshot_counts(root: &Path, driver: StorageDriver) -> (usize, usize) {
    let sn = snapshot::open(&root.join("snapshots"), Some(driver)).unwrap();
    let all = sn.walk().unwrap();
    let committed = all.iter().filter(|i| i.kind == Kind::Committed).count();
    (committed, all.len() - committed)
}

fn build(root: &Path, ctx: &Path, tag: &str, driver: &str) -> crate::support::Run {
    kiln_env(
        root,
        &[
            "--storage-driver",
            driver,
            "build",
            "-q",
            "-t",
            tag,
            ctx.to_str().unwrap(),
        ],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    )
}

fn layers(root: &Path, tag: &str) -> Vec<String> {
    inspect(root, tag)["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect()
}

/// The blob digests of an image's layers, from its manifest.
fn layer_blobs(root: &Path, tag: &str) -> Vec<String> {
    let image = inspect(root, tag);
    let manifest = crate::support::json_blob(root, image["Descriptor"]["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

fn busybox_context(host: &str, dir: &Path, extra: &str) {
    write_files(
        dir,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {host}/library/busybox\nCOPY note.txt /tmp/\nCOPY tool /bin/\nWORKDIR /tmp\nWORKDIR /srv/app\n{extra}"
                ),
            ),
            ("note.txt", "in tmp\n"),
            ("tool", "#!/bin/sh\necho tool\n"),
        ],
    );
}

#[test]
fn copy_and_workdir_on_busybox_share_snapshots_and_leave_no_mounts() {
    skip_unless!(harness::root_required());
    let reg = skip_unless!(Registry::start());
    skip_unless!(harness::skopeo_push_busybox(&reg, "library/busybox:latest"));
    let host = reg.host_port();
    let root = harness::tempdir();
    let ctx = harness::tempdir();
    busybox_context(&host, ctx.path(), "");
    build(root.path(), ctx.path(), "app:1", "overlay").ok();

    // busybox + COPY /tmp + COPY /bin + WORKDIR /srv/app; WORKDIR /tmp (exists) has no layer.
    let diff_ids = layers(root.path(), "app:1");
    assert_eq!(diff_ids.len(), 4, "{diff_ids:?}");
    assert_eq!(
        inspect(root.path(), "app:1")["Config"]["WorkingDir"],
        "/srv/app"
    );
    let blobs = layer_blobs(root.path(), "app:1");
    let tmp = layer_entries(root.path(), &blobs[1]);
    // The parent is the base's /tmp as the rootfs has it: sticky, world-writable.
    assert_eq!(
        tmp.iter().map(|e| (e.0.as_str(), e.2)).collect::<Vec<_>>(),
        [("tmp/", 0o1777), ("tmp/note.txt", 0o644)]
    );
    let bin = layer_entries(root.path(), &blobs[2]);
    assert_eq!(
        bin.iter().map(|e| (e.0.as_str(), e.1)).collect::<Vec<_>>(),
        [
            ("bin/", tar::EntryType::Directory),
            ("bin/tool", tar::EntryType::Regular)
        ],
        "busybox's /bin is a real directory"
    );
    let workdir = layer_entries(root.path(), &blobs[3]);
    assert_eq!(
        workdir.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["srv/", "srv/app/"]
    );

    // Every prefix of the stack is a committed snapshot named by its ChainID.
    let ids: Vec<DiffId> = diff_ids
        .iter()
        .map(|d| DiffId(d.parse().unwrap()))
        .collect();
    let sn = snapshot::open(&root.path().join("snapshots"), Some(StorageDriver::Overlay)).unwrap();
    for n in 1..=ids.len() {
        let chain = ChainId::of_stack(&ids[..n]).unwrap();
        assert!(
            sn.committed_for_chain(&chain).unwrap().is_some(),
            "chain {n}"
        );
    }
    drop(sn);
    assert_eq!(
        snapshot_counts(root.path(), StorageDriver::Overlay),
        (4, 0),
        "no active snapshot left"
    );

    // A second image on the same base shares its snapshot: one new snapshot for its one layer.
    let other = harness::tempdir();
    write_files(
        other.path(),
        &[
            (
                "Dockerfile",
                &format!("FROM {host}/library/busybox\nCOPY other.txt /tmp/\n"),
            ),
            ("other.txt", "other\n"),
        ],
    );
    build(root.path(), other.path(), "other:1", "overlay").ok();
    assert_eq!(snapshot_counts(root.path(), StorageDriver::Overlay), (5, 0));
    // Rebuilding the first image reuses every snapshot.
    build(root.path(), ctx.path(), "app:2", "overlay").ok();
    assert_eq!(snapshot_counts(root.path(), StorageDriver::Overlay), (5, 0));
    assert!(mounts_under(root.path()).is_empty());

    // A COPY that fails after the rootfs is mounted (a file over the base's /bin directory)
    // leaves no mount and no active snapshot.
    let failing = harness::tempdir();
    write_files(
        failing.path(),
        &[
            (
                "Dockerfile",
                &format!("FROM {host}/library/busybox\nCOPY bin /\n"),
            ),
            ("bin", "not a directory\n"),
        ],
    );
    let out = build(root.path(), failing.path(), "bad:1", "overlay").fails_with(1);
    assert!(
        out.stderr.contains("cannot overwrite directory `/bin`"),
        "{}",
        out.stderr
    );
    assert!(mounts_under(root.path()).is_empty());
    // Steps mount their rootfs under the store (`<root>/mnt/rootfs-*`), so the check above
    // covers them too, and no other test's builds can interfere with it.
    let leftover: Vec<_> = fs_err::read_dir(root.path().join("mnt")).unwrap().collect();
    assert!(leftover.is_empty(), "mountpoints removed: {leftover:?}");
    assert_eq!(snapshot_counts(root.path(), StorageDriver::Overlay), (5, 0));
}

#[test]
fn copy_driver_gives_the_same_image_as_overlay() {
    skip_unless!(harness::root_required());
    let reg = skip_unless!(Registry::start());
    skip_unless!(harness::skopeo_push_busybox(&reg, "library/busybox:latest"));
    let host = reg.host_port();
    let ctx = harness::tempdir();
    write_files(ctx.path(), &[("dir/a", "a\n"), ("dir/sub/b", "b\n")]);
    fs_err::hard_link(ctx.path().join("dir/a"), ctx.path().join("dir/hard")).unwrap();
    std::os::unix::fs::symlink("a", ctx.path().join("dir/link")).unwrap();
    busybox_context(
        &host,
        ctx.path(),
        "COPY dir ./data/\nCOPY --chmod=700 note.txt /etc/\n",
    );

    let overlay = harness::tempdir();
    let copy = harness::tempdir();
    let id_overlay = build(overlay.path(), ctx.path(), "app:1", "overlay")
        .ok()
        .stdout;
    let id_copy = build(copy.path(), ctx.path(), "app:1", "copy").ok().stdout;
    assert_eq!(
        layers(overlay.path(), "app:1"),
        layers(copy.path(), "app:1"),
        "same layers"
    );
    assert_eq!(id_overlay, id_copy, "same image ID");
    assert_eq!(
        inspect(overlay.path(), "app:1")["Descriptor"],
        inspect(copy.path(), "app:1")["Descriptor"]
    );
    assert!(copy.path().join("snapshots/copy").is_dir());
    assert!(!copy.path().join("snapshots/overlay").exists());
    assert!(overlay.path().join("snapshots/overlay").is_dir());
    assert_eq!(snapshot_counts(copy.path(), StorageDriver::Copy), (6, 0));
    assert!(mounts_under(copy.path()).is_empty());
    assert!(mounts_under(overlay.path()).is_empty());
}

#[test]
fn concurrent_builds_unpack_one_chain_once() {
    skip_unless!(harness::root_required());
    let reg = skip_unless!(Registry::start());
    skip_unless!(harness::skopeo_push_busybox(&reg, "library/busybox:latest"));
    let host = reg.host_port();
    let root = harness::tempdir();
    // Pull first, so that both builds race on unpacking and committing, not on pulling.
    kiln_env(
        root.path(),
        &["pull", &format!("{host}/library/busybox")],
        &[],
    )
    .ok();
    let ctx = harness::tempdir();
    busybox_context(&host, ctx.path(), "");
    let builds: Vec<_> = (0..4)
        .map(|i| {
            let mut cmd = harness::kiln_cmd(root.path());
            cmd.args(["build", "-q", "-t", &format!("app:{i}")])
                .arg(ctx.path())
                .env("SOURCE_DATE_EPOCH", EPOCH)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in builds {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let driver = fs_err::read_dir(root.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find_map(|n| n.parse::<StorageDriver>().ok())
        .expect("a driver directory");
    assert_eq!(
        snapshot_counts(root.path(), driver),
        (4, 0),
        "one snapshot per chain, no active snapshot left"
    );
    let ids: Vec<_> = (0..4)
        .map(|i| inspect(root.path(), &format!("app:{i}"))["Id"].clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert!(mounts_under(root.path()).is_empty());
}

#[test]
fn pull_unpacks_into_chain_id_snapshots() {
    let reg = skip_unless!(Registry::start());
    skip_unless!(harness::root_required());
    skip_unless!(harness::skopeo_push_busybox(&reg, "library/busybox:latest"));
    let root = harness::tempdir();
    let image = format!("{}/library/busybox", reg.host_port());
    kiln(
        root.path(),
        &["--storage-driver", "copy", "pull", "-q", &image],
    )
    .ok();
    // One committed snapshot per layer (busybox has one), named by the image's ChainID.
    assert_eq!(snapshot_counts(root.path(), StorageDriver::Copy), (1, 0));
    let inspected = inspect(root.path(), &image);
    let diff_ids: Vec<DiffId> =
        serde_json::from_value(inspected["RootFS"]["Layers"].clone()).unwrap();
    let chain = ChainId::of_stack(&diff_ids).unwrap();
    let sn = snapshot::open(&root.path().join("snapshots"), Some(StorageDriver::Copy)).unwrap();
    assert!(sn.committed_for_chain(&chain).unwrap().is_some());
    // A second pull finds everything unpacked already.
    kiln(
        root.path(),
        &["--storage-driver", "copy", "pull", "-q", &image],
    )
    .ok();
    assert_eq!(snapshot_counts(root.path(), StorageDriver::Copy), (1, 0));
}
