//! Overlay upperdir → OCI layer, checked against real overlayfs mounts: each case makes its
//! change through the merged view, unmounts, diffs the upperdir, checks the entries Docker's
//! overlay2 driver would emit, and applies the layer on a copy of the lower with a small
//! Docker-semantics applier (below) to compare the result with the merged view.
//!
//! Needs root and overlayfs; without them every test prints `SKIP <test>: <reason>`.
#![allow(clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timestamps, XattrFlags};
use rustix::mount::{MountFlags, UnmountFlags};
use snapshotter::diff::{
    ChangeKind, CopyUps, DiffError, DiffOptions, OverlayXattrs, REQUIRED_MOUNT_OPTIONS, UpperDiff,
    diff_upperdir,
};
use snapshotter::layer::{Compression, LayerWriter};

// ---------------------------------------------------------------------------------------------
// Overlay fixture

/// lower/upper/work/merged in a temp dir; the mount is undone on drop, then the dir removed.
struct Overlay {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Overlay {
    /// A fresh fixture, or `None` after printing why this test cannot run here.
    fn new(test: &str) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            skip(test, "needs root to mount overlayfs");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        for d in ["lower", "upper", "work", "merged"] {
            fs_err::create_dir(dir.path().join(d)).unwrap();
        }
        Some(Self {
            dir,
            mounted: false,
        })
    }

    fn lower(&self) -> PathBuf {
        self.dir.path().join("lower")
    }
    fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
    fn merged(&self) -> PathBuf {
        self.dir.path().join("merged")
    }

    /// Mount with `extra` options after the directories; `false` (after printing a SKIP) when
    /// the kernel refuses.
    fn mount(&mut self, test: &str, extra: &str) -> bool {
        let data = format!(
            "lowerdir={},upperdir={},workdir={}{}{extra}",
            self.lower().display(),
            self.upper().display(),
            self.dir.path().join("work").display(),
            if extra.is_empty() { "" } else { "," },
        );
        let data = CString::new(data).unwrap();
        match rustix::mount::mount(
            "overlay",
            self.merged(),
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        ) {
            Ok(()) => {
                self.mounted = true;
                true
            }
            Err(e) => {
                skip(test, &format!("cannot mount overlayfs with {extra:?}: {e}"));
                false
            }
        }
    }

    fn unmount(&mut self) {
        if self.mounted {
            rustix::mount::unmount(self.merged(), UnmountFlags::empty())
                .or_else(|_| rustix::mount::unmount(self.merged(), UnmountFlags::DETACH))
                .expect("unmount overlay");
            self.mounted = false;
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if self.mounted {
            let _ = rustix::mount::unmount(self.merged(), UnmountFlags::DETACH);
        }
    }
}

fn skip(test: &str, reason: &str) {
    eprintln!("SKIP {test}: {reason}");
}

/// Mount with the options kiln's snapshotter uses, or skip.
fn mounted(test: &str) -> Option<Overlay> {
    let mut ov = Overlay::new(test)?;
    ov.mount(test, REQUIRED_MOUNT_OPTIONS).then_some(ov)
}

fn write_file(path: impl AsRef<Path>, content: &[u8]) {
    fs_err::write(path.as_ref(), content).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Trees, layers and the test applier

/// What a path is, for comparing trees.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: String,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Seconds; `None` for directories (their mtimes move while children are extracted).
    mtime: Option<i64>,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// For inodes with several links: the first of its paths in this tree.
    link_group: Option<String>,
}

fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    walk(root, root, &mut out, &mut inodes);
    for paths in inodes.values() {
        let first = paths.iter().min().unwrap().clone();
        if paths.len() > 1 {
            for p in paths {
                out.get_mut(p).unwrap().link_group = Some(first.clone());
            }
        }
    }
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Node>,
    inodes: &mut HashMap<(u64, u64), Vec<String>>,
) {
    for e in fs_err::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
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
        } else if ft.is_char_device() {
            format!("char:{}", m.rdev())
        } else if ft.is_block_device() {
            format!("block:{}", m.rdev())
        } else if ft.is_fifo() {
            "fifo".to_owned()
        } else {
            "socket".to_owned()
        };
        if !ft.is_dir() && m.nlink() > 1 {
            inodes
                .entry((m.dev(), m.ino()))
                .or_default()
                .push(rel.clone());
        }
        out.insert(
            rel.clone(),
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
        if name.starts_with("trusted.overlay.") || name == "security.selinux" {
            continue;
        }
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..]).unwrap();
        value.truncate(len);
        out.insert(name, value);
    }
    out
}

