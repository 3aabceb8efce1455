//! COPY from the build context into a new layer, with Docker's semantics:
//! - a directory source copies its *contents* into the destination;
//! - a file goes *into* the destination when it ends with `/` or is an existing directory,
//!   otherwise it becomes the destination;
//! - several sources need a destination ending with `/`;
//! - a relative destination is under WORKDIR; symlinks in the image's destination path are
//!   followed inside the image root (merged-/usr images);
//! - owner is 0:0 unless `--chown`, mode is the source's unless `--chmod`; mtimes are the
//!   source's (clamped to `SOURCE_DATE_EPOCH` when set); hard links inside a source stay links.
//!
//! The copy is performed in the step's writable rootfs (a snapshot, see `rootfs`), through
//! root-bounded operations (`inroot`): the destination is resolved inside the image root, and
//! no `..` or symlink in the image or the context can make a write land outside it. Missing
//! parent directories are created 0755 root (mtime `SOURCE_DATE_EPOCH`, else 0); existing ones
//! are kept as the image has them (the layer then carries them as the rootfs has them after the
//! copy: an overlay copy-up, e.g. `/tmp` with its mode 1777). Directory mtimes are set after
//! their children are written.
//!
//! Sources come from the context as its `.dockerignore` leaves it (see `context`): a directory
//! source copies only the entries the ignore file keeps, and naming an excluded source fails as
//! not found.
//!
//! Not responsible for: wildcards, `--from`, `--link`, `--parents`, `--exclude` (the full
//! engine), or matching ignore rules (the context does).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::Metadata;
use std::io::BufReader;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use snapshotter::layer::{LayerError, LayerPath};

use crate::solver::context::{Context, ContextError, WalkEntry};
use crate::solver::inroot::{InRoot, InRootError, StatKind};
use crate::solver::rootfs::Touched;
use crate::store::StoreError;

