//! ADD of a local archive: detected by content and extracted into the destination directory
//! (BuildKit `llbsolver/file/backend.go` `unpack` / `isArchivePath`; Dockerfile reference,
//! "ADD" > "Adding local tar archives"):
//!
//! - a regular file whose bytes, after gzip, bzip2, xz or zstd decompression (chosen by magic
//!   number, as `compression.DecompressStream`) or none, start with a valid tar header is an
//!   archive; anything else (a compressed non-tar file included) is copied as is;
//! - entries keep the archive's owners, modes and mtimes (`--chown`/`--chmod` do not apply
//!   to them, as BuildKit's `chrootarchive.Untar`); directory mtimes are set last;
//! - the destination directory is the extraction's root, as the chroot of `chrootarchive`:
//!   `..` in entry names and symlinks met on the way (absolute ones too) resolve inside it,
//!   so no entry lands outside the destination;
//! - a parent directory the archive has no entry for (`pkg/f` without `pkg/`) is created
//!   0755 and owned by root, as moby's `archive.Unpack` does (`MkdirAllAndChownNew(parent,
//!   0o755, rootIDs)`); it is dated like the other directories a file step creates
//!   (`SOURCE_DATE_EPOCH`, else 0) where moby leaves the extraction time. A later entry for it
//!   sets its metadata as the archive has it.
//!
//! Differences: a device, fifo or socket entry is refused (a file step cannot create one), and a
//! non-directory entry over an existing directory is an error instead of removing the
//! directory.
//!
//! Not responsible for: deciding whether a source is extracted (the copy asks
//! [`is_archive`] for ADD's local sources only).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use snapshotter::layer::LayerPath;

use crate::archive::compression::Compression;
use crate::solver::inroot::{InRoot, InRootError, StatKind};

/// Why an archive could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading archive `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("archive `{archive}`: entry `{entry}` is a {kind}, which ADD does not extract")]
    UnsupportedEntry {
        archive: PathBuf,
        entry: String,
        kind: &'static str,
    },
    #[error("archive `{archive}`: entry `{entry}` has an invalid name")]
    BadName { archive: PathBuf, entry: String },
    #[error(
        "archive `{archive}`: hard link `{entry}` points to `{target}`, which is not in the archive"
    )]
    BadLink {
        archive: PathBuf,
        entry: String,
        target: String,
    },
    #[error(transparent)]
    InRoot(#[from] InRootError),
}

/// The decompressed stream of the file at `path`.
fn open(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut file = BufReader::new(fs_err::File::open(path)?);
    let magic = file.fill_buf()?.to_vec();
    Ok(Box::new(Compression::detect(&magic).decoder(file)?))
}

/// Whether the regular file at `path` is a (possibly compressed) tar archive: its first 512
/// decompressed bytes are a tar header with a valid checksum.
pub fn is_archive(path: &Path) -> bool {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_file() => {}
        _ => return false,
    }
    let Ok(mut stream) = open(path) else {
        return false;
    };
    let mut block = [0u8; 512];
    if stream.read_exact(&mut block).is_err() {
        return false;
    }
    valid_header(&block)
}

/// A tar header block: not all zeros, and its checksum field matches (unsigned or signed sum,
/// as Go's `archive/tar`).
fn valid_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .map(|b| *b as char)
        .filter(|c| c.is_ascii_digit())
        .collect();
    let Ok(stored) = i64::from_str_radix(&text, 8) else {
        return false;
    };
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || stored == signed
}

