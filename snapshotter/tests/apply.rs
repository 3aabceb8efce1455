//! Layer apply: the malicious corpus in `testdata/layers/`, round trips of layers written by
//! `LayerWriter`, the busybox image, whiteout conversion in both modes, all-or-nothing on
//! digest mismatches, and which digests are computed (uncompressed: one hash; vouched: none). Tests that need root print `SKIP <test>: <reason>` and return otherwise.

#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use snapshotter::apply::{
    ApplyError, ApplyExpect, ApplyOptions, BlobCompression, Durability, Limit, Resolver,
    SymlinkResolution, UnsafePathReason, Verification, WarningKind, WhiteoutMode, apply,
};
use snapshotter::layer::{Compression, Entry, EntryKind, LayerPath, LayerWriter, Xattr};
use snapshotter::{BlobDigest, DiffId, Digest};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn skip(test: &str, reason: &str) {
    eprintln!("SKIP {test}: {reason}");
}

fn opts(whiteouts: WhiteoutMode) -> ApplyOptions {
    let mut o = ApplyOptions::new(whiteouts);
    o.durability = Durability::NoSync;
    o
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/layers")
}

/// Everything below `dir` (not following symlinks): type, mode, owner, size, mtime, content
/// digest or link target, and inode (so hard links and replacements show).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            let md = fs::symlink_metadata(&path).unwrap();
            let extra = if md.is_file() {
                Digest::of(&fs_err::read(&path).unwrap()).to_string()
            } else if md.file_type().is_symlink() {
                fs::read_link(&path).unwrap().display().to_string()
            } else {
                String::new()
            };
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            out.insert(
                rel,
                format!(
                    "{:o} {}:{} {} {} {} ino={} {extra}",
                    md.mode(),
                    md.uid(),
                    md.gid(),
                    md.size() * u64::from(!md.is_dir()),
                    md.mtime(),
                    md.mtime_nsec(),
                    md.ino()
                ),
            );
            if md.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A workspace: `sentinel/secret` next to a populated `target/`.
struct Scene {
    _tmp: tempfile::TempDir,
    top: PathBuf,
    target: PathBuf,
}

impl Scene {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().to_path_buf();
        fs_err::create_dir_all(top.join("sentinel")).unwrap();
        fs_err::write(top.join("sentinel/secret"), "secret\n").unwrap();
        let target = top.join("target");
        fs_err::create_dir_all(target.join("existing/dir")).unwrap();
        fs_err::write(target.join("existing/file"), "lower\n").unwrap();
        fs_err::create_dir_all(target.join("dir")).unwrap();
        fs_err::write(target.join("dir/old"), "old\n").unwrap();
        fs_err::write(target.join("gone"), "gone\n").unwrap();
        Self {
            _tmp: tmp,
            top,
            target,
        }
    }

    fn outside(&self) -> BTreeMap<PathBuf, String> {
        let mut all = snapshot(&self.top);
        all.retain(|p, _| !p.starts_with("target"));
        all
    }
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Refused(fn(&ApplyError) -> bool),
    Contained,
    /// Refused with `Beneath`, contained with `InRoot`.
    ContainedInRoot,
    /// Refused only under the limits used by the test.
    RefusedByLimit(Limit),
}

fn parent_component(e: &ApplyError) -> bool {
    matches!(
        e,
        ApplyError::UnsafePath {
            reason: UnsafePathReason::ParentComponent,
            ..
        }
    )
}
fn whiteout_outside(e: &ApplyError) -> bool {
    matches!(
        e,
        ApplyError::UnsafePath {
            reason: UnsafePathReason::WhiteoutOutsideDirectory,
            ..
        }
    )
}
fn resolve(e: &ApplyError) -> bool {
    matches!(e, ApplyError::Resolve { .. })
}
fn hardlink(e: &ApplyError) -> bool {
    matches!(e, ApplyError::Hardlink { .. })
}
fn read(e: &ApplyError) -> bool {
    matches!(e, ApplyError::Read { .. })
}

