//! Conformance of the two differs: each case makes the same change on a real overlayfs mount
//! (diffed from its upperdir by `diff_upperdir`) and on a copy-driver snapshot (diffed tree
//! against parent tree by `diff_trees`), then compares the layers entry by entry: path, type,
//! mode, owner, link target, xattrs and content (not mtimes: the two bases are written at
//! different times).
//!
//! - `diff_trees` must equal `diff_upperdir` with `CopyUps::DropUnchanged`, except in the one
//!   case that says otherwise (a directory removed and created again: overlay records it as
//!   opaque, a tree diff as one whiteout per removed child).
//! - `diff_upperdir` with `CopyUps::Keep` may have more: entries overlayfs copied up without
//!   changing them. Each case lists them, so the difference is explicit.
//! - The tree layer, applied with kiln's applier onto a copy of the parent, must give the new
//!   tree back.
//!
//! Needs root (overlay mounts, chown, device-free but owner-changing cases); without it, or
//! without overlayfs, every test prints `SKIP <test>: <reason>`.
#![allow(clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::io::{Read, Write as _};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{CWD, FileType, Mode, XattrFlags};
use rustix::mount::{MountFlags, UnmountFlags};
use snapshotter::apply::{ApplyExpect, ApplyOptions, Durability, WhiteoutMode, apply};
use snapshotter::diff::{CopyUps, DiffOptions, REQUIRED_MOUNT_OPTIONS, diff_trees, diff_upperdir};
use snapshotter::layer::{Compression, LayerWriter};
use snapshotter::snapshot::{self, ActiveKey, Changes, CommittedName, Snapshotter, StorageDriver};

/// Report a skip on the real stderr, visible without `--nocapture`.
fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
}

fn write(path: impl AsRef<Path>, content: &str) {
    fs_err::write(path.as_ref(), content).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The base tree and the cases

/// The parent every case starts from.
fn base(p: &Path) {
    for d in [
        "etc/conf.d",
        "usr/bin",
        "home/u",
        "var/cache/apt/lists",
        "opt/d/sub",
        "srv",
        "data",
        "lib/x",
    ] {
        fs_err::create_dir_all(p.join(d)).unwrap();
    }
    for (f, c) in [
        ("etc/hosts", "127.0.0.1 localhost"),
        ("etc/conf.d/a", "a"),
        ("etc/conf.d/b", "b"),
        ("usr/bin/tool", "#!/bin/sh\n"),
        ("home/u/.profile", "profile"),
        ("var/cache/apt/pkg", "pkg"),
        ("var/cache/apt/lists/x", "x"),
        ("opt/d/sub/x", "x"),
        ("srv/p", "file"),
        ("data/ping", "binary"),
        ("lib/x/1", "1"),
    ] {
        write(p.join(f), c);
    }
    fs_err::set_permissions(p.join("usr/bin/tool"), PermissionsExt::from_mode(0o644)).unwrap();
}

/// How `diff_upperdir` with `CopyUps::DropUnchanged` relates to `diff_trees`.
enum Dropped {
    /// Entry for entry the same.
    Same,
    /// These paths instead (the case says why).
    Differs(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    change: fn(&Path),
    /// The paths `diff_trees` writes, in order.
    tree: &'static [&'static str],
    dropped: Dropped,
    /// Paths only `CopyUps::Keep` writes: overlay copy-ups of unchanged entries.
    keep_extra: &'static [&'static str],
}

/// VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, permitted = CAP_NET_RAW (13).
fn capability() -> Vec<u8> {
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    cap
}

