//! COPY (and the copying half of ADD) into a new layer, with BuildKit's semantics
//! (`dockerfile2llb/convert.go` `dispatchCopy`, `llbsolver/file/backend.go` `docopy`, fsutil
//! `copy.Copy`; Dockerfile reference, "COPY"):
//! - a directory source copies its *contents* into the destination;
//! - a file goes *into* the destination when it ends with `/` or is an existing directory,
//!   otherwise it becomes the destination;
//! - several sources need a destination ending with `/` (the legacy builder's rule, which
//!   kiln also applies to a wildcard matching several entries: BuildKit would silently let
//!   the last match win);
//! - wildcards (`*`, `?`, `[...]`, Go `filepath.Match`, see `glob`) match entries below the
//!   source's literal prefix; a matched symlink is followed; a wildcard matching nothing copies
//!   nothing (BuildKit's `AllowEmptyWildcard`), a missing literal path is an error;
//! - a relative destination is under WORKDIR; symlinks in the image's destination path are
//!   followed inside the image root (merged-/usr images);
//! - without `--chown`, entries of a `--from` stage or image keep their uid/gid (BuildKit's
//!   copy between states: fsutil `copyFileInfo` keeps `st.Uid`/`st.Gid` when there is no
//!   chowner, see [`Owners`]), and entries of the build context (and of `--build-context`
//!   directories), heredocs, downloads and git checkouts are 0:0 (BuildKit's local, `Mkfile`,
//!   HTTP and git sources are root's);
//! - `--chown` (names resolved in the image, see `chown`) owns every copied entry and also
//!   the missing parent directories created for the destination (fsutil `MkdirAll` with the
//!   chowner; without `--chown` they are 0:0); mode is the source's unless `--chmod` (see
//!   `chmod`; every entry but symlinks); mtimes are the source's (clamped to
//!   `SOURCE_DATE_EPOCH` when set); hard links inside a source stay links;
//! - a directory source whose destination does not exist yet: the destination is created like
//!   a missing parent (0755, the `--chown` owner or 0:0), not with the source directory's
//!   metadata nor `--chmod`, which apply only to what is copied into it (fsutil `copy.go`:
//!   `prepareTargetDir` makes it with `MkdirAll(dst, 0755, chown)`, then the copy of the source
//!   root finds it existing and leaves its metadata); an existing destination is kept as is;
//! - `--parents` keeps each source's path below the context root, or below a `/./` pivot
//!   (`COPY --parents src/./app/*.js /dst/` writes `/dst/app/x.js`); the path is a
//!   `.dockerignore`-style pattern and a match brings its whole subtree; the parent directories
//!   written keep the sources' metadata;
//! - `--exclude` patterns (`.dockerignore` syntax, repeatable) drop entries, matched against the
//!   path below the copied directory or below a wildcard's literal prefix (a named file source
//!   is never excluded, as fsutil only matches below the source);
//! - ADD's local archives (see `add::archive`) are extracted into the destination directory
//!   instead of copied.
//!
//! Sources come from a source tree ([`Context`]): the build context as its `.dockerignore`
//! leaves it, or (`--from`, heredocs, downloads, git checkouts) a directory opened as a
//! context with no ignore file, so every path is resolved inside that tree.
//!
//! The copy is performed in the step's writable rootfs (a snapshot, see `rootfs`), through
//! root-bounded operations (`inroot`): the destination is resolved inside the image root, and
//! no `..` or symlink in the image or the source can make a write land outside it. Missing
//! parent directories are created 0755 (mtime `SOURCE_DATE_EPOCH`, else 0); existing ones are
//! kept as the image has them. Directory mtimes are set after their children are written.
//!
//! Not responsible for: where sources come from (`step` and `add` prepare the trees and
//! run the copy on a snapshot), matching ignore rules (the context does).

pub mod chmod;
pub mod chown;
pub mod glob;
mod step;
mod summary;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::Metadata;
use std::io::BufReader;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use frontend::dockerignore::IgnoreRules;
use snapshotter::layer::{LayerError, LayerPath};

use super::add::archive::{self, ArchiveError};
use crate::solver::context::{Context, ContextError, WalkEntry};
use crate::solver::inroot::{InRoot, InRootError, StatKind};
use crate::solver::rootfs::Touched;
use crate::store::StoreError;
pub use chmod::Chmod;
pub(super) use step::{
    Expanded, Request, Scratch, execute, heredoc_files, heredoc_tree, history_text, run, set_mtime,
    sources_in,
};