/// Errors of a COPY.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(
        "when using COPY with more than one source file, the destination must be a directory and end with a /"
    )]
    DestinationNotDirectory,
    #[error("copying `{pattern}`: wildcards in COPY sources are not supported yet")]
    Wildcard { pattern: String },
    #[error("`{path}` in the build context is a {kind}, which COPY does not support")]
    UnsupportedType { path: PathBuf, kind: &'static str },
    #[error("reading `{path}` in the build context")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("destination `{0}` is not a valid path")]
    BadDestination(String),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    InRoot(#[from] InRootError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A COPY with its words already expanded.
#[derive(Debug, Clone)]
pub struct CopySpec {
    pub sources: Vec<String>,
    pub dest: String,
    /// Absolute WORKDIR the destination is relative to.
    pub workdir: String,
    pub chown: Option<(u64, u64)>,
    pub chmod: Option<u32>,
    /// `SOURCE_DATE_EPOCH`: clamps mtimes and dates created directories.
    pub epoch: Option<u64>,
}

/// Where a planned entry's bytes come from.
#[derive(Debug, Clone)]
enum Source {
    Dir,
    File {
        host: PathBuf,
        dev_ino: Option<(u64, u64)>,
    },
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Planned {
    source: Source,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

/// Perform the COPY in `root` (the step's writable rootfs); returns the paths written.
pub fn copy_into(ctx: &Context, root: &InRoot, spec: &CopySpec) -> Result<Touched, CopyError> {
    let planned = plan(ctx, root, spec)?;
    let mut first_link: HashMap<(u64, u64), LayerPath> = HashMap::new();
    for (path, p) in &planned {
        let mtime = i64::try_from(p.mtime).unwrap_or(i64::MAX);
        match &p.source {
            Source::Dir => root.make_dir(path, p.mode, p.uid, p.gid)?,
            Source::Symlink(target) => root.symlink(path, target, p.uid, p.gid, mtime)?,
            Source::File { host, dev_ino, .. } => {
                if let Some(key) = dev_ino
                    && let Some(first) = first_link.get(key)
                {
                    root.hard_link(path, first)?;
                    continue;
                }
                if let Some(key) = dev_ino {
                    first_link.insert(*key, path.clone());
                }
                let f = fs_err::File::open(host).map_err(|source| CopyError::Read {
                    path: host.clone(),
                    source,
                })?;
                let mut reader = BufReader::with_capacity(128 * 1024, f);
                root.write_file(path, &mut reader, p.mode, p.uid, p.gid, mtime)?;
            }
        }
    }
    // Directory times last, children first: writing into a directory changes its mtime.
    for (path, p) in planned.iter().rev() {
        if matches!(p.source, Source::Dir) {
            root.set_mtime(path, i64::try_from(p.mtime).unwrap_or(i64::MAX))?;
        }
    }
    Ok(Touched {
        paths: planned.into_keys().collect(),
    })
}

fn plan(
    ctx: &Context,
    root: &InRoot,
    spec: &CopySpec,
) -> Result<BTreeMap<LayerPath, Planned>, CopyError> {
    let dest_abs = if spec.dest.starts_with('/') {
        spec.dest.clone()
    } else {
        format!("{}/{}", spec.workdir.trim_end_matches('/'), spec.dest)
    };
    let dir_hint = dest_abs.ends_with('/') || dest_abs.ends_with("/.") || spec.dest == ".";
    if spec.sources.len() > 1 && !dir_hint {
        return Err(CopyError::DestinationNotDirectory);
    }
    let dest_rel = root.resolve(&dest_abs)?;
    let dest_path = if dest_rel.is_empty() {
        None
    } else {
        Some(LayerPath::new(&dest_rel).map_err(|_| CopyError::BadDestination(spec.dest.clone()))?)
    };
    let dest_kind = match &dest_path {
        Some(p) => root.lstat(p)?.map(|st| st.kind),
        None => Some(StatKind::Directory),
    };
    let dest_is_dir = dir_hint || dest_kind == Some(StatKind::Directory);

    let mut out: BTreeMap<LayerPath, Planned> = BTreeMap::new();
    for source in &spec.sources {
        if source.contains(['*', '?', '[']) {
            return Err(CopyError::Wildcard {
                pattern: source.clone(),
            });
        }
        let resolved = ctx.resolve(source)?;
        let host = resolved.host();
        let meta = fs_err::metadata(host).map_err(|e| CopyError::Read {
            path: host.to_owned(),
            source: e,
        })?;
        if meta.is_dir() {
            let entries = ctx.walk(&resolved)?;
            if let Some(dest) = &dest_path
                && dest_kind != Some(StatKind::Directory)
            {
                out.insert(dest.clone(), planned(Source::Dir, &meta, spec));
            }
            for entry in entries {
                let target = match &dest_path {
                    Some(d) => d.join(&entry.rel)?,
                    None => LayerPath::new(&entry.rel)?,
                };
                out.insert(target, planned(entry_source(&entry)?, &entry.meta, spec));
            }
        } else {
            let name = Path::new(source)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".to_owned());
            let target = match (&dest_path, dest_is_dir) {
                (Some(d), true) => d.join(&name)?,
                (None, _) => LayerPath::new(&name)?,
                (Some(d), false) => d.clone(),
            };
            out.insert(target, planned(file_source(host, &meta)?, &meta, spec));
        }
    }
    // Missing ancestors of what we write are created (existing ones stay as the image has them).
    let ancestors: BTreeSet<LayerPath> = out
        .keys()
        .flat_map(|p| p.ancestors().collect::<Vec<_>>())
        .filter(|a| !out.contains_key(a))
        .collect();
    for a in ancestors {
        if root
            .lstat(&a)?
            .is_some_and(|st| st.kind == StatKind::Directory)
        {
            continue;
        }
        let p = Planned {
            source: Source::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: spec.epoch.unwrap_or(0),
        };
        out.insert(a, p);
    }
    Ok(out)
}

/// What a walked context entry becomes in the layer (symlinks are copied as links).
fn entry_source(entry: &WalkEntry) -> Result<Source, CopyError> {
    let ft = entry.meta.file_type();
    if ft.is_dir() {
        Ok(Source::Dir)
    } else if ft.is_symlink() {
        let link = fs_err::read_link(&entry.host).map_err(|source| CopyError::Read {
            path: entry.host.clone(),
            source,
        })?;
        Ok(Source::Symlink(link.to_string_lossy().into_owned()))
    } else {
        file_source(&entry.host, &entry.meta)
    }
}

fn file_source(host: &Path, meta: &Metadata) -> Result<Source, CopyError> {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    let unsupported = |kind| CopyError::UnsupportedType {
        path: host.to_owned(),
        kind,
    };
    if ft.is_socket() {
        return Err(unsupported("socket"));
    }
    if ft.is_fifo() {
        return Err(unsupported("fifo"));
    }
    if ft.is_block_device() || ft.is_char_device() {
        return Err(unsupported("device"));
    }
    let dev_ino = (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
    Ok(Source::File {
        host: host.to_owned(),
        dev_ino,
    })
}

fn planned(source: Source, meta: &Metadata, spec: &CopySpec) -> Planned {
    let (uid, gid) = spec.chown.unwrap_or((0, 0));
    let mode = match (&source, spec.chmod) {
        (Source::Symlink(_), _) => 0o777,
        (_, Some(m)) => m,
        _ => meta.permissions().mode() & 0o7777,
    };
    let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
    let mtime = spec.epoch.map_or(mtime, |e| mtime.min(e));
    Planned {
        source,
        mode,
        uid,
        gid,
        mtime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, Context) {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(d.path().join("dir/sub")).unwrap();
        fs_err::write(d.path().join("dir/sub/f"), b"x").unwrap();
        fs_err::write(d.path().join("dir/g"), b"yy").unwrap();
        fs_err::write(d.path().join("app"), b"#!/bin/sh\n").unwrap();
        fs_err::set_permissions(d.path().join("app"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        symlink("g", d.path().join("dir/link")).unwrap();
        fs_err::hard_link(d.path().join("dir/g"), d.path().join("dir/hard")).unwrap();
        let ctx = Context::open(d.path()).unwrap();
        (d, ctx)
    }

    fn empty() -> (tempfile::TempDir, InRoot) {
        let d = tempfile::tempdir().unwrap();
        let root = InRoot::open(d.path()).unwrap();
        (d, root)
    }

    fn spec(sources: &[&str], dest: &str) -> CopySpec {
        CopySpec {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            dest: dest.into(),
            workdir: "/".into(),
            chown: None,
            chmod: None,
            epoch: Some(1000),
        }
    }

    fn paths(m: &BTreeMap<LayerPath, Planned>) -> Vec<&str> {
        m.keys().map(LayerPath::as_str).collect()
    }

    #[test]
    fn directory_contents_not_the_directory() {
        let (_d, ctx) = setup();
        let (_r, root) = empty();
        let p = plan(&ctx, &root, &spec(&["dir"], "/opt/app")).unwrap();
        assert_eq!(
            paths(&p),
            [
                "opt",
                "opt/app",
                "opt/app/g",
                "opt/app/hard",
                "opt/app/link",
                "opt/app/sub",
                "opt/app/sub/f"
            ]
        );
        assert!(
            matches!(p[&LayerPath::new("opt/app/link").unwrap()].source, Source::Symlink(ref t) if t == "g")
        );
    }

    #[test]
    fn file_into_directory_or_as_the_destination() {
        let (_d, ctx) = setup();
        let (_r, root) = empty();
        let into = plan(&ctx, &root, &spec(&["app"], "/usr/local/bin/")).unwrap();
        assert_eq!(
            paths(&into),
            ["usr", "usr/local", "usr/local/bin", "usr/local/bin/app"]
        );
        let as_dest = plan(&ctx, &root, &spec(&["app"], "/srv/run")).unwrap();
        assert_eq!(paths(&as_dest), ["srv", "srv/run"]);
        let rel = CopySpec {
            workdir: "/work".into(),
            ..spec(&["app"], ".")
        };
        assert_eq!(
            paths(&plan(&ctx, &root, &rel).unwrap()),
            ["work", "work/app"]
        );
        let root = plan(&ctx, &root, &spec(&["app", "dir/g"], "/")).unwrap();
        assert_eq!(paths(&root), ["app", "g"]);
    }

    #[test]
    fn modes_owner_and_clamped_mtimes() {
        let (_d, ctx) = setup();
        let (_r, root) = empty();
        let p = plan(&ctx, &root, &spec(&["app"], "/bin/")).unwrap();
        let app = &p[&LayerPath::new("bin/app").unwrap()];
        assert_eq!((app.mode, app.uid, app.gid, app.mtime), (0o755, 0, 0, 1000));
        let bin = &p[&LayerPath::new("bin").unwrap()];
        assert_eq!((bin.mode, bin.mtime), (0o755, 1000));
        let chowned = CopySpec {
            chown: Some((1000, 1001)),
            chmod: Some(0o600),
            ..spec(&["app"], "/bin/")
        };
        let p = plan(&ctx, &root, &chowned).unwrap();
        let app = &p[&LayerPath::new("bin/app").unwrap()];
        assert_eq!((app.mode, app.uid, app.gid), (0o600, 1000, 1001));
    }

    #[test]
    fn ignored_entries_are_not_copied() {
        let (d, _) = setup();
        fs_err::write(
            d.path().join(".dockerignore"),
            "dir/sub\n**/g\n!dir/sub/f\napp\n",
        )
        .unwrap();
        let ctx = Context::open(d.path())
            .unwrap()
            .apply_dockerignore(None)
            .unwrap();
        let (_r, root) = empty();
        let p = plan(&ctx, &root, &spec(&["dir"], "/d")).unwrap();
        assert_eq!(paths(&p), ["d", "d/hard", "d/link", "d/sub", "d/sub/f"]);
        assert!(matches!(
            plan(&ctx, &root, &spec(&["app"], "/x")),
            Err(CopyError::Context(ContextError::Excluded { .. }))
        ));
        assert!(matches!(
            plan(&ctx, &root, &spec(&["dir/g"], "/x")),
            Err(CopyError::Context(ContextError::Excluded { .. }))
        ));
    }

    #[test]
    fn several_sources_need_a_directory_destination() {
        let (_d, ctx) = setup();
        let (_r, root) = empty();
        assert!(matches!(
            plan(&ctx, &root, &spec(&["app", "dir"], "/x")),
            Err(CopyError::DestinationNotDirectory)
        ));
    }

    #[test]
    fn missing_and_escaping_sources_are_refused() {
        let (_d, ctx) = setup();
        let (_r, root) = empty();
        assert!(matches!(
            plan(&ctx, &root, &spec(&["nope"], "/x")),
            Err(CopyError::Context(ContextError::NotFound(_)))
        ));
        assert!(matches!(
            plan(&ctx, &root, &spec(&["../etc/passwd"], "/x")),
            Err(CopyError::Context(ContextError::OutsideContext(_)))
        ));
        assert!(matches!(
            plan(&ctx, &root, &spec(&["*.txt"], "/x/")),
            Err(CopyError::Wildcard { .. })
        ));
    }

    #[test]
    fn copies_into_the_root_with_hardlinks_and_directory_times() {
        let (_d, ctx) = setup();
        let (r, root) = empty();
        fs_err::create_dir(r.path().join("tmp")).unwrap();
        fs_err::set_permissions(
            r.path().join("tmp"),
            std::fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
        std::os::unix::fs::symlink("/tmp", r.path().join("t")).unwrap();
        let touched = copy_into(&ctx, &root, &spec(&["dir"], "/t/d")).unwrap();
        let written: Vec<&str> = touched.paths.iter().map(LayerPath::as_str).collect();
        assert_eq!(
            written,
            [
                "tmp/d",
                "tmp/d/g",
                "tmp/d/hard",
                "tmp/d/link",
                "tmp/d/sub",
                "tmp/d/sub/f"
            ]
        );
        let g = fs_err::metadata(r.path().join("tmp/d/g")).unwrap();
        let hard = fs_err::metadata(r.path().join("tmp/d/hard")).unwrap();
        assert_eq!((g.ino(), g.nlink()), (hard.ino(), 2));
        assert_eq!(fs_err::read(r.path().join("tmp/d/sub/f")).unwrap(), b"x");
        let sub = fs_err::metadata(r.path().join("tmp/d/sub")).unwrap();
        assert_eq!(sub.mtime(), 1000, "clamped, and set after the children");
        let tmp = fs_err::metadata(r.path().join("tmp")).unwrap();
        assert_eq!(
            tmp.permissions().mode() & 0o7777,
            0o1777,
            "existing parent kept"
        );
        // A file cannot replace a directory.
        fs_err::create_dir_all(r.path().join("tmp/x/app")).unwrap();
        assert!(matches!(
            copy_into(&ctx, &root, &spec(&["app"], "/tmp/x/")),
            Err(CopyError::InRoot(InRootError::OverwriteDirectory(_)))
        ));
    }
}