/// Extract the archive at `host` into `dest` (`None`: the image root) of `root`; the paths
/// written are added to `touched`. `created_mtime` dates the parent directories the archive
/// has no entry for.
pub fn extract(
    host: &Path,
    root: &InRoot,
    dest: Option<&LayerPath>,
    created_mtime: i64,
    touched: &mut BTreeSet<LayerPath>,
) -> Result<(), ArchiveError> {
    let read_err = |source: std::io::Error| ArchiveError::Read {
        path: host.to_owned(),
        source,
    };
    let base = dest.map_or("", LayerPath::as_str).to_owned();
    let mut archive = tar::Archive::new(open(host).map_err(read_err)?);
    // Directory times are set after their contents are written.
    let mut dir_times: BTreeMap<LayerPath, i64> = BTreeMap::new();
    // Entry names (as in the archive, cleaned) to where they were written, for hard links.
    let mut written: BTreeMap<String, LayerPath> = BTreeMap::new();
    // Directories known to exist below the destination (no lstat for each entry's parents).
    let mut dirs: BTreeSet<LayerPath> = BTreeSet::new();
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let Some(cleaned) = clean(&name) else {
            // `.` / `./`: the destination itself.
            continue;
        };
        let header = entry.header().clone();
        let mode = header.mode().map_err(read_err)? & 0o7777;
        let uid = header.uid().map_err(read_err)?;
        let gid = header.gid().map_err(read_err)?;
        let mtime = i64::try_from(header.mtime().map_err(read_err)?).unwrap_or(i64::MAX);
        let path = resolve_under(root, &base, &cleaned)?.ok_or_else(|| ArchiveError::BadName {
            archive: host.to_owned(),
            entry: name.clone(),
        })?;
        let unsupported = |kind| ArchiveError::UnsupportedEntry {
            archive: host.to_owned(),
            entry: name.clone(),
            kind,
        };
        let entry_type = header.entry_type();
        if matches!(
            entry_type,
            tar::EntryType::Directory
                | tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::Symlink
                | tar::EntryType::Link
        ) {
            let made = implicit_parents(root, &base, &path, &mut dirs)?;
            for p in made {
                dir_times.insert(p.clone(), created_mtime);
                touched.insert(p);
            }
        }
        match entry_type {
            tar::EntryType::Directory => {
                root.make_dir(&path, mode, uid, gid)?;
                dir_times.insert(path.clone(), mtime);
                dirs.insert(path.clone());
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                root.write_file(&path, &mut entry, mode, uid, gid, mtime)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                root.symlink(&path, &target, uid, gid, mtime)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let existing = clean(&target)
                    .and_then(|t| written.get(&t).cloned())
                    .ok_or_else(|| ArchiveError::BadLink {
                        archive: host.to_owned(),
                        entry: name.clone(),
                        target: target.clone(),
                    })?;
                root.hard_link(&path, &existing)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => return Err(unsupported("device")),
            tar::EntryType::Fifo => return Err(unsupported("fifo")),
            // PAX and GNU long-name headers are consumed by the reader; others are skipped.
            _ => continue,
        }
        written.insert(cleaned, path.clone());
        touched.insert(path);
    }
    for (path, mtime) in dir_times.iter().rev() {
        root.set_mtime(path, *mtime)?;
    }
    Ok(())
}

/// Create the missing directories between `base` (exclusive, it exists) and `path`
/// (exclusive), 0755 root-owned; returns those created, top down. `known` caches the
/// directories already seen.
fn implicit_parents(
    root: &InRoot,
    base: &str,
    path: &LayerPath,
    known: &mut BTreeSet<LayerPath>,
) -> Result<Vec<LayerPath>, InRootError> {
    let mut made = Vec::new();
    for parent in path.ancestors() {
        let below_base = base.is_empty()
            || (parent.as_str().len() > base.len()
                && parent.as_str().starts_with(base)
                && parent.as_str().as_bytes()[base.len()] == b'/');
        if !below_base || known.contains(&parent) {
            continue;
        }
        match root.lstat(&parent)? {
            // A non-directory in the way is left for the entry's own write to refuse.
            Some(_) => {}
            None => {
                root.make_dir(&parent, 0o755, 0, 0)?;
                made.push(parent.clone());
            }
        }
        known.insert(parent);
    }
    Ok(made)
}