/// The merged view as a tree, then unmount.
fn merged_then_unmount(ov: &mut Overlay) -> BTreeMap<String, Node> {
    let t = tree(&ov.merged());
    ov.unmount();
    t
}

/// Diff the upperdir into an uncompressed layer.
fn layer(upper: &Path, options: &DiffOptions<'_>) -> Vec<u8> {
    let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed);
    diff_upperdir(upper, options, &mut w).expect("diff upperdir");
    w.finish().expect("finish layer").0
}

/// One tar entry, as the tests look at it.
#[derive(Debug, Clone)]
struct TarEntry {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: String,
    xattrs: BTreeMap<String, Vec<u8>>,
}

fn entries(tar_bytes: &[u8]) -> Vec<TarEntry> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
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
        let h = e.header();
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
        out.push(TarEntry {
            path: e.path().unwrap().to_str().unwrap().to_owned(),
            kind,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link: e
                .link_name()
                .unwrap()
                .map(|l| l.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            xattrs,
        });
        let mut sink = Vec::new();
        e.read_to_end(&mut sink).unwrap();
    }
    out
}

fn paths(tar_bytes: &[u8]) -> Vec<String> {
    entries(tar_bytes).into_iter().map(|e| e.path).collect()
}

/// Apply a layer the way Docker's and containerd's appliers do (OCI image spec, layer.md):
/// `.wh.<name>` removes `<name>`; `.wh..wh..opq` removes what the directory had before this
/// layer; an entry replaces what is at its path unless both are directories; ownership, then
/// mode, then xattrs (a chown drops `security.capability`), then mtime.
fn apply(root: &Path, tar_bytes: &[u8]) {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut unpacked: HashSet<PathBuf> = HashSet::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let rel = PathBuf::from(e.path().unwrap().to_str().unwrap().trim_end_matches('/'));
        let name = rel.file_name().unwrap().to_str().unwrap().to_owned();
        let parent = root.join(rel.parent().unwrap());
        if name == ".wh..wh..opq" {
            for child in fs_err::read_dir(&parent).unwrap() {
                let child = child.unwrap().path();
                if !unpacked.contains(&child) {
                    remove_all(&child);
                }
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            remove_all(&parent.join(hidden));
            continue;
        }
        let target = root.join(&rel);
        let ty = e.header().entry_type();
        if let Ok(m) = fs_err::symlink_metadata(&target)
            && !(m.is_dir() && ty == tar::EntryType::Directory)
        {
            remove_all(&target);
        }
        fs_err::create_dir_all(&parent).unwrap();
        let h = e.header().clone();
        let mode = Mode::from_raw_mode(h.mode().unwrap() & 0o7777);
        let dev = || {
            rustix::fs::makedev(
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            )
        };
        match ty {
            tar::EntryType::Directory => {
                if !target.exists() {
                    fs_err::create_dir(&target).unwrap();
                }
            }
            tar::EntryType::Regular => {
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                write_file(&target, &content);
            }
            tar::EntryType::Symlink => {
                std::os::unix::fs::symlink(e.link_name().unwrap().unwrap(), &target).unwrap();
            }
            tar::EntryType::Link => {
                let src = root.join(e.link_name().unwrap().unwrap());
                fs_err::hard_link(src, &target).unwrap();
            }
            tar::EntryType::Char => {
                rustix::fs::mknodat(CWD, &target, FileType::CharacterDevice, mode, dev()).unwrap()
            }
            tar::EntryType::Block => {
                rustix::fs::mknodat(CWD, &target, FileType::BlockDevice, mode, dev()).unwrap()
            }
            tar::EntryType::Fifo => {
                rustix::fs::mknodat(CWD, &target, FileType::Fifo, mode, 0).unwrap()
            }
            other => panic!("unexpected entry type {other:?}"),
        }
        unpacked.insert(target.clone());
        if ty == tar::EntryType::Link {
            continue;
        }
        std::os::unix::fs::lchown(
            &target,
            Some(h.uid().unwrap() as u32),
            Some(h.gid().unwrap() as u32),
        )
        .unwrap();
        if ty != tar::EntryType::Symlink {
            fs_err::set_permissions(
                &target,
                std::fs::Permissions::from_mode(h.mode().unwrap() & 0o7777),
            )
            .unwrap();
        }
        if let Some(pax) = e.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                if let Some(xname) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    rustix::fs::lsetxattr(&target, xname, ext.value_bytes(), XattrFlags::empty())
                        .unwrap();
                }
            }
        }
        let t = rustix::fs::Timespec {
            tv_sec: h.mtime().unwrap() as i64,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            CWD,
            &target,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }
}