/// Errors of a COPY.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(
        "when using COPY with more than one source file, the destination must be a directory and end with a /"
    )]
    DestinationNotDirectory,
    #[error("`{path}` in the source is a {kind}, which COPY does not support")]
    UnsupportedType { path: PathBuf, kind: &'static str },
    #[error("reading `{path}` in the source")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("destination `{0}` is not a valid path")]
    BadDestination(String),
    #[error("invalid --exclude pattern: {0}")]
    BadExclude(String),
    #[error("invalid --parents source `{0}`")]
    BadParents(String),
    #[error("{0}")]
    Chown(String),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Http(#[from] super::add::http::HttpError),
    #[error(transparent)]
    Git(#[from] super::add::git::GitError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    InRoot(#[from] InRootError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the copied entries are written, with the words already expanded.
#[derive(Debug, Clone, Default)]
pub struct CopySpec {
    pub dest: String,
    /// Absolute WORKDIR the destination is relative to.
    pub workdir: String,
    pub chown: Option<(u64, u64)>,
    pub chmod: Option<Chmod>,
    /// `SOURCE_DATE_EPOCH`: clamps mtimes and dates created directories.
    pub epoch: Option<u64>,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Option<IgnoreRules>,
}

/// One source of a COPY: a path (or pattern) in a tree.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub tree: &'a Context,
    pub path: String,
    /// Whether `*?[` are wildcards (context and `--from` paths; not heredocs, URLs, git).
    pub wildcards: bool,
    /// ADD: extract a file that is a (compressed) tar archive.
    pub unpack: bool,
}

/// Whose ownership copied entries get when there is no `--chown`.
#[derive(Debug, Clone, Copy, Default)]
pub enum Owners<'a> {
    /// Every entry is 0:0.
    #[default]
    Root,
    /// Entries of this tree (a `--from` stage or image) keep their uid/gid; entries of other
    /// trees (heredocs) are 0:0.
    KeepIn(&'a Context),
}

impl Owners<'_> {
    /// Whether entries of `tree` keep their owner.
    fn keeps(&self, tree: &Context) -> bool {
        matches!(self, Self::KeepIn(t) if std::ptr::eq(*t, tree))
    }
}

/// Where a planned entry's bytes come from.
#[derive(Debug, Clone)]
enum Origin {
    Dir,
    File {
        host: PathBuf,
        dev_ino: Option<(u64, u64)>,
        /// Its `lstat` identity (the cache's stat check).
        identity: crate::cache::stat::StatIdentity,
    },
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Planned {
    origin: Origin,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

/// The whole copy: entries to write, then archives to extract (in source order).
#[derive(Debug, Default)]
struct Plan {
    entries: BTreeMap<LayerPath, Planned>,
    /// Host archive and the directory (`None`: the root) it is extracted into.
    archives: Vec<(PathBuf, Option<LayerPath>)>,
}

/// Perform the COPY in `root` (the step's writable rootfs), every entry 0:0 unless `--chown`;
/// returns the paths written.
pub fn copy_into(
    sources: &[Source<'_>],
    root: &InRoot,
    spec: &CopySpec,
) -> Result<Touched, CopyError> {
    copy_into_with(sources, root, spec, Owners::Root)
}

/// [`copy_into`], with the owners of entries when there is no `--chown` chosen by `owners`.
pub fn copy_into_with(
    sources: &[Source<'_>],
    root: &InRoot,
    spec: &CopySpec,
    owners: Owners<'_>,
) -> Result<Touched, CopyError> {
    copy_into_seeded(sources, root, spec, owners, None, None, &mut Vec::new())
}

/// A copy planned on the parent filesystem (see [`plan_copy`]).
#[derive(Debug)]
pub struct CopyPlan(Plan);

/// Plan a copy on `root`, a view of the filesystem the copy will run on: what the copy writes
/// is decided by that filesystem, so a plan made there holds for a rootfs seeded with files of
/// an earlier result (where the destination may already exist).
pub fn plan_copy(
    sources: &[Source<'_>],
    root: &InRoot,
    spec: &CopySpec,
    owners: Owners<'_>,
) -> Result<CopyPlan, CopyError> {
    plan(sources, root, spec, owners).map(CopyPlan)
}

/// [`copy_into_with`], skipping the regular files `seed` already linked into the rootfs
/// (`solver::seed`), with the plan `planned` when given (else planned on `root`); every regular
/// file written or linked is added to `copied`, with the identity of its source, for the next
/// run's seed.
#[allow(clippy::too_many_arguments)]
pub fn copy_into_seeded(
    sources: &[Source<'_>],
    root: &InRoot,
    spec: &CopySpec,
    owners: Owners<'_>,
    planned: Option<CopyPlan>,
    seed: Option<&crate::solver::seed::Seed>,
    copied: &mut Vec<(LayerPath, crate::cache::copies::CopiedFile)>,
) -> Result<Touched, CopyError> {
    let plan = match planned {
        Some(CopyPlan(plan)) => plan,
        None => plan(sources, root, spec, owners)?,
    };
    let mut first_link: HashMap<(u64, u64), LayerPath> = HashMap::new();
    let mut sources = HashMap::new();
    for (path, p) in &plan.entries {
        let mtime = i64::try_from(p.mtime).unwrap_or(i64::MAX);
        match &p.origin {
            Origin::Dir => root.make_dir(path, p.mode, p.uid, p.gid)?,
            Origin::Symlink(target) => root.symlink(path, target, p.uid, p.gid, mtime)?,
            Origin::File {
                host,
                dev_ino,
                identity,
            } => {
                if let Some(key) = dev_ino
                    && let Some(first) = first_link.get(key)
                {
                    root.hard_link(path, first)?;
                    continue;
                }
                if let Some(key) = dev_ino {
                    first_link.insert(*key, path.clone());
                }
                copied.push((path.clone(), copied_file(identity, p)));
                sources.insert(path.clone(), content_identity(identity));
                if seed.is_some_and(|s| s.is_linked(path)) {
                    continue;
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
    for (path, p) in plan.entries.iter().rev() {
        if matches!(p.origin, Origin::Dir) {
            root.set_mtime(path, i64::try_from(p.mtime).unwrap_or(i64::MAX))?;
        }
    }
    let mut paths: BTreeSet<LayerPath> = plan.entries.into_keys().collect();
    let created_mtime = i64::try_from(spec.epoch.unwrap_or(0)).unwrap_or(i64::MAX);
    for (host, dest) in &plan.archives {
        archive::extract(host, root, dest.as_ref(), created_mtime, &mut paths)?;
    }
    // An archive may have replaced a copied file: then its bytes are not the source's.
    if !plan.archives.is_empty() {
        sources.clear();
    }
    Ok(Touched { paths, sources })
}

/// The destination resolved in the image: its layer path (`None` for `/`), whether it must be
/// a directory, and what is there now.
struct Dest {
    path: Option<LayerPath>,
    is_dir: bool,
    kind: Option<StatKind>,
}

fn destination(root: &InRoot, spec: &CopySpec) -> Result<(Dest, bool), CopyError> {
    let dest_abs = if spec.dest.starts_with('/') {
        spec.dest.clone()
    } else {
        format!("{}/{}", spec.workdir.trim_end_matches('/'), spec.dest)
    };
    let dir_hint = dest_abs.ends_with('/') || dest_abs.ends_with("/.") || spec.dest == ".";
    let dest_rel = root.resolve(&dest_abs)?;
    let path = if dest_rel.is_empty() {
        None
    } else {
        Some(LayerPath::new(&dest_rel).map_err(|_| CopyError::BadDestination(spec.dest.clone()))?)
    };
    let kind = match &path {
        Some(p) => root.lstat(p)?.map(|st| st.kind),
        None => Some(StatKind::Directory),
    };
    let is_dir = dir_hint || kind == Some(StatKind::Directory);
    Ok((Dest { path, is_dir, kind }, dir_hint))
}

fn plan(
    sources: &[Source<'_>],
    root: &InRoot,
    spec: &CopySpec,
    owners: Owners<'_>,
) -> Result<Plan, CopyError> {
    let (dest, dir_hint) = destination(root, spec)?;
    if sources.len() > 1 && !dir_hint {
        return Err(CopyError::DestinationNotDirectory);
    }
    let mut plan = plan_sources(sources, &dest, spec, owners)?;
    add_missing_ancestors(&mut plan, root, spec)?;
    Ok(plan)
}

/// What the copy of a planned file records for the next run's seed.
/// The identity of a source file as the layer encoder keys content by it.
fn content_identity(source: &crate::cache::stat::StatIdentity) -> snapshotter::layer::FileIdentity {
    let split = |ns: i128| {
        (
            i64::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(i64::MAX),
            ns.rem_euclid(1_000_000_000) as i64,
        )
    };
    let (mtime_sec, mtime_nsec) = split(source.mtime_ns);
    let (ctime_sec, ctime_nsec) = split(source.ctime_ns);
    snapshotter::layer::FileIdentity {
        dev: source.dev,
        ino: source.ino,
        size: source.size,
        mtime_sec,
        mtime_nsec,
        ctime_sec,
        ctime_nsec,
    }
}

fn copied_file(
    identity: &crate::cache::stat::StatIdentity,
    p: &Planned,
) -> crate::cache::copies::CopiedFile {
    crate::cache::copies::CopiedFile {
        source: *identity,
        mode: p.mode,
        uid: p.uid,
        gid: p.gid,
        mtime: p.mtime,
    }
}

/// The regular files of the copy that an earlier result with `manifest` holds unchanged (same
/// source identity, settled before that copy, same metadata): they may be linked from it
/// (`solver::seed`). Files with several links at the source are left out (their links are
/// made by the copy).
pub fn linkable(plan: &CopyPlan, manifest: &crate::cache::copies::CopyManifest) -> Vec<LayerPath> {
    plan.0
        .entries
        .iter()
        .filter_map(|(path, p)| match &p.origin {
            Origin::File {
                dev_ino: None,
                identity,
                ..
            } if manifest.unchanged(path.as_str(), &copied_file(identity, p)) => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// The entries a copy reads, with the path below the destination and the metadata each will
/// have in the image (the build cache's inputs hash): what [`plan`] makes for a destination
/// directory, without looking at the image. Where the destination is, and whether it is a
/// directory there, is the rest of the step's key (its text, WORKDIR and parent filesystem).
pub fn selection(
    sources: &[Source<'_>],
    spec: &CopySpec,
    owners: Owners<'_>,
) -> Result<Vec<crate::cache::InputEntry>, CopyError> {
    use crate::cache::{InputEntry, InputKind};
    let dest = Dest {
        path: None,
        is_dir: true,
        kind: Some(StatKind::Directory),
    };
    let plan = plan_sources(sources, &dest, spec, owners)?;
    let mut out: Vec<InputEntry> = plan
        .entries
        .into_iter()
        .map(|(path, p)| {
            let (kind, meta) = match p.origin {
                Origin::Dir => (InputKind::Dir, None),
                Origin::Symlink(target) => (InputKind::Symlink { target }, None),
                Origin::File { host, identity, .. } => (InputKind::File { host }, Some(identity)),
            };
            InputEntry {
                path: path.as_str().to_owned(),
                kind,
                mode: p.mode,
                uid: p.uid,
                gid: p.gid,
                identity: meta,
            }
        })
        .collect();
    out.extend(plan.archives.into_iter().map(|(host, dest)| InputEntry {
        path: dest.map(|d| d.as_str().to_owned()).unwrap_or_default(),
        kind: InputKind::Archive { host },
        mode: 0,
        uid: 0,
        gid: 0,
        identity: None,
    }));
    Ok(out)
}

/// The entries of every source below `dest` (without the ancestors the image lacks).
fn plan_sources(
    sources: &[Source<'_>],
    dest: &Dest,
    spec: &CopySpec,
    owners: Owners<'_>,
) -> Result<Plan, CopyError> {
    let mut plan = Plan::default();
    for source in sources {
        let keep_owner = spec.chown.is_none() && owners.keeps(source.tree);
        if spec.parents && source.wildcards {
            plan_parents(source, dest, spec, keep_owner, &mut plan.entries)?;
            continue;
        }
        let items = if source.wildcards && glob::has_wildcards(&source.path) {
            let found = wildcard_matches(source.tree, &source.path, spec)?;
            if found.len() > 1 && !dest.is_dir {
                return Err(CopyError::DestinationNotDirectory);
            }
            found
        } else {
            vec![source.path.clone()]
        };
        for item in items {
            plan_item(source, &item, dest, spec, keep_owner, &mut plan)?;
        }
    }
    Ok(plan)
}

/// Missing ancestors of what the copy writes are created (existing ones stay as the image has
/// them).
fn add_missing_ancestors(plan: &mut Plan, root: &InRoot, spec: &CopySpec) -> Result<(), CopyError> {
    // Missing ancestors of what we write are created (existing ones stay as the image has them).
    let mut wanted: BTreeSet<LayerPath> = plan
        .entries
        .keys()
        .flat_map(|p| p.ancestors().collect::<Vec<_>>())
        .collect();
    for (_, d) in &plan.archives {
        if let Some(d) = d {
            wanted.extend(d.ancestors());
            wanted.insert(d.clone());
        }
    }
    for a in wanted {
        if plan.entries.contains_key(&a)
            || root
                .lstat(&a)?
                .is_some_and(|st| st.kind == StatKind::Directory)
        {
            continue;
        }
        plan.entries.insert(a, created_dir(spec));
    }
    Ok(())
}

/// A directory the copy creates that no source stands for (a missing parent, or the
/// destination of a directory's contents): 0755, the `--chown` owner (else 0:0), dated
/// `SOURCE_DATE_EPOCH` (else 0).
fn created_dir(spec: &CopySpec) -> Planned {
    let (uid, gid) = spec.chown.unwrap_or((0, 0));
    Planned {
        origin: Origin::Dir,
        mode: 0o755,
        uid,
        gid,
        mtime: spec.epoch.unwrap_or(0),
    }
}

/// One resolved source path (a literal source or a wildcard match).
fn plan_item(
    source: &Source<'_>,
    item: &str,
    dest: &Dest,
    spec: &CopySpec,
    keep_owner: bool,
    plan: &mut Plan,
) -> Result<(), CopyError> {
    let resolved = source.tree.resolve(item)?;
    let host = resolved.host();
    let meta = fs_err::metadata(host).map_err(|e| CopyError::Read {
        path: host.to_owned(),
        source: e,
    })?;
    if meta.is_dir() {
        let entries = source.tree.walk(&resolved)?;
        if let Some(d) = &dest.path
            && dest.kind != Some(StatKind::Directory)
        {
            plan.entries.insert(d.clone(), created_dir(spec));
        }
        let kept = apply_exclude(&entries, spec.exclude.as_ref());
        let mut walked = Vec::with_capacity(kept.len());
        for entry in kept {
            let target = match &dest.path {
                Some(d) => d.join(&entry.rel)?,
                None => LayerPath::new(&entry.rel)?,
            };
            walked.push((
                target,
                planned(entry_origin(entry)?, &entry.meta, spec, keep_owner),
            ));
        }
        // The walk is (nearly) in layer order: built in bulk and merged, instead of thousands of
        // inserts each searching the tree. Later entries replace earlier ones, as inserts would.
        let mut walked: BTreeMap<LayerPath, Planned> = walked.into_iter().collect();
        plan.entries.append(&mut walked);
        return Ok(());
    }
    if source.unpack && archive::is_archive(host) {
        plan.archives.push((host.to_owned(), dest.path.clone()));
        return Ok(());
    }
    let name = Path::new(item)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let target = match (&dest.path, dest.is_dir) {
        (Some(d), true) => d.join(&name)?,
        (None, _) => LayerPath::new(&name)?,
        (Some(d), false) => d.clone(),
    };
    plan.entries.insert(
        target,
        planned(file_origin(host, &meta)?, &meta, spec, keep_owner),
    );
    Ok(())
}

/// The walk without the entries `--exclude` drops; an excluded directory comes back when an
/// exception brings back something below it.
fn apply_exclude<'e>(
    entries: &'e [WalkEntry],
    exclude: Option<&IgnoreRules>,
) -> Vec<&'e WalkEntry> {
    let Some(rules) = exclude else {
        return entries.iter().collect();
    };
    let by_rel: HashMap<&str, &WalkEntry> = entries.iter().map(|e| (e.rel.as_str(), e)).collect();
    let mut kept: BTreeMap<&str, &WalkEntry> = BTreeMap::new();
    for e in entries {
        if rules.is_excluded(&e.rel) {
            continue;
        }
        // Parents dropped by a pattern are needed to hold what an exception kept.
        let mut at = e.rel.as_str();
        while let Some((parent, _)) = at.rsplit_once('/') {
            if let Some(p) = by_rel.get(parent) {
                kept.insert(parent, p);
            }
            at = parent;
        }
        kept.insert(&e.rel, e);
    }
    kept.into_values().collect()
}

/// The paths (in the tree) a wildcard source matches, in walk order.
fn wildcard_matches(
    tree: &Context,
    source: &str,
    spec: &CopySpec,
) -> Result<Vec<String>, CopyError> {
    let (literal, pattern) = glob::split(source);
    let base_src = if literal.is_empty() {
        "."
    } else {
        literal.as_str()
    };
    let base = match tree.resolve(base_src) {
        Ok(b) => b,
        // A literal prefix that is missing matches nothing.
        Err(ContextError::NotFound(_)) | Err(ContextError::Excluded { .. }) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    if !base.host().is_dir() {
        return Ok(Vec::new());
    }
    let depth = pattern.split('/').count();
    let mut out = Vec::new();
    let mut skip_below: Option<String> = None;
    for e in tree.walk(&base)? {
        if let Some(dir) = &skip_below
            && e.rel.starts_with(dir.as_str())
            && e.rel.as_bytes().get(dir.len()) == Some(&b'/')
        {
            continue;
        }
        if e.rel.split('/').count() != depth || !glob::matches(&pattern, &e.rel) {
            continue;
        }
        if spec.exclude.as_ref().is_some_and(|r| r.is_excluded(&e.rel)) {
            continue;
        }
        if e.meta.is_dir() {
            skip_below = Some(e.rel.clone());
        }
        out.push(if literal.is_empty() {
            e.rel.clone()
        } else {
            format!("{}/{}", literal.trim_end_matches('/'), e.rel)
        });
    }
    Ok(out)
}

/// `--parents`: everything the source pattern matches below its pivot (the context root, or
/// the part before `/./`), written under the destination with its path below the pivot.
fn plan_parents(
    source: &Source<'_>,
    dest: &Dest,
    spec: &CopySpec,
    keep_owner: bool,
    out: &mut BTreeMap<LayerPath, Planned>,
) -> Result<(), CopyError> {
    let (pivot, pattern) = match source.path.split_once("/./") {
        Some((pivot, pattern)) => (if pivot.is_empty() { "/" } else { pivot }, pattern),
        None => ("/", source.path.as_str()),
    };
    let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
    let include =
        IgnoreRules::parse(pattern).map_err(|_| CopyError::BadParents(source.path.clone()))?;
    // Walk only below the pattern's literal directories.
    let parts: Vec<&str> = pattern
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let literal: Vec<&str> = parts
        .iter()
        .take(parts.len().saturating_sub(1))
        .take_while(|p| !glob::has_wildcards(p) && **p != "**")
        .copied()
        .collect();
    let pivot_path = source.tree.resolve(pivot)?;
    // The directories from the pivot down to the walk's start, with their own metadata.
    let mut prefix_dirs = Vec::new();
    let mut rel = String::new();
    for part in &literal {
        rel = if rel.is_empty() {
            (*part).to_owned()
        } else {
            format!("{rel}/{part}")
        };
        let in_tree = format!("{}/{rel}", pivot.trim_end_matches('/'));
        match source.tree.resolve(&in_tree) {
            Ok(p) if p.host().is_dir() => {
                let meta = fs_err::metadata(p.host()).map_err(|e| CopyError::Read {
                    path: p.host().to_owned(),
                    source: e,
                })?;
                prefix_dirs.push((rel.clone(), meta));
            }
            // Nothing there: the pattern matches nothing.
            Ok(_) | Err(ContextError::NotFound(_)) | Err(ContextError::Excluded { .. }) => {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let start = if literal.is_empty() {
        pivot_path
    } else {
        source
            .tree
            .resolve(&format!("{}/{rel}", pivot.trim_end_matches('/')))?
    };
    let entries = source.tree.walk(&start)?;
    let full = |below: &str| {
        if rel.is_empty() {
            below.to_owned()
        } else {
            format!("{rel}/{below}")
        }
    };
    let by_rel: HashMap<String, &WalkEntry> = entries.iter().map(|e| (full(&e.rel), e)).collect();
    let target = |p: &str| -> Result<LayerPath, CopyError> {
        Ok(match &dest.path {
            Some(d) => d.join(p)?,
            None => LayerPath::new(p)?,
        })
    };
    for e in &entries {
        let path = full(&e.rel);
        if !include.is_excluded(&path) {
            continue;
        }
        if spec.exclude.as_ref().is_some_and(|r| r.is_excluded(&path)) {
            continue;
        }
        // The parents between the pivot and the match, as the source has them.
        let mut at = path.as_str();
        while let Some((parent, _)) = at.rsplit_once('/') {
            let meta = by_rel.get(parent).map(|p| &p.meta).or_else(|| {
                prefix_dirs
                    .iter()
                    .find(|(r, _)| r == parent)
                    .map(|(_, m)| m)
            });
            if let Some(meta) = meta {
                out.entry(target(parent)?)
                    .or_insert_with(|| planned(Origin::Dir, meta, spec, keep_owner));
            }
            at = parent;
        }
        out.insert(
            target(&path)?,
            planned(entry_origin(e)?, &e.meta, spec, keep_owner),
        );
    }
    Ok(())
}

/// What a walked entry becomes in the layer (symlinks are copied as links).
fn entry_origin(entry: &WalkEntry) -> Result<Origin, CopyError> {
    let ft = entry.meta.file_type();
    if ft.is_dir() {
        Ok(Origin::Dir)
    } else if ft.is_symlink() {
        let link = fs_err::read_link(&entry.host).map_err(|source| CopyError::Read {
            path: entry.host.clone(),
            source,
        })?;
        Ok(Origin::Symlink(link.to_string_lossy().into_owned()))
    } else {
        file_origin(&entry.host, &entry.meta)
    }
}

fn file_origin(host: &Path, meta: &Metadata) -> Result<Origin, CopyError> {
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
    Ok(Origin::File {
        host: host.to_owned(),
        dev_ino,
        identity: crate::cache::stat::StatIdentity::of(meta),
    })
}

/// A copied entry: `--chown`'s owner, else the source's (`keep_owner`) or 0:0.
fn planned(origin: Origin, meta: &Metadata, spec: &CopySpec, keep_owner: bool) -> Planned {
    let (uid, gid) = match spec.chown {
        Some(ids) => ids,
        None if keep_owner => (u64::from(meta.uid()), u64::from(meta.gid())),
        None => (0, 0),
    };
    let source_mode = meta.permissions().mode() & 0o7777;
    let mode = match (&origin, &spec.chmod) {
        (Origin::Symlink(_), _) => 0o777,
        (_, Some(m)) => m.apply(source_mode, matches!(origin, Origin::Dir)),
        _ => source_mode,
    };
    let mtime = u64::try_from(meta.mtime()).unwrap_or(0);
    let mtime = spec.epoch.map_or(mtime, |e| mtime.min(e));
    Planned {
        origin,
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

    fn spec(dest: &str) -> CopySpec {
        CopySpec {
            dest: dest.into(),
            workdir: "/".into(),
            epoch: Some(1000),
            ..CopySpec::default()
        }
    }

    fn srcs<'a>(ctx: &'a Context, paths: &[&str]) -> Vec<Source<'a>> {
        paths
            .iter()
            .map(|p| Source {
                tree: ctx,
                path: (*p).to_owned(),
                wildcards: true,
                unpack: false,
            })
            .collect()
    }

    fn planned_paths(
        ctx: &Context,
        root: &InRoot,
        sources: &[&str],
        spec: &CopySpec,
    ) -> Vec<String> {
        plan(&srcs(ctx, sources), root, spec, Owners::Root)
            .unwrap()
            .entries
            .keys()
            .map(|p| p.as_str().to_owned())
            .collect()
    }

    #[test]
    fn directory_contents_not_the_directory() {
        let (_d, ctx) = setup();
        let (_r, root) = empty();
        let p = plan(
            &srcs(&ctx, &["dir"]),
            &root,
            &spec("/opt/app"),
            Owners::Root,
        )
        .unwrap();
        let paths: Vec<&str> = p.entries.keys().map(LayerPath::as_str).collect();
        assert_eq!(
            paths,
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
            matches!(p.entries[&LayerPath::new("opt/app/link").unwrap()].origin, Origin::Symlink(ref t) if t == "g")
        );
    }

    #[test]
    fn file_into_directory_or_as_the_destination() {
        let (_d, ctx) = setup();
        let (_r, root) = empty();
        assert_eq!(
            planned_paths(&ctx, &root, &["app"], &spec("/usr/local/bin/")),
            ["usr", "usr/local", "usr/local/bin", "usr/local/bin/app"]
        );
        assert_eq!(
            planned_paths(&ctx, &root, &["app"], &spec("/srv/run")),
            ["srv", "srv/run"]
        );
        let rel = CopySpec {
            workdir: "/work".into(),
            ..spec(".")
        };
        assert_eq!(
            planned_paths(&ctx, &root, &["app"], &rel),
            ["work", "work/app"]
        );
        assert_eq!(
            planned_paths(&ctx, &root, &["app", "dir/g"], &spec("/")),
            ["app", "g"]
        );
    }

    #[test]
    fn modes_owner_and_clamped_mtimes() {
        let (_d, ctx) = setup();
        let (_r, root) = empty();
        let p = plan(&srcs(&ctx, &["app"]), &root, &spec("/bin/"), Owners::Root).unwrap();
        let app = &p.entries[&LayerPath::new("bin/app").unwrap()];
        assert_eq!((app.mode, app.uid, app.gid, app.mtime), (0o755, 0, 0, 1000));
        let bin = &p.entries[&LayerPath::new("bin").unwrap()];
        assert_eq!((bin.mode, bin.mtime), (0o755, 1000));
        let chowned = CopySpec {
            chown: Some((1000, 1001)),
            chmod: Some(Chmod::Octal(0o600)),
            ..spec("/bin/")
        };
        let p = plan(&srcs(&ctx, &["app"]), &root, &chowned, Owners::Root).unwrap();
        let app = &p.entries[&LayerPath::new("bin/app").unwrap()];
        assert_eq!((app.mode, app.uid, app.gid), (0o600, 1000, 1001));
        let bin = &p.entries[&LayerPath::new("bin").unwrap()];
        assert_eq!(
            (bin.uid, bin.gid),
            (1000, 1001),
            "created parents get the owner"
        );
        let symbolic = CopySpec {
            chmod: Some(Chmod::parse("go-rwx").unwrap()),
            ..spec("/d/")
        };
        let p = plan(&srcs(&ctx, &["dir"]), &root, &symbolic, Owners::Root).unwrap();
        assert_eq!(p.entries[&LayerPath::new("d/sub").unwrap()].mode, 0o700);
        assert_eq!(p.entries[&LayerPath::new("d/link").unwrap()].mode, 0o777);
    }

    #[test]
    fn the_destination_of_a_directory_is_created_0755_without_chmod() {
        let (_d, ctx) = setup();
        let (r, root) = empty();
        let owned = |p: &Plan, path: &str| {
            let e = &p.entries[&LayerPath::new(path).unwrap()];
            (e.mode, e.uid, e.gid, e.mtime)
        };
        let chmod = CopySpec {
            chmod: Some(Chmod::Octal(0o600)),
            ..spec("/d/")
        };
        let p = plan(&srcs(&ctx, &["dir"]), &root, &chmod, Owners::Root).unwrap();
        assert_eq!(owned(&p, "d"), (0o755, 0, 0, 1000), "created, not copied");
        assert_eq!(owned(&p, "d/sub").0, 0o600, "what is copied gets --chmod");
        assert_eq!(owned(&p, "d/g").0, 0o600);
        let chown = CopySpec {
            chown: Some((7, 8)),
            ..chmod.clone()
        };
        let p = plan(&srcs(&ctx, &["dir"]), &root, &chown, Owners::Root).unwrap();
        assert_eq!(owned(&p, "d"), (0o755, 7, 8, 1000), "--chown owns it");
        // An existing destination is left as the image has it.
        fs_err::create_dir(r.path().join("d")).unwrap();
        fs_err::set_permissions(r.path().join("d"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let p = plan(&srcs(&ctx, &["dir"]), &root, &chmod, Owners::Root).unwrap();
        assert!(!p.entries.contains_key(&LayerPath::new("d").unwrap()));
        copy_into(&srcs(&ctx, &["dir"]), &root, &chmod).unwrap();
        let d = fs_err::metadata(r.path().join("d")).unwrap();
        assert_eq!(d.permissions().mode() & 0o7777, 0o700);
    }

    #[test]
    fn a_from_tree_keeps_its_owners_without_chown() {
        let (d, ctx) = setup();
        // Owned by 1234:5678 (root), else by the non-root user running the test: not 0 either way.
        for p in ["app", "dir", "dir/g", "dir/link"] {
            let _ = std::os::unix::fs::lchown(d.path().join(p), Some(1234), Some(5678));
        }
        let app = fs_err::metadata(d.path().join("app")).unwrap();
        let ids = (u64::from(app.uid()), u64::from(app.gid()));
        assert_ne!(ids, (0, 0));
        let (_h, heredoc) = setup();
        let (_r, root) = empty();
        let owner = |p: &Plan, path: &str| {
            let e = &p.entries[&LayerPath::new(path).unwrap()];
            (e.uid, e.gid)
        };
        let mut sources = srcs(&ctx, &["app", "dir"]);
        sources.push(Source {
            tree: &heredoc,
            path: "dir/g".into(),
            wildcards: false,
            unpack: false,
        });
        let s = spec("/o/");
        let p = plan(&sources, &root, &s, Owners::KeepIn(&ctx)).unwrap();
        assert_eq!(owner(&p, "o/app"), ids);
        assert_eq!(
            owner(&p, "o/g"),
            (0, 0),
            "another tree's entries are root's"
        );
        assert_eq!(owner(&p, "o"), (0, 0), "a created parent is root's");
        let p = plan(&sources[1..2], &root, &s, Owners::KeepIn(&ctx)).unwrap();
        assert_eq!(owner(&p, "o/g"), ids);
        assert_eq!(owner(&p, "o/link"), ids, "symlinks too");
        // The same tree without KeepIn (the build context), or with --chown.
        let p = plan(&sources, &root, &s, Owners::Root).unwrap();
        assert_eq!(owner(&p, "o/app"), (0, 0));
        let chowned = CopySpec {
            chown: Some((7, 8)),
            ..spec("/o/")
        };
        let p = plan(&sources, &root, &chowned, Owners::KeepIn(&ctx)).unwrap();
        assert_eq!(owner(&p, "o/app"), (7, 8));
        // --parents keeps them for the parent directories it writes.
        let parents = CopySpec {
            parents: true,
            ..spec("/p/")
        };
        let p = plan(
            &srcs(&ctx, &["dir/g"]),
            &root,
            &parents,
            Owners::KeepIn(&ctx),
        )
        .unwrap();
        assert_eq!(owner(&p, "p/dir"), ids);
        assert_eq!(owner(&p, "p/dir/g"), ids);
    }

    #[test]
    fn wildcards_match_below_the_literal_prefix() {
        let (d, ctx) = setup();
        fs_err::write(d.path().join("a.txt"), "a").unwrap();
        fs_err::write(d.path().join("b.txt"), "b").unwrap();
        fs_err::write(d.path().join("dir/c.txt"), "c").unwrap();
        let ctx2 = Context::open(d.path()).unwrap();
        let (_r, root) = empty();
        assert_eq!(
            planned_paths(&ctx2, &root, &["*.txt"], &spec("/out/")),
            ["out", "out/a.txt", "out/b.txt"]
        );
        assert_eq!(
            planned_paths(&ctx2, &root, &["d?r/*.txt"], &spec("/out/")),
            ["out", "out/c.txt"]
        );
        // A matched directory copies its contents; nothing matching is fine.
        assert_eq!(
            planned_paths(&ctx2, &root, &["di[r]"], &spec("/o/")).len(),
            7
        );
        assert!(planned_paths(&ctx2, &root, &["*.none"], &spec("/o/")).is_empty());
        // Several matches need a directory destination.
        assert!(matches!(
            plan(&srcs(&ctx2, &["*.txt"]), &root, &spec("/x"), Owners::Root),
            Err(CopyError::DestinationNotDirectory)
        ));
        // A single match does not.
        assert_eq!(planned_paths(&ctx2, &root, &["a.*"], &spec("/x")), ["x"]);
        drop(ctx);
    }

    #[test]
    fn exclude_and_parents() {
        let (d, _) = setup();
        fs_err::create_dir_all(d.path().join("src/x/y")).unwrap();
        fs_err::write(d.path().join("src/a.txt"), "a").unwrap();
        fs_err::write(d.path().join("src/x/b.txt"), "b").unwrap();
        fs_err::write(d.path().join("src/x/y/c.md"), "c").unwrap();
        let ctx = Context::open(d.path()).unwrap();
        let (_r, root) = empty();
        let excluding = CopySpec {
            exclude: step::exclude_rules(&["*.txt".into(), "x/y".into()]).unwrap(),
            ..spec("/o/")
        };
        assert_eq!(
            planned_paths(&ctx, &root, &["src"], &excluding),
            ["o", "o/x", "o/x/b.txt"],
            "`*.txt` is `.dockerignore` syntax: top level only"
        );
        let parents = CopySpec {
            parents: true,
            ..spec("/p/")
        };
        assert_eq!(
            planned_paths(&ctx, &root, &["src/**/*.txt"], &parents),
            ["p", "p/src", "p/src/a.txt", "p/src/x", "p/src/x/b.txt"]
        );
        assert_eq!(
            planned_paths(&ctx, &root, &["src/./x/y"], &parents),
            ["p", "p/x", "p/x/y", "p/x/y/c.md"]
        );
        assert!(planned_paths(&ctx, &root, &["nothing/here"], &parents).is_empty());
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
        assert_eq!(
            planned_paths(&ctx, &root, &["dir"], &spec("/d")),
            ["d", "d/hard", "d/link", "d/sub", "d/sub/f"]
        );
        assert!(matches!(
            plan(&srcs(&ctx, &["app"]), &root, &spec("/x"), Owners::Root),
            Err(CopyError::Context(ContextError::Excluded { .. }))
        ));
    }

    #[test]
    fn several_sources_need_a_directory_destination_and_missing_ones_fail() {
        let (_d, ctx) = setup();
        let (_r, root) = empty();
        assert!(matches!(
            plan(
                &srcs(&ctx, &["app", "dir"]),
                &root,
                &spec("/x"),
                Owners::Root
            ),
            Err(CopyError::DestinationNotDirectory)
        ));
        assert!(matches!(
            plan(&srcs(&ctx, &["nope"]), &root, &spec("/x"), Owners::Root),
            Err(CopyError::Context(ContextError::NotFound(_)))
        ));
        assert!(matches!(
            plan(
                &srcs(&ctx, &["../etc/passwd"]),
                &root,
                &spec("/x"),
                Owners::Root
            ),
            Err(CopyError::Context(ContextError::OutsideContext(_)))
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
        let touched = copy_into(&srcs(&ctx, &["dir"]), &root, &spec("/t/d")).unwrap();
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
            copy_into(&srcs(&ctx, &["app"]), &root, &spec("/tmp/x/")),
            Err(CopyError::InRoot(InRootError::OverwriteDirectory(_)))
        ));
    }

    #[test]
    fn history_text_is_buildkits() {
        assert_eq!(
            history_text(
                "COPY",
                true,
                Some("app"),
                Some("755"),
                &["a".into(), "b".into()],
                &[],
                "/d/"
            ),
            "COPY --parents --chown=app --chmod=755 a b /d/ # buildkit"
        );
    }
}