/// An entry name without `./`, empty components and trailing `/`; `None` for the root.
/// `..` is kept for [`resolve_under`] to clamp.
fn clean(name: &str) -> Option<String> {
    let parts: Vec<&str> = name
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Longest chain of symlinks followed for one entry (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// Resolve `name` as if `base` (a directory of `root`, `""` for the root) were `/`: `..`
/// stops at it, and symlinks on the way (not the last component) are followed inside it.
/// Returns the real layer path of the entry; `None` if the entry is the base itself.
fn resolve_under(root: &InRoot, base: &str, name: &str) -> Result<Option<LayerPath>, InRootError> {
    let join = |parts: &[String]| {
        let mut all: Vec<&str> = Vec::new();
        if !base.is_empty() {
            all.push(base);
        }
        all.extend(parts.iter().map(String::as_str));
        all.join("/")
    };
    let mut resolved: Vec<String> = Vec::new();
    let mut pending: Vec<String> = name.split('/').rev().map(str::to_owned).collect();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        resolved.push(c);
        // The last component is the entry itself: never followed.
        if pending.iter().all(|p| p.is_empty() || p == ".") {
            break;
        }
        let Ok(here) = LayerPath::new(&join(&resolved)) else {
            continue;
        };
        if let Some(st) = root.lstat(&here)?
            && st.kind == StatKind::Symlink
            && links < MAX_SYMLINKS
        {
            links += 1;
            let target = root.read_link(&here)?;
            resolved.pop();
            if target.starts_with('/') {
                resolved.clear();
            }
            pending.extend(target.split('/').rev().map(str::to_owned));
        }
    }
    if resolved.is_empty() {
        return Ok(None);
    }
    Ok(LayerPath::new(&join(&resolved)).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tool(cmd: &str) -> bool {
        Command::new(cmd).arg("--version").output().is_ok()
    }

    /// A tree with a file, a directory, a symlink and a hard link, as tar archives in every
    /// compression.
    fn archives(dir: &Path) -> Vec<PathBuf> {
        let src = dir.join("src");
        fs_err::create_dir_all(src.join("d")).unwrap();
        fs_err::write(src.join("d/f"), "hello").unwrap();
        std::os::unix::fs::symlink("d/f", src.join("l")).unwrap();
        fs_err::hard_link(src.join("d/f"), src.join("h")).unwrap();
        let tar = dir.join("a.tar");
        let ok = Command::new("tar")
            .args([
                "-cf",
                tar.to_str().unwrap(),
                "-C",
                src.to_str().unwrap(),
                ".",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let mut out = vec![tar.clone()];
        for (tool_name, ext) in [
            ("gzip", "gz"),
            ("bzip2", "bz2"),
            ("xz", "xz"),
            ("zstd", "zst"),
        ] {
            if !tool(tool_name) {
                continue;
            }
            let target = dir.join(format!("a.tar.{ext}"));
            let output = Command::new(tool_name)
                .args(["-c"])
                .stdin(fs_err::File::open(&tar).unwrap().into_parts().0)
                .output()
                .unwrap();
            fs_err::write(&target, output.stdout).unwrap();
            out.push(target);
        }
        out
    }

    #[test]
    fn detects_and_extracts_every_compression() {
        let d = tempfile::tempdir().unwrap();
        let all = archives(d.path());
        assert!(all.len() >= 2, "tar and at least gzip");
        // A compressed non-tar file and a plain file are not archives.
        fs_err::write(d.path().join("plain"), "not a tar").unwrap();
        assert!(!is_archive(&d.path().join("plain")));
        let gz = Command::new("gzip")
            .arg("-c")
            .stdin(
                fs_err::File::open(d.path().join("plain"))
                    .unwrap()
                    .into_parts()
                    .0,
            )
            .output()
            .unwrap();
        fs_err::write(d.path().join("plain.gz"), gz.stdout).unwrap();
        assert!(!is_archive(&d.path().join("plain.gz")));
        for a in &all {
            assert!(is_archive(a), "{}", a.display());
            let out = tempfile::tempdir().unwrap();
            let root = InRoot::open(out.path()).unwrap();
            let dest = LayerPath::new("opt/x").unwrap();
            root.make_dir(&LayerPath::new("opt").unwrap(), 0o755, 0, 0)
                .unwrap();
            root.make_dir(&dest, 0o755, 0, 0).unwrap();
            let mut touched = BTreeSet::new();
            extract(a, &root, Some(&dest), 0, &mut touched).unwrap();
            assert_eq!(
                fs_err::read_to_string(out.path().join("opt/x/d/f")).unwrap(),
                "hello"
            );
            assert_eq!(
                fs_err::read_link(out.path().join("opt/x/l")).unwrap(),
                Path::new("d/f")
            );
            use std::os::unix::fs::MetadataExt;
            let f = fs_err::metadata(out.path().join("opt/x/d/f")).unwrap();
            let h = fs_err::metadata(out.path().join("opt/x/h")).unwrap();
            assert_eq!(f.ino(), h.ino(), "hard link kept");
            assert!(touched.contains(&LayerPath::new("opt/x/d/f").unwrap()));
        }
    }

    #[test]
    fn entries_stay_inside_the_destination() {
        let d = tempfile::tempdir().unwrap();
        let root = InRoot::open(d.path()).unwrap();
        fs_err::create_dir_all(d.path().join("dest")).unwrap();
        fs_err::create_dir_all(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("dest/abs")).unwrap();
        std::os::unix::fs::symlink("../../etc", d.path().join("dest/rel")).unwrap();
        let p = |s: &str| {
            resolve_under(&root, "dest", s)
                .unwrap()
                .map(|p| p.as_str().to_owned())
        };
        assert_eq!(p("../../x").as_deref(), Some("dest/x"));
        assert_eq!(p("abs/passwd").as_deref(), Some("dest/etc/passwd"));
        assert_eq!(p("rel/passwd").as_deref(), Some("dest/etc/passwd"));
        assert_eq!(
            p("abs").as_deref(),
            Some("dest/abs"),
            "the entry itself is not followed"
        );
        assert_eq!(p(".."), None);
    }

    #[test]
    fn parents_without_entries_are_created_0755_root() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        // `pkg/sub/f` and `pkg/l` with no entry for `pkg/` or `pkg/sub/`; then `other/` late.
        let tar_path = d.path().join("a.tar");
        let mut b = tar::Builder::new(fs_err::File::create(&tar_path).unwrap());
        let file = |b: &mut tar::Builder<_>, name: &str, kind: tar::EntryType, mode| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(1000);
            h.set_gid(2000);
            h.set_mtime(77);
            if kind == tar::EntryType::Symlink {
                h.set_link_name("sub/f").unwrap();
            }
            let data: &[u8] = if kind == tar::EntryType::Regular {
                b"x"
            } else {
                b""
            };
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data).unwrap();
        };
        file(&mut b, "pkg/sub/f", tar::EntryType::Regular, 0o640);
        file(&mut b, "pkg/l", tar::EntryType::Symlink, 0o777);
        file(&mut b, "other/deep/g", tar::EntryType::Regular, 0o600);
        file(&mut b, "other/", tar::EntryType::Directory, 0o700);
        b.into_inner().unwrap();
        assert!(is_archive(&tar_path));

        let out = tempfile::tempdir().unwrap();
        let root = InRoot::open(out.path()).unwrap();
        let dest = LayerPath::new("owned").unwrap();
        root.make_dir(&dest, 0o755, 0, 0).unwrap();
        let mut touched = BTreeSet::new();
        extract(&tar_path, &root, Some(&dest), 5, &mut touched).unwrap();
        let meta = |p: &str| fs_err::symlink_metadata(out.path().join(p)).unwrap();
        for implicit in ["owned/pkg", "owned/pkg/sub", "owned/other/deep"] {
            let m = meta(implicit);
            assert!(m.is_dir(), "{implicit}");
            assert_eq!(
                (m.permissions().mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
                (0o755, 0, 0, 5),
                "{implicit}"
            );
            assert!(touched.contains(&LayerPath::new(implicit).unwrap()));
        }
        let f = meta("owned/pkg/sub/f");
        assert_eq!(
            (f.permissions().mode() & 0o7777, f.uid(), f.gid(), f.mtime()),
            (0o640, 1000, 2000, 77)
        );
        // An entry for a directory created implicitly before gives it the archive's metadata.
        let other = meta("owned/other");
        assert_eq!(
            (
                other.permissions().mode() & 0o7777,
                other.uid(),
                other.mtime()
            ),
            (0o700, 1000, 77)
        );
        // Into the image root too.
        let out = tempfile::tempdir().unwrap();
        let root = InRoot::open(out.path()).unwrap();
        let mut touched = BTreeSet::new();
        extract(&tar_path, &root, None, 0, &mut touched).unwrap();
        assert!(out.path().join("pkg/sub/f").is_file());
        assert!(touched.contains(&LayerPath::new("pkg").unwrap()));
    }
}