fn remove_all(path: &Path) {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs_err::remove_dir_all(path).unwrap(),
        Ok(_) => fs_err::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// Apply `layer` on a copy of the lower and compare with the merged view.
fn assert_applies_to_merged(ov: &Overlay, layer: &[u8], merged: &BTreeMap<String, Node>) {
    let out = tempfile::tempdir().unwrap();
    let applied = out.path().join("rootfs");
    let status = Command::new("cp")
        .arg("-a")
        .arg(ov.lower())
        .arg(&applied)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a lower");
    apply(&applied, layer);
    let got = tree(&applied);
    if &got != merged {
        let keys: HashSet<&String> = got.keys().chain(merged.keys()).collect();
        let mut diffs = Vec::new();
        for k in keys {
            if got.get(k) != merged.get(k) {
                diffs.push(format!(
                    "{k}:\n  applied {:?}\n  merged  {:?}",
                    got.get(k),
                    merged.get(k)
                ));
            }
        }
        diffs.sort();
        panic!("lower + layer != merged view:\n{}", diffs.join("\n"));
    }
}

/// The usual flow: change through `change`, diff with default options, check the round trip,
/// return the layer.
fn run_case(ov: &mut Overlay, change: impl FnOnce(&Path)) -> Vec<u8> {
    change(&ov.merged());
    let merged = merged_then_unmount(ov);
    let bytes = layer(&ov.upper(), &DiffOptions::default());
    assert_applies_to_merged(ov, &bytes, &merged);
    bytes
}

// ---------------------------------------------------------------------------------------------
// Cases Docker's overlay2 driver defines

#[test]
fn deleted_and_recreated_file_is_a_plain_entry() {
    let test = "deleted_and_recreated_file_is_a_plain_entry";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    write_file(ov.lower().join("f"), b"old");
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let bytes = run_case(&mut ov, |m| {
        fs_err::remove_file(m.join("f")).unwrap();
        write_file(m.join("f"), b"new");
    });
    let e = entries(&bytes);
    assert_eq!(paths(&bytes), ["f"]);
    assert_eq!(e[0].kind, 'f');
}

#[test]
fn directory_replaced_by_file_needs_no_whiteout() {
    let test = "directory_replaced_by_file_needs_no_whiteout";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    fs_err::create_dir_all(ov.lower().join("d/sub")).unwrap();
    write_file(ov.lower().join("d/sub/x"), b"x");
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let bytes = run_case(&mut ov, |m| {
        fs_err::remove_dir_all(m.join("d")).unwrap();
        write_file(m.join("d"), b"now a file");
    });
    assert_eq!(paths(&bytes), ["d"]);
    assert_eq!(entries(&bytes)[0].kind, 'f');
}

#[test]
fn file_replaced_by_directory_is_opaque() {
    let test = "file_replaced_by_directory_is_opaque";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    write_file(ov.lower().join("p"), b"file");
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let bytes = run_case(&mut ov, |m| {
        fs_err::remove_file(m.join("p")).unwrap();
        fs_err::create_dir(m.join("p")).unwrap();
        write_file(m.join("p/y"), b"y");
    });
    assert_eq!(paths(&bytes), ["p/", "p/.wh..wh..opq", "p/y"]);
}

#[test]
fn directory_deleted_and_recreated_is_opaque() {
    let test = "directory_deleted_and_recreated_is_opaque";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    fs_err::create_dir(ov.lower().join("d")).unwrap();
    for name in ["a", "b", ".hidden", "-dash"] {
        write_file(ov.lower().join("d").join(name), name.as_bytes());
    }
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let bytes = run_case(&mut ov, |m| {
        fs_err::remove_dir_all(m.join("d")).unwrap();
        fs_err::create_dir(m.join("d")).unwrap();
        // Names that sort before `.wh.` byte-wise: the marker must still come first.
        write_file(m.join("d/-dash"), b"new dash");
        write_file(m.join("d/.a"), b"new dot");
        write_file(m.join("d/c"), b"c");
    });
    assert_eq!(
        paths(&bytes),
        ["d/", "d/.wh..wh..opq", "d/-dash", "d/.a", "d/c"]
    );
}

#[test]
fn deleted_file_is_a_whiteout() {
    let test = "deleted_file_is_a_whiteout";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    fs_err::create_dir(ov.lower().join("etc")).unwrap();
    write_file(ov.lower().join("etc/gone"), b"x");
    write_file(ov.lower().join("etc/kept"), b"x");
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let bytes = run_case(&mut ov, |m| {
        fs_err::remove_file(m.join("etc/gone")).unwrap()
    });
    let e = entries(&bytes);
    assert_eq!(paths(&bytes), ["etc/", "etc/.wh.gone"]);
    let wh = &e[1];
    assert_eq!(
        (wh.kind, wh.mode, wh.uid, wh.gid, wh.mtime),
        ('f', 0, 0, 0, 0),
        "whiteouts have fixed metadata"
    );
}

#[test]
fn renamed_file_is_a_whiteout_and_a_new_entry() {
    let test = "renamed_file_is_a_whiteout_and_a_new_entry";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    write_file(ov.lower().join("old"), b"content");
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let bytes = run_case(&mut ov, |m| {
        fs_err::rename(m.join("old"), m.join("new")).unwrap();
    });
    assert_eq!(paths(&bytes), [".wh.old", "new"]);
}

#[test]
fn renamed_directory_without_redirects_is_copied() {
    let test = "renamed_directory_without_redirects_is_copied";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    fs_err::create_dir(ov.lower().join("src")).unwrap();
    write_file(ov.lower().join("src/f"), b"f");
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let bytes = run_case(&mut ov, |m| {
        // redirect_dir=off: rename(2) of a lower directory fails with EXDEV and `mv` copies.
        let status = Command::new("mv")
            .arg(m.join("src"))
            .arg(m.join("dst"))
            .status()
            .unwrap();
        assert!(status.success());
    });
    assert_eq!(paths(&bytes), [".wh.src", "dst/", "dst/f"]);
}

#[test]
fn hardlinks_point_at_the_first_sorted_path() {
    let test = "hardlinks_point_at_the_first_sorted_path";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    fs_err::create_dir(ov.lower().join("bin")).unwrap();
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let bytes = run_case(&mut ov, |m| {
        write_file(m.join("bin/z-original"), b"shared");
        fs_err::hard_link(m.join("bin/z-original"), m.join("bin/a-link")).unwrap();
        fs_err::hard_link(m.join("bin/z-original"), m.join("top-link")).unwrap();
    });
    let e = entries(&bytes);
    let got: Vec<(&str, char, &str)> = e
        .iter()
        .map(|e| (e.path.as_str(), e.kind, e.link.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("bin/", 'd', ""),
            ("bin/a-link", 'f', ""),
            ("bin/z-original", 'h', "bin/a-link"),
            ("top-link", 'h', "bin/a-link"),
        ]
    );
}

#[test]
fn xattrs_and_capabilities_are_kept_overlay_xattrs_are_not() {
    let test = "xattrs_and_capabilities_are_kept_overlay_xattrs_are_not";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    write_file(ov.lower().join("ping"), b"binary");
    write_file(ov.lower().join("plain"), b"x");
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, permitted = CAP_NET_RAW (13).
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    let cap2 = cap.clone();
    let bytes = run_case(&mut ov, move |m| {
        rustix::fs::lsetxattr(
            m.join("ping"),
            "security.capability",
            &cap2,
            XattrFlags::empty(),
        )
        .unwrap();
        rustix::fs::lsetxattr(m.join("plain"), "user.note", b"hello", XattrFlags::empty()).unwrap();
        fs_err::create_dir(m.join("dir")).unwrap();
        rustix::fs::lsetxattr(m.join("dir"), "user.dir", b"d", XattrFlags::empty()).unwrap();
    });
    let e = entries(&bytes);
    let by_path: BTreeMap<&str, &TarEntry> = e.iter().map(|e| (e.path.as_str(), e)).collect();
    assert_eq!(
        by_path["ping"].xattrs.get("security.capability"),
        Some(&cap)
    );
    assert_eq!(
        by_path["plain"].xattrs.get("user.note").map(Vec::as_slice),
        Some(&b"hello"[..])
    );
    assert_eq!(
        by_path["dir/"].xattrs.get("user.dir").map(Vec::as_slice),
        Some(&b"d"[..])
    );
    for entry in &e {
        assert!(
            entry
                .xattrs
                .keys()
                .all(|k| !k.starts_with("trusted.overlay.")),
            "{} carries overlay xattrs: {:?}",
            entry.path,
            entry.xattrs.keys()
        );
    }
    // The copied-up files do carry overlay bookkeeping in the upperdir (origin, with uuid=on).
    let upper_names = {
        let mut names = vec![0u8; 4096];
        let n = rustix::fs::llistxattr(ov.upper().join("ping"), &mut names[..]).unwrap();
        String::from_utf8_lossy(&names[..n]).into_owned()
    };
    eprintln!("upperdir xattrs of ping: {upper_names:?}");
}

#[test]
fn chmod_only_is_an_entry_with_the_new_mode() {
    let test = "chmod_only_is_an_entry_with_the_new_mode";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    fs_err::create_dir(ov.lower().join("usr")).unwrap();
    write_file(ov.lower().join("usr/tool"), b"#!/bin/sh\n");
    fs_err::set_permissions(
        ov.lower().join("usr/tool"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let bytes = run_case(&mut ov, |m| {
        fs_err::set_permissions(m.join("usr/tool"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
    });
    let e = entries(&bytes);
    assert_eq!(paths(&bytes), ["usr/", "usr/tool"]);
    assert_eq!(e[1].mode, 0o4755);
    assert_eq!(e[1].kind, 'f');
}

#[test]
fn symlinks_nodes_fifos_long_names_and_sockets() {
    let test = "symlinks_nodes_fifos_long_names_and_sockets";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let long_dir = "d".repeat(120);
    let long_name = "n".repeat(200);
    let m = ov.merged();
    std::os::unix::fs::symlink("../some/where", m.join("link")).unwrap();
    std::os::unix::fs::symlink("t".repeat(300), m.join("long-link")).unwrap();
    let mode = Mode::from_raw_mode(0o640);
    let node = |name: &str, ty, dev| rustix::fs::mknodat(CWD, m.join(name), ty, mode, dev).unwrap();
    node("null", FileType::CharacterDevice, rustix::fs::makedev(1, 3));
    node("loop9", FileType::BlockDevice, rustix::fs::makedev(7, 9));
    node("fifo", FileType::Fifo, 0);
    std::os::unix::fs::lchown(m.join("fifo"), Some(1234), Some(5678)).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(m.join("sock")).unwrap();
    fs_err::create_dir(m.join(&long_dir)).unwrap();
    write_file(m.join(&long_dir).join(&long_name), b"deep");
    let mut merged = merged_then_unmount(&mut ov);
    // A socket cannot travel in a layer: it is in the upperdir, and left out.
    assert_eq!(
        merged.remove("sock").map(|n| n.kind).as_deref(),
        Some("socket")
    );
    let bytes = layer(&ov.upper(), &DiffOptions::default());
    assert_applies_to_merged(&ov, &bytes, &merged);
    let e = entries(&bytes);
    let got: Vec<(String, char, String)> = e
        .iter()
        .map(|e| (e.path.clone(), e.kind, e.link.clone()))
        .collect();
    let long_path = format!("{long_dir}/{long_name}");
    assert_eq!(
        got,
        [
            (format!("{long_dir}/"), 'd', String::new()),
            (long_path, 'f', String::new()),
            ("fifo".to_owned(), 'p', String::new()),
            ("link".to_owned(), 'l', "../some/where".to_owned()),
            ("long-link".to_owned(), 'l', "t".repeat(300)),
            ("loop9".to_owned(), 'b', String::new()),
            ("null".to_owned(), 'c', String::new()),
        ]
    );
    let fifo = e.iter().find(|e| e.path == "fifo").unwrap();
    assert_eq!((fifo.uid, fifo.gid, fifo.mode), (1234, 5678, 0o640));
}

// ---------------------------------------------------------------------------------------------
// Determinism, options and refusals

#[test]
fn source_date_epoch_clamps_mtimes_and_dates_whiteouts() {
    let test = "source_date_epoch_clamps_mtimes_and_dates_whiteouts";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    write_file(ov.lower().join("gone"), b"x");
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let m = ov.merged();
    fs_err::remove_file(m.join("gone")).unwrap();
    write_file(m.join("new"), b"n");
    let old = rustix::fs::Timespec {
        tv_sec: 1_000,
        tv_nsec: 5,
    };
    write_file(m.join("ancient"), b"a");
    rustix::fs::utimensat(
        CWD,
        m.join("ancient"),
        &Timestamps {
            last_access: old,
            last_modification: old,
        },
        AtFlags::empty(),
    )
    .unwrap();
    ov.unmount();
    let epoch = 1_700_000_000;
    let options = DiffOptions {
        source_date_epoch: Some(epoch),
        ..DiffOptions::default()
    };
    let first = layer(&ov.upper(), &options);
    let second = layer(&ov.upper(), &options);
    assert_eq!(first, second, "the same upperdir gives the same bytes");
    let e = entries(&first);
    let mtimes: Vec<(&str, u64)> = e.iter().map(|e| (e.path.as_str(), e.mtime)).collect();
    assert_eq!(
        mtimes,
        [(".wh.gone", epoch), ("ancient", 1_000), ("new", epoch)]
    );
}

#[test]
fn redirect_dir_on_is_refused() {
    let test = "redirect_dir_on_is_refused";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    fs_err::create_dir(ov.lower().join("src")).unwrap();
    write_file(ov.lower().join("src/f"), b"f");
    if !ov.mount(test, "redirect_dir=on,metacopy=off") {
        return;
    }
    fs_err::rename(ov.merged().join("src"), ov.merged().join("dst")).unwrap();
    // While mounted, the mount options give it away.
    match UpperDiff::scan(&ov.upper(), &DiffOptions::default()) {
        Err(DiffError::UnsafeMount { option, .. }) => assert_eq!(option, "redirect_dir=on"),
        other => panic!("expected UnsafeMount, got {other:?}"),
    }
    ov.unmount();
    // Afterwards, the redirect xattr does.
    match UpperDiff::scan(&ov.upper(), &DiffOptions::default()) {
        Err(e @ DiffError::Redirect { .. }) => {
            assert!(e.to_string().contains("redirect_dir=off"), "{e}")
        }
        other => panic!("expected Redirect, got {other:?}"),
    }
}

#[test]
fn metacopy_on_is_refused() {
    let test = "metacopy_on_is_refused";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    write_file(ov.lower().join("f"), b"data stays below");
    if !ov.mount(test, "redirect_dir=on,metacopy=on") {
        return;
    }
    fs_err::set_permissions(
        ov.merged().join("f"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    ov.unmount();
    match UpperDiff::scan(&ov.upper(), &DiffOptions::default()) {
        Err(DiffError::Metacopy { .. }) => {}
        other => panic!("expected Metacopy, got {other:?}"),
    }
}

#[test]
fn userxattr_mounts_use_user_overlay_opaque() {
    let test = "userxattr_mounts_use_user_overlay_opaque";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    fs_err::create_dir(ov.lower().join("d")).unwrap();
    write_file(ov.lower().join("d/old"), b"x");
    if !ov.mount(test, OverlayXattrs::User.mount_options()) {
        return;
    }
    let m = ov.merged();
    fs_err::remove_dir_all(m.join("d")).unwrap();
    fs_err::create_dir(m.join("d")).unwrap();
    let merged = merged_then_unmount(&mut ov);
    let options = DiffOptions {
        xattrs: OverlayXattrs::User,
        ..DiffOptions::default()
    };
    let bytes = layer(&ov.upper(), &options);
    assert_eq!(paths(&bytes), ["d/", "d/.wh..wh..opq"]);
    assert!(entries(&bytes)[0].xattrs.is_empty());
    assert_applies_to_merged(&ov, &bytes, &merged);
}

#[test]
fn reserved_whiteout_names_are_refused() {
    let test = "reserved_whiteout_names_are_refused";
    let Some(mut ov) = mounted(test) else { return };
    write_file(ov.merged().join(".wh.sneaky"), b"x");
    ov.unmount();
    match UpperDiff::scan(&ov.upper(), &DiffOptions::default()) {
        Err(DiffError::ReservedName { path }) => assert_eq!(path.as_str(), ".wh.sneaky"),
        other => panic!("expected ReservedName, got {other:?}"),
    }
}

#[test]
fn drop_unchanged_copy_ups_like_buildkit() {
    let test = "drop_unchanged_copy_ups_like_buildkit";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    for d in ["a/deep", "b", "c"] {
        fs_err::create_dir_all(ov.lower().join(d)).unwrap();
    }
    write_file(ov.lower().join("a/deep/touched"), b"same");
    write_file(ov.lower().join("b/changed"), b"old");
    write_file(ov.lower().join("c/gone"), b"x");
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let m = ov.merged();
    // Open for writing without writing: copied up, unchanged.
    drop(
        fs_err::OpenOptions::new()
            .write(true)
            .open(m.join("a/deep/touched"))
            .unwrap(),
    );
    let mut f = fs_err::OpenOptions::new()
        .append(true)
        .open(m.join("b/changed"))
        .unwrap();
    f.write_all(b" and new").unwrap();
    drop(f);
    fs_err::remove_file(m.join("c/gone")).unwrap();
    // A file that only ever lived in the upperdir: no whiteout, nothing at all.
    write_file(m.join("c/tmp"), b"t");
    fs_err::remove_file(m.join("c/tmp")).unwrap();
    let merged = merged_then_unmount(&mut ov);
    assert!(
        ov.upper().join("a/deep/touched").exists(),
        "overlay copied it up"
    );

    let keep = layer(&ov.upper(), &DiffOptions::default());
    assert_eq!(
        paths(&keep),
        [
            "a/",
            "a/deep/",
            "a/deep/touched",
            "b/",
            "b/changed",
            "c/",
            "c/.wh.gone"
        ]
    );
    let lower = ov.lower();
    let drop_unchanged = DiffOptions {
        copy_ups: CopyUps::DropUnchanged { lower: &lower },
        ..DiffOptions::default()
    };
    let dropped = layer(&ov.upper(), &drop_unchanged);
    assert_eq!(paths(&dropped), ["b/", "b/changed", "c/", "c/.wh.gone"]);
    assert_applies_to_merged(&ov, &dropped, &merged);
    assert_applies_to_merged(&ov, &keep, &merged);
}

#[test]
fn drop_unchanged_keeps_opaque_markers_only_over_lower_entries() {
    let test = "drop_unchanged_keeps_opaque_markers_only_over_lower_entries";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    fs_err::create_dir(ov.lower().join("d")).unwrap();
    write_file(ov.lower().join("d/x"), b"x");
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let m = ov.merged();
    fs_err::remove_dir_all(m.join("d")).unwrap();
    fs_err::create_dir(m.join("d")).unwrap();
    fs_err::create_dir(m.join("d/inner")).unwrap();
    let merged = merged_then_unmount(&mut ov);
    let lower = ov.lower();
    let options = DiffOptions {
        copy_ups: CopyUps::DropUnchanged { lower: &lower },
        ..DiffOptions::default()
    };
    let changes = UpperDiff::scan(&ov.upper(), &options).unwrap();
    let kinds: Vec<(&str, &ChangeKind)> = changes
        .changes()
        .iter()
        .map(|c| (c.path.as_str(), &c.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("d", &ChangeKind::Directory),
            ("d/.wh..wh..opq", &ChangeKind::OpaqueWhiteout),
            ("d/inner", &ChangeKind::Directory),
        ]
    );
    assert_applies_to_merged(&ov, &layer(&ov.upper(), &options), &merged);
}

#[test]
fn many_changes_round_trip() {
    let test = "many_changes_round_trip";
    let Some(mut ov) = Overlay::new(test) else {
        return;
    };
    let l = ov.lower();
    for d in [
        "etc/conf.d",
        "usr/bin",
        "usr/lib/x",
        "var/cache/apt",
        "home/u",
    ] {
        fs_err::create_dir_all(l.join(d)).unwrap();
    }
    for (p, c) in [
        ("etc/hosts", "127.0.0.1 localhost"),
        ("etc/conf.d/a", "a"),
        ("etc/conf.d/b", "b"),
        ("usr/bin/tool", "tool"),
        ("usr/lib/x/1", "1"),
        ("usr/lib/x/2", "2"),
        ("var/cache/apt/pkg", "pkg"),
        ("home/u/.profile", "profile"),
    ] {
        write_file(l.join(p), c.as_bytes());
    }
    std::os::unix::fs::symlink("tool", l.join("usr/bin/alias")).unwrap();
    fs_err::hard_link(l.join("usr/lib/x/1"), l.join("usr/lib/x/1-link")).unwrap();
    if !ov.mount(test, REQUIRED_MOUNT_OPTIONS) {
        return;
    }
    let bytes = run_case(&mut ov, |m| {
        write_file(m.join("etc/hosts"), b"127.0.0.1 localhost\n::1 localhost");
        fs_err::remove_dir_all(m.join("var/cache/apt")).unwrap();
        fs_err::create_dir(m.join("var/cache/apt")).unwrap();
        write_file(m.join("var/cache/apt/lock"), b"");
        fs_err::remove_file(m.join("usr/bin/alias")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/tool", m.join("usr/bin/alias")).unwrap();
        fs_err::remove_dir_all(m.join("usr/lib/x")).unwrap();
        write_file(m.join("usr/lib/x"), b"was a dir");
        fs_err::rename(m.join("etc/conf.d/a"), m.join("etc/conf.d/c")).unwrap();
        std::os::unix::fs::lchown(m.join("home/u/.profile"), Some(1000), Some(1000)).unwrap();
        fs_err::create_dir_all(m.join("opt/app/bin")).unwrap();
        write_file(m.join("opt/app/bin/run"), b"run");
        fs_err::hard_link(m.join("opt/app/bin/run"), m.join("opt/app/run")).unwrap();
    });
    let listing = paths(&bytes);
    for expected in [
        "etc/conf.d/.wh.a",
        "etc/conf.d/c",
        "var/cache/apt/.wh..wh..opq",
        "usr/lib/x",
        "home/u/.profile",
    ] {
        assert!(
            listing.iter().any(|p| p == expected),
            "{expected} in {listing:?}"
        );
    }
    // The same layer through gzip has the same DiffID.
    let mut plain = LayerWriter::new(Vec::new(), Compression::Uncompressed);
    diff_upperdir(&ov.upper(), &DiffOptions::default(), &mut plain).unwrap();
    let (_, plain_info) = plain.finish().unwrap();
    let mut gz = LayerWriter::new(Vec::new(), Compression::Gzip);
    diff_upperdir(&ov.upper(), &DiffOptions::default(), &mut gz).unwrap();
    let (_, gz_info) = gz.finish().unwrap();
    assert_eq!(plain_info.diff_id, gz_info.diff_id);
}