fn corpus_expectations() -> BTreeMap<&'static str, Expect> {
    use Expect::*;
    BTreeMap::from([
        ("dotdot-file.tar", Refused(parent_component)),
        ("dotdot-nested.tar", Refused(parent_component)),
        ("absolute-file.tar", Contained),
        ("symlink-then-file.tar", ContainedInRoot),
        ("symlink-relative-escape.tar", Refused(resolve)),
        ("hardlink-absolute.tar", Refused(hardlink)),
        ("hardlink-dotdot.tar", Refused(parent_component)),
        ("hardlink-through-symlink.tar", Refused(hardlink)),
        ("symlink-loop.tar", Refused(resolve)),
        ("symlink-self-loop.tar", Refused(resolve)),
        ("symlink-replaces-dir.tar", Refused(resolve)),
        ("symlink-replaces-dir-absolute.tar", ContainedInRoot),
        ("whiteout-dotdot.tar", Refused(whiteout_outside)),
        ("whiteout-dot.tar", Refused(whiteout_outside)),
        ("whiteout-empty.tar", Refused(whiteout_outside)),
        ("whiteout-parent-path.tar", Refused(parent_component)),
        ("overlay-xattr.tar", Contained),
        ("huge-size-truncated.tar", Refused(read)),
        ("many-entries.tar.gz", RefusedByLimit(Limit::Entries)),
        (
            "pax-huge-header.tar.gz",
            RefusedByLimit(Limit::EntryMetadata),
        ),
        ("benign-basic.tar", Contained),
        ("benign-gnu-longname.tar", Contained),
        ("benign-whiteouts.tar", Contained),
    ])
}

fn host_untouched(case: &str) {
    for p in ["/kiln-corpus-escape", "/kiln-corpus-escape-file"] {
        assert!(
            fs::symlink_metadata(p).is_err(),
            "{case}: {p} appeared on the host"
        );
    }
}

#[test]
fn corpus_is_refused_or_contained() {
    let expectations = corpus_expectations();
    let mut files: Vec<String> = fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tar") || n.ends_with(".tar.gz"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        expectations
            .keys()
            .map(|k| k.to_string())
            .collect::<Vec<_>>(),
        "every corpus file needs an expectation (and every expectation a file)"
    );
    let passwd_ino = fs::metadata("/etc/passwd").map(|m| (m.dev(), m.ino())).ok();
    for (case, expect) in &expectations {
        let blob = fs_err::read(corpus().join(case)).unwrap();
        for symlinks in [SymlinkResolution::InRoot, SymlinkResolution::Beneath] {
            for resolver in [Resolver::Auto, Resolver::Userspace] {
                let what = format!("{case} ({symlinks:?}, {resolver:?})");
                let scene = Scene::new();
                let before_target = snapshot(&scene.target);
                let before_outside = scene.outside();
                let mut o = opts(WhiteoutMode::Delete);
                o.symlinks = symlinks;
                o.resolver = resolver;
                o.limits.max_entries = 1000;
                let result = apply(&blob[..], &scene.target, ApplyExpect::default(), &o);
                let refused = match (expect, &result) {
                    (Expect::Refused(check), Err(e)) => {
                        assert!(check(e), "{what}: unexpected error {e:?}");
                        true
                    }
                    (Expect::RefusedByLimit(limit), Err(e)) => {
                        assert!(
                            matches!(e, ApplyError::LimitExceeded { limit: l, .. } if l == limit),
                            "{what}: unexpected error {e:?}"
                        );
                        true
                    }
                    (Expect::ContainedInRoot, Err(e)) if symlinks == SymlinkResolution::Beneath => {
                        assert!(resolve(e), "{what}: unexpected error {e:?}");
                        true
                    }
                    (Expect::Contained | Expect::ContainedInRoot, Ok(_)) => false,
                    (_, r) => panic!("{what}: unexpected outcome {r:?}"),
                };
                if refused {
                    assert_eq!(
                        snapshot(&scene.target),
                        before_target,
                        "{what}: target changed"
                    );
                }
                assert_eq!(
                    scene.outside(),
                    before_outside,
                    "{what}: something outside changed"
                );
                host_untouched(&what);
                if let Some(passwd) = passwd_ino {
                    for entry in walk_all(&scene.target) {
                        let md = fs::symlink_metadata(&entry).unwrap();
                        assert_ne!(
                            (md.dev(), md.ino()),
                            passwd,
                            "{what}: {entry:?} links /etc/passwd"
                        );
                    }
                }
            }
        }
    }
}

fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk_all(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn contained_cases_land_inside_the_root() {
    let scene = Scene::new();
    let blob = fs_err::read(corpus().join("symlink-then-file.tar")).unwrap();
    apply(
        &blob[..],
        &scene.target,
        ApplyExpect::default(),
        &opts(WhiteoutMode::Delete),
    )
    .unwrap();
    assert_eq!(
        fs_err::read_to_string(scene.target.join("kiln-corpus-escape/passwd")).unwrap(),
        "pwned\n"
    );
    assert_eq!(
        fs::read_link(scene.target.join("link")).unwrap(),
        Path::new("/kiln-corpus-escape")
    );

    let scene = Scene::new();
    let blob = fs_err::read(corpus().join("symlink-replaces-dir-absolute.tar")).unwrap();
    apply(
        &blob[..],
        &scene.target,
        ApplyExpect::default(),
        &opts(WhiteoutMode::Delete),
    )
    .unwrap();
    assert!(scene.target.join("kiln-corpus-escape/pwned").is_file());
    assert!(
        fs::symlink_metadata(scene.target.join("d"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let scene = Scene::new();
    let blob = fs_err::read(corpus().join("overlay-xattr.tar")).unwrap();
    let report = apply(
        &blob[..],
        &scene.target,
        ApplyExpect::default(),
        &opts(WhiteoutMode::Delete),
    )
    .unwrap();
    assert_eq!(report.warning_count(WarningKind::OverlayXattrIgnored), 1);
    let mut buf = [0u8; 64];
    assert!(
        rustix::fs::lgetxattr(
            scene.target.join("dir"),
            "trusted.overlay.redirect",
            &mut buf[..]
        )
        .is_err()
    );

    // The tar bomb applies within default limits.
    let scene = Scene::new();
    let blob = fs_err::read(corpus().join("many-entries.tar.gz")).unwrap();
    let report = apply(
        &blob[..],
        &scene.target,
        ApplyExpect::default(),
        &opts(WhiteoutMode::Delete),
    )
    .unwrap();
    assert_eq!(report.entries, 3000);
}

fn entry(path: &str, kind: EntryKind, mode: u32, uid: u64, mtime: u64) -> Entry {
    Entry {
        path: LayerPath::new(path).unwrap(),
        kind,
        mode,
        uid,
        gid: uid,
        mtime,
    }
}

#[test]
fn layer_writer_round_trip_preserves_metadata() {
    let mut diff_ids = Vec::new();
    for compression in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        for resolver in [Resolver::Auto, Resolver::Userspace] {
            let (bytes, diff_id, digest) = valid_layer(compression);
            let tmp = tempfile::tempdir().unwrap();
            let target = tmp.path().join("fs");
            let mut o = opts(WhiteoutMode::Overlay);
            o.resolver = resolver;
            let report = apply(
                &bytes[..],
                &target,
                ApplyExpect {
                    diff_id: Some(diff_id),
                    digest: Some(digest),
                },
                &o,
            )
            .unwrap();
            assert_eq!(report.diff_id, diff_id);
            assert_eq!(report.digest, digest);
            assert_eq!(report.compressed_size, bytes.len() as u64);
            assert_eq!(report.kernel_resolution, resolver == Resolver::Auto);
            diff_ids.push(report.diff_id);

            let md = |p: &str| fs::symlink_metadata(target.join(p)).unwrap();
            assert_eq!(md("d").mode() & 0o7777, 0o750);
            assert_eq!(md("d").mtime(), 1_600_000_001);
            assert_eq!(md("d/suid").mode() & 0o7777, 0o4755);
            assert_eq!(md("d/suid").mtime(), 1_600_000_003);
            assert_eq!(fs_err::read(target.join("d/suid")).unwrap(), b"hello");
            assert_eq!(md("d/z-hard").ino(), md("d/suid").ino());
            assert_eq!(md("d/suid").nlink(), 2);
            assert_eq!(
                fs::read_link(target.join("d/link")).unwrap(),
                Path::new("../etc/nowhere")
            );
            assert_eq!(md("d/link").mtime(), 1_600_000_002);
            let long = format!("d/{}", "x".repeat(180));
            assert_eq!(md(&long).mode() & 0o7777, 0o640);
            assert_eq!(md("sticky").mode() & 0o7777, 0o1777);
            assert_eq!(md("sticky").mtime(), 1_600_000_005);
            if is_root() {
                assert_eq!((md("d").uid(), md("d").gid()), (1000, 1000));
                assert_eq!(md(&long).uid(), 1000);
            } else {
                assert!(report.warning_count(WarningKind::OwnershipNotRestored) > 0);
            }
            let mut buf = [0u8; 16];
            match rustix::fs::lgetxattr(target.join("d/suid"), "user.kiln.test", &mut buf[..]) {
                Ok(n) => assert_eq!(&buf[..n], b"v"),
                Err(_) => assert_eq!(report.warning_count(WarningKind::XattrNotRestored), 1),
            }
            // Nothing but the target next to it.
            let siblings: Vec<_> = fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(siblings, ["fs"]);
        }
    }
    assert!(
        diff_ids.windows(2).all(|w| w[0] == w[1]),
        "same tar, same DiffID"
    );
}

/// A layer exercising modes, owners, times, symlinks, hardlinks, long names and xattrs.
fn valid_layer(compression: Compression) -> (Vec<u8>, DiffId, BlobDigest) {
    let mut w = LayerWriter::new(Vec::new(), compression);
    let long = format!("d/{}", "x".repeat(180));
    let xattr = Xattr {
        name: "user.kiln.test".into(),
        value: b"v".to_vec(),
    };
    let steps: Vec<(Entry, &[u8], Vec<Xattr>)> = vec![
        (
            entry("d", EntryKind::Directory, 0o750, 1000, 1_600_000_001),
            b"",
            vec![],
        ),
        (
            entry(
                "d/link",
                EntryKind::Symlink {
                    target: "../etc/nowhere".into(),
                },
                0o777,
                0,
                1_600_000_002,
            ),
            b"",
            vec![],
        ),
        (
            entry(
                "d/suid",
                EntryKind::File { size: 5 },
                0o4755,
                0,
                1_600_000_003,
            ),
            b"hello",
            vec![xattr],
        ),
        (
            entry(
                &long,
                EntryKind::File { size: 2 },
                0o640,
                1000,
                1_600_000_004,
            ),
            b"hi",
            vec![],
        ),
        (
            entry(
                "d/z-hard",
                EntryKind::Hardlink {
                    target: LayerPath::new("d/suid").unwrap(),
                },
                0o4755,
                0,
                0,
            ),
            b"",
            vec![],
        ),
        (
            entry("sticky", EntryKind::Directory, 0o1777, 0, 1_600_000_005),
            b"",
            vec![],
        ),
    ];
    for (e, content, xattrs) in steps {
        let mut r = content;
        let reader: Option<&mut dyn Read> =
            matches!(e.kind, EntryKind::File { .. }).then_some(&mut r);
        w.append_with_xattrs(&e, &xattrs, reader).unwrap();
    }
    let (bytes, info) = w.finish().unwrap();
    (bytes, info.diff_id, info.digest)
}

#[test]
fn benign_corpus_layers_apply() {
    let scene = Scene::new();
    let blob = fs_err::read(corpus().join("benign-basic.tar")).unwrap();
    let report = apply(
        &blob[..],
        &scene.target,
        ApplyExpect::default(),
        &opts(WhiteoutMode::Overlay),
    )
    .unwrap();
    let t = &scene.target;
    let md = |p: &str| fs::symlink_metadata(t.join(p)).unwrap();
    assert_eq!(md("bin/tool").mode() & 0o7777, 0o4755);
    assert_eq!(md("bin/tool-link").ino(), md("bin/tool").ino());
    assert_eq!(fs::read_link(t.join("bin/sh")).unwrap(), Path::new("tool"));
    assert!(md("fifo").file_type().is_fifo());
    assert_eq!(md("fifo").mode() & 0o7777, 0o640);
    assert_eq!(md("shared").mode() & 0o7777, 0o2775);
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(md("tmp").mtime(), 1_700_000_000);
    assert_eq!(md("home/user").mode() & 0o7777, 0o750);
    let long = format!("deep/{}/{}", "n".repeat(150), "f".repeat(120));
    assert_eq!(fs_err::read_to_string(t.join(long)).unwrap(), "long\n");
    // The lower tree is still there (Overlay mode onto an existing dir keeps it).
    assert_eq!(
        fs_err::read_to_string(t.join("existing/file")).unwrap(),
        "lower\n"
    );
    let mut buf = [0u8; 16];
    match rustix::fs::lgetxattr(t.join("xattr-file"), "user.kiln", &mut buf[..]) {
        Ok(n) => assert_eq!(&buf[..n], b"yes"),
        Err(_) => assert_eq!(report.warning_count(WarningKind::XattrNotRestored), 1),
    }
    if is_root() {
        assert!(md("null").file_type().is_char_device());
        assert_eq!(md("null").rdev(), rustix::fs::makedev(1, 3));
        assert_eq!(
            (md("home/user/notes").uid(), md("home/user/notes").gid()),
            (1000, 1000)
        );
        assert_eq!(md("shared").gid(), 100);
    } else {
        skip("benign_corpus_layers_apply (device, owners)", "not root");
        assert_eq!(report.warning_count(WarningKind::DeviceNotCreated), 1);
    }

    let scene = Scene::new();
    let blob = fs_err::read(corpus().join("benign-gnu-longname.tar")).unwrap();
    apply(
        &blob[..],
        &scene.target,
        ApplyExpect::default(),
        &opts(WhiteoutMode::Delete),
    )
    .unwrap();
    assert!(
        scene
            .target
            .join(format!("g/{}", "L".repeat(200)))
            .is_file()
    );
}

#[test]
fn whiteouts_delete_mode() {
    let scene = Scene::new();
    let blob = fs_err::read(corpus().join("benign-whiteouts.tar")).unwrap();
    let report = apply(
        &blob[..],
        &scene.target,
        ApplyExpect::default(),
        &opts(WhiteoutMode::Delete),
    )
    .unwrap();
    let t = &scene.target;
    assert!(!t.join("gone").exists(), "whiteout deletes the lower file");
    assert!(
        !t.join("dir/old").exists(),
        "opaque dir drops lower children"
    );
    assert!(
        t.join("dir/-early").is_file(),
        "same-layer entries survive the opaque marker"
    );
    assert!(t.join("dir/new").is_file());
    assert!(t.join("existing/file").is_file());
    assert!(!t.join(".wh.gone").exists() && !t.join("dir/.wh..wh..opq").exists());
    assert_eq!(report.warning_count(WarningKind::AufsMetadataIgnored), 1);
}

#[test]
fn whiteouts_overlay_mode() {
    if !is_root() {
        return skip(
            "whiteouts_overlay_mode",
            "mknod and trusted.* xattrs need root",
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("upper");
    let blob = fs_err::read(corpus().join("benign-whiteouts.tar")).unwrap();
    apply(
        &blob[..],
        &target,
        ApplyExpect::default(),
        &opts(WhiteoutMode::Overlay),
    )
    .unwrap();
    let gone = fs::symlink_metadata(target.join("gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    let mut buf = [0u8; 4];
    let n =
        rustix::fs::lgetxattr(target.join("dir"), "trusted.overlay.opaque", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert!(target.join("dir/-early").is_file() && target.join("dir/new").is_file());
    assert!(!target.join(".wh.gone").exists());
}

fn mismatch_case(existing: bool, corrupt_diff_id: bool) {
    let (bytes, diff_id, digest) = valid_layer(Compression::Gzip);
    let scene = Scene::new();
    let target = if existing {
        scene.target.clone()
    } else {
        scene.top.join("fresh")
    };
    let before = snapshot(&scene.top);
    let wrong = Digest::of(b"not this layer");
    let expect = if corrupt_diff_id {
        ApplyExpect {
            diff_id: Some(DiffId(wrong)),
            digest: Some(digest),
        }
    } else {
        ApplyExpect {
            diff_id: Some(diff_id),
            digest: Some(BlobDigest(wrong)),
        }
    };
    let err = apply(&bytes[..], &target, expect, &opts(WhiteoutMode::Delete)).unwrap_err();
    let message = err.to_string();
    match err {
        ApplyError::DiffIdMismatch {
            expected, actual, ..
        } if corrupt_diff_id => {
            assert_eq!((expected.0, actual), (wrong, diff_id));
        }
        ApplyError::DigestMismatch {
            expected, actual, ..
        } if !corrupt_diff_id => {
            assert_eq!((expected.0, actual), (wrong, digest));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(message.contains(&wrong.to_string()), "{message}");
    assert_eq!(snapshot(&scene.top), before, "nothing may be left behind");
}

#[test]
fn mismatched_diff_id_leaves_nothing_behind() {
    mismatch_case(true, true);
    mismatch_case(false, true);
}

#[test]
fn mismatched_blob_digest_leaves_nothing_behind() {
    mismatch_case(true, false);
    mismatch_case(false, false);
}

#[test]
fn unsupported_compression_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 0];
    let err = apply(
        &xz[..],
        &tmp.path().join("t"),
        ApplyExpect::default(),
        &opts(WhiteoutMode::Delete),
    )
    .unwrap_err();
    assert!(
        matches!(err, ApplyError::UnsupportedCompression { format: "xz", .. }),
        "{err:?}"
    );
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn busybox_layer_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/make-busybox-image.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(&layout)
        .output()
        .unwrap();
    if out.status.code() == Some(77) {
        return skip(
            "busybox_layer_applies",
            &String::from_utf8_lossy(&out.stderr),
        );
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blob_path = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs_err::read(p).unwrap()).unwrap()
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob_path(index["manifests"][0]["digest"].as_str().unwrap()));
    let config = json(blob_path(manifest["config"]["digest"].as_str().unwrap()));
    let layer_digest: BlobDigest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let diff_id: DiffId = config["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let target = tmp.path().join("rootfs");
    let blob = fs_err::File::open(blob_path(&layer_digest.to_string())).unwrap();
    let report = apply(
        blob,
        &target,
        ApplyExpect {
            diff_id: Some(diff_id),
            digest: Some(layer_digest),
        },
        &opts(WhiteoutMode::Overlay),
    )
    .unwrap();
    assert_eq!(
        report.compression,
        snapshotter::apply::BlobCompression::Gzip
    );
    assert_eq!(
        fs::read_link(target.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let busybox = fs::metadata(target.join("bin/busybox")).unwrap();
    assert_eq!(busybox.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::symlink_metadata(target.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::symlink_metadata(target.join("root")).unwrap().mode() & 0o7777,
        0o700
    );
    assert!(
        fs_err::read_to_string(target.join("etc/passwd"))
            .unwrap()
            .starts_with("root:x:0:0")
    );
    assert!(report.entries > 100, "{} entries", report.entries);
}

#[test]
fn an_uncompressed_layer_reports_its_digest_as_diff_id_and_is_still_checked() {
    let (bytes, diff_id, digest) = valid_layer(Compression::Uncompressed);
    assert_eq!(
        diff_id.0, digest.0,
        "an uncompressed layer is its own tar stream"
    );
    let tmp = tempfile::tempdir().unwrap();
    let report = apply(
        &bytes[..],
        &tmp.path().join("ok"),
        ApplyExpect {
            diff_id: Some(diff_id),
            digest: Some(digest),
        },
        &opts(WhiteoutMode::Delete),
    )
    .unwrap();
    assert_eq!(report.compression, BlobCompression::Uncompressed);
    assert_eq!((report.diff_id, report.digest), (diff_id, digest));
    assert_eq!(report.compressed_size, bytes.len() as u64);
    assert_eq!(report.uncompressed_size, bytes.len() as u64);

    let wrong = DiffId(Digest::of(b"not this layer"));
    let err = apply(
        &bytes[..],
        &tmp.path().join("bad"),
        ApplyExpect {
            diff_id: Some(wrong),
            digest: None,
        },
        &opts(WhiteoutMode::Delete),
    )
    .unwrap_err();
    assert!(
        matches!(err, ApplyError::DiffIdMismatch { actual, .. } if actual == diff_id),
        "{err:?}"
    );
    assert!(!tmp.path().join("bad").exists());
}

#[test]
fn a_vouched_blob_is_not_hashed_again() {
    let (bytes, diff_id, digest) = valid_layer(Compression::Gzip);
    let tmp = tempfile::tempdir().unwrap();
    let vouched = ApplyOptions {
        verification: Verification::Vouched,
        ..opts(WhiteoutMode::Delete)
    };
    // The caller's word is taken: digests that the bytes do not have are reported back
    // unchecked, which shows that nothing was hashed (a real caller vouches only for digests
    // it verified on these bytes).
    let claimed = ApplyExpect {
        diff_id: Some(DiffId(Digest::of(b"claimed diff id"))),
        digest: Some(BlobDigest(Digest::of(b"claimed digest"))),
    };
    let report = apply(&bytes[..], &tmp.path().join("vouched"), claimed, &vouched).unwrap();
    assert_eq!(
        (Some(report.diff_id), Some(report.digest)),
        (claimed.diff_id, claimed.digest)
    );
    assert_eq!(
        fs_err::read(tmp.path().join("vouched/d/suid")).unwrap(),
        b"hello",
        "the layer landed"
    );
    assert_eq!(snapshot(&tmp.path().join("vouched")).len(), 6);

    // Without both digests there is nothing to vouch for: the apply hashes and checks.
    let half = ApplyExpect {
        diff_id: Some(DiffId(Digest::of(b"wrong"))),
        digest: None,
    };
    let err = apply(&bytes[..], &tmp.path().join("half"), half, &vouched).unwrap_err();
    assert!(
        matches!(err, ApplyError::DiffIdMismatch { actual, .. } if actual == diff_id),
        "{err:?}"
    );
    assert!(!tmp.path().join("half").exists());
    let report = apply(
        &bytes[..],
        &tmp.path().join("computed"),
        ApplyExpect::default(),
        &vouched,
    )
    .unwrap();
    assert_eq!((report.diff_id, report.digest), (diff_id, digest));
}