const CASES: &[Case] = &[
    Case {
        name: "add_file",
        change: |m| write(m.join("etc/new"), "new"),
        tree: &["etc/", "etc/new"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "modify_file",
        change: |m| write(m.join("etc/hosts"), "127.0.0.1 localhost\n::1 localhost"),
        tree: &["etc/", "etc/hosts"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "delete_file",
        change: |m| fs_err::remove_file(m.join("etc/conf.d/a")).unwrap(),
        tree: &["etc/", "etc/conf.d/", "etc/conf.d/.wh.a"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "delete_directory_tree",
        change: |m| fs_err::remove_dir_all(m.join("var/cache")).unwrap(),
        tree: &["var/", "var/.wh.cache"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "chmod_only",
        change: |m| {
            fs_err::set_permissions(m.join("usr/bin/tool"), PermissionsExt::from_mode(0o4755))
                .unwrap()
        },
        tree: &["usr/", "usr/bin/", "usr/bin/tool"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "chown_only",
        change: |m| {
            std::os::unix::fs::lchown(m.join("home/u/.profile"), Some(1000), Some(1000)).unwrap()
        },
        tree: &["home/", "home/u/", "home/u/.profile"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "replace_dir_with_file",
        change: |m| {
            fs_err::remove_dir_all(m.join("opt/d")).unwrap();
            write(m.join("opt/d"), "now a file");
        },
        tree: &["opt/", "opt/d"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "replace_file_with_dir",
        change: |m| {
            fs_err::remove_file(m.join("srv/p")).unwrap();
            fs_err::create_dir(m.join("srv/p")).unwrap();
            write(m.join("srv/p/y"), "y");
        },
        tree: &["srv/", "srv/p/", "srv/p/.wh..wh..opq", "srv/p/y"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "new_symlink",
        change: |m| std::os::unix::fs::symlink("../../etc/hosts", m.join("usr/bin/hosts")).unwrap(),
        tree: &["usr/", "usr/bin/", "usr/bin/hosts"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "hardlink_pair",
        change: |m| {
            write(m.join("usr/bin/z-new"), "shared");
            fs_err::hard_link(m.join("usr/bin/z-new"), m.join("usr/bin/a-new")).unwrap();
            // A new link to a file of the parent: both paths are written.
            fs_err::hard_link(m.join("lib/x/1"), m.join("lib/x/0-link")).unwrap();
        },
        tree: &[
            "lib/",
            "lib/x/",
            "lib/x/0-link",
            "lib/x/1",
            "usr/",
            "usr/bin/",
            "usr/bin/a-new",
            "usr/bin/z-new",
        ],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "fifo",
        change: |m| {
            rustix::fs::mknodat(
                CWD,
                m.join("usr/fifo"),
                FileType::Fifo,
                Mode::from_raw_mode(0o640),
                0,
            )
            .unwrap();
            std::os::unix::fs::lchown(m.join("usr/fifo"), Some(1234), Some(5678)).unwrap();
        },
        tree: &["usr/", "usr/fifo"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        name: "xattr",
        change: |m| {
            let cap = capability();
            rustix::fs::lsetxattr(
                m.join("data/ping"),
                "security.capability",
                &cap,
                XattrFlags::empty(),
            )
            .unwrap();
            rustix::fs::lsetxattr(m.join("etc/hosts"), "user.note", b"hi", XattrFlags::empty())
                .unwrap();
        },
        tree: &["data/", "data/ping", "etc/", "etc/hosts"],
        dropped: Dropped::Same,
        keep_extra: &[],
    },
    Case {
        // Overlay copies up a file opened for writing and a directory whose mtime moved; a
        // tree diff (like DropUnchanged) sees no change in either.
        name: "unchanged_copy_ups",
        change: |m| {
            drop(
                fs_err::OpenOptions::new()
                    .write(true)
                    .open(m.join("data/ping"))
                    .unwrap(),
            );
            write(m.join("home/u/tmp"), "t");
            fs_err::remove_file(m.join("home/u/tmp")).unwrap();
        },
        tree: &[],
        dropped: Dropped::Same,
        keep_extra: &["data/", "data/ping", "home/", "home/u/"],
    },
    Case {
        // Overlay knows the directory was replaced (opaque); a tree diff cannot tell that from
        // changes in place and removes the old children one by one. Same applied result.
        name: "directory_removed_and_created_again",
        change: |m| {
            fs_err::remove_dir_all(m.join("etc/conf.d")).unwrap();
            fs_err::create_dir(m.join("etc/conf.d")).unwrap();
            write(m.join("etc/conf.d/c"), "c");
        },
        tree: &[
            "etc/",
            "etc/conf.d/",
            "etc/conf.d/.wh.a",
            "etc/conf.d/.wh.b",
            "etc/conf.d/c",
        ],
        dropped: Dropped::Differs(&[
            "etc/",
            "etc/conf.d/",
            "etc/conf.d/.wh..wh..opq",
            "etc/conf.d/c",
        ]),
        keep_extra: &[],
    },
];

// ---------------------------------------------------------------------------------------------
// The two drivers

/// lower/upper/work/merged in a temp dir; unmounted on drop.
struct Overlay {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Overlay {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `base` in the lower, mounted; `Err` with the reason when the kernel refuses.
    fn new() -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let mut ov = Self {
            dir,
            mounted: false,
        };
        for d in ["lower", "upper", "work", "merged"] {
            fs_err::create_dir(ov.path(d)).unwrap();
        }
        base(&ov.path("lower"));
        let data = format!(
            "lowerdir={},upperdir={},workdir={},{REQUIRED_MOUNT_OPTIONS}",
            ov.path("lower").display(),
            ov.path("upper").display(),
            ov.path("work").display(),
        );
        let data = CString::new(data).unwrap();
        rustix::mount::mount(
            "overlay",
            ov.path("merged"),
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        )
        .map_err(|e| format!("cannot mount overlayfs: {e}"))?;
        ov.mounted = true;
        Ok(ov)
    }

    fn unmount(&mut self) {
        if self.mounted {
            rustix::mount::unmount(self.path("merged"), UnmountFlags::empty()).unwrap();
            self.mounted = false;
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if self.mounted {
            let _ = rustix::mount::unmount(self.path("merged"), UnmountFlags::DETACH);
        }
    }
}

/// Layers of one change made through overlayfs: with `Keep`, and with `DropUnchanged`.
fn overlay_layers(change: fn(&Path)) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut ov = Overlay::new()?;
    change(&ov.path("merged"));
    ov.unmount();
    let upper = ov.path("upper");
    let lower = ov.path("lower");
    let keep = layer(|w| diff_upperdir(&upper, &DiffOptions::default(), w).map(drop));
    let options = DiffOptions {
        copy_ups: CopyUps::DropUnchanged { lower: &lower },
        ..DiffOptions::default()
    };
    let dropped = layer(|w| diff_upperdir(&upper, &options, w).map(drop));
    Ok((keep, dropped))
}

/// A copy-driver store holding `base` committed and a child snapshot of it; dropped last.
struct CopyStore {
    _dir: tempfile::TempDir,
    parent: PathBuf,
    tree: PathBuf,
}

impl CopyStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sn = snapshot::open(&dir.path().join("snapshots"), Some(StorageDriver::Copy))
            .expect("open copy store");
        let first = sn
            .prepare(ActiveKey::new("base-key").unwrap(), None)
            .expect("prepare base");
        base(first.mounts().upperdir().expect("writable"));
        let committed = first
            .commit(&sn, CommittedName::new("base").unwrap())
            .expect("commit base");
        let step = sn
            .prepare(ActiveKey::new("step").unwrap(), Some(&committed))
            .expect("prepare step");
        let Changes::FullTree {
            tree,
            parent: Some(parent),
        } = step.changes().clone()
        else {
            panic!("copy driver gives full trees: {:?}", step.changes());
        };
        Self {
            _dir: dir,
            parent,
            tree,
        }
    }
}

/// Write a layer with `fill`, uncompressed.
fn layer(fill: impl FnOnce(&mut LayerWriter<Vec<u8>>) -> snapshotter::diff::Result<()>) -> Vec<u8> {
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed);
    fill(&mut w).expect("diff");
    w.finish().expect("finish layer").0
}

// ---------------------------------------------------------------------------------------------
// Comparing layers and trees

/// One tar entry, everything but the mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TarEntry {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    link: String,
    xattrs: BTreeMap<String, Vec<u8>>,
    content: Vec<u8>,
}

fn entries(tar_bytes: &[u8]) -> Vec<TarEntry> {
    let mut out = Vec::new();
    for e in tar::Archive::new(tar_bytes).entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = BTreeMap::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(name.to_owned(), ext.value_bytes().to_vec());
                }
            }
        }
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Regular => 'f',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            tar::EntryType::Block => 'b',
            tar::EntryType::Fifo => 'p',
            other => panic!("unexpected entry type {other:?}"),
        };
        let path = e.path().unwrap().to_str().unwrap().to_owned();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut content = Vec::new();
        e.read_to_end(&mut content).unwrap();
        out.push(TarEntry {
            path,
            kind,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            link,
            xattrs,
            content,
        });
    }
    out
}

fn paths(entries: &[TarEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

/// What a path is, for comparing an applied tree with the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Seconds (a layer carries no more); `None` for directories, whose mtimes move while
    /// children land.
    mtime: Option<i64>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// For inodes with several links: the first of its paths.
    link_group: Option<String>,
}

fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<String>> = HashMap::new();
    walk(root, root, &mut out, &mut inodes);
    for paths in inodes.values().filter(|p| p.len() > 1) {
        let first = paths.iter().min().unwrap().clone();
        for p in paths {
            out.get_mut(p).unwrap().link_group = Some(first.clone());
        }
    }
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut HashMap<u64, Vec<String>>,
) {
    for e in fs_err::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let m = fs_err::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir".to_owned()
        } else if ft.is_file() {
            format!(
                "file:{}",
                String::from_utf8_lossy(&fs_err::read(&path).unwrap())
            )
        } else if ft.is_symlink() {
            format!("symlink:{}", fs_err::read_link(&path).unwrap().display())
        } else if ft.is_fifo() {
            "fifo".to_owned()
        } else {
            format!("other:{:o}:{}", m.mode(), m.rdev())
        };
        if !ft.is_dir() && m.nlink() > 1 {
            inodes.entry(m.ino()).or_default().push(rel.clone());
        }
        out.insert(
            rel,
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: (!ft.is_dir()).then_some(m.mtime()),
                xattrs: xattrs(&path),
                link_group: None,
            },
        );
        if ft.is_dir() {
            walk(root, &path, out, inodes);
        }
    }
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 64 * 1024];
    let n = rustix::fs::llistxattr(path, &mut names[..]).unwrap_or(0);
    let mut out = BTreeMap::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        if name == "security.selinux" {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]).unwrap();
        value.truncate(len);
        out.insert(name, value);
    }
    out
}

/// Apply `layer` with kiln's applier onto a copy of `parent`; it must give `expected` back.
fn assert_round_trip(parent: &Path, layer: &[u8], expected: &Path) {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("rootfs");
    let status = Command::new("cp")
        .arg("-a")
        .arg(parent)
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a parent");
    let options = ApplyOptions {
        durability: Durability::NoSync,
        ..ApplyOptions::new(WhiteoutMode::Delete)
    };
    apply(layer, &target, ApplyExpect::default(), &options).expect("apply tree layer");
    let (got, want) = (tree(&target), tree(expected));
    if got != want {
        let mut diffs: Vec<String> = got
            .keys()
            .chain(want.keys())
            .filter(|k| got.get(*k) != want.get(*k))
            .map(|k| {
                format!(
                    "{k}:\n  applied {:?}\n  tree    {:?}",
                    got.get(k),
                    want.get(k)
                )
            })
            .collect();
        diffs.sort();
        diffs.dedup();
        panic!("parent + layer != tree:\n{}", diffs.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// The test

fn run(case: &Case) -> Result<(), String> {
    let (keep, dropped) = overlay_layers(case.change)?;
    let store = CopyStore::new();
    (case.change)(&store.tree);
    let tree_layer = layer(|w| {
        diff_trees(Some(&store.parent), &store.tree, &DiffOptions::default(), w).map(drop)
    });
    let (keep, dropped, from_tree) = (entries(&keep), entries(&dropped), entries(&tree_layer));
    let name = case.name;
    assert_eq!(paths(&from_tree), case.tree, "{name}: diff_trees paths");
    match case.dropped {
        Dropped::Same => assert_eq!(
            dropped, from_tree,
            "{name}: diff_upperdir (DropUnchanged) vs diff_trees"
        ),
        Dropped::Differs(expected) => {
            assert_eq!(paths(&dropped), expected, "{name}: DropUnchanged paths");
            // What both write for the same path is the same.
            for e in &from_tree {
                if let Some(o) = dropped.iter().find(|o| o.path == e.path) {
                    assert_eq!(o, e, "{name}: {}", e.path);
                }
            }
        }
    }
    // Keep = DropUnchanged + the listed copy-ups, each entry otherwise identical.
    let extra: Vec<&str> = keep
        .iter()
        .filter(|k| !dropped.iter().any(|d| d.path == k.path))
        .map(|k| k.path.as_str())
        .collect();
    assert_eq!(extra, case.keep_extra, "{name}: entries only Keep writes");
    for d in &dropped {
        let k = keep.iter().find(|k| k.path == d.path);
        assert_eq!(
            k,
            Some(d),
            "{name}: Keep and DropUnchanged disagree on {}",
            d.path
        );
    }
    assert_round_trip(&store.parent, &tree_layer, &store.tree);
    Ok(())
}

#[test]
fn overlay_and_tree_diffs_agree() {
    let test = "overlay_and_tree_diffs_agree";
    if !rustix::process::geteuid().is_root() {
        skip(test, "needs root to mount overlayfs and change owners");
        return;
    }
    for case in CASES {
        if let Err(reason) = run(case) {
            skip(test, &reason);
            return;
        }
        eprintln!("{test}: {} ok", case.name);
    }
}

#[test]
fn tree_diff_of_a_fresh_snapshot_adds_everything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    fs_err::create_dir(&root).unwrap();
    base(&root);
    let bytes = layer(|w| diff_trees(None, &root, &DiffOptions::default(), w).map(drop));
    let e = entries(&bytes);
    assert_eq!(e.len(), tree(&root).len(), "{:?}", paths(&e));
    assert!(e.iter().all(|e| e.kind == 'd' || e.kind == 'f'));
    let empty = dir.path().join("empty");
    fs_err::create_dir(&empty).unwrap();
    assert_round_trip(&empty, &bytes, &root);
}
