//! Root filesystems of stages, as snapshots (DESIGN.md data flow: "pull: … → layer apply →
//! snapshot (ChainID)", and a file step's "snapshotter.prepare(parent) → file op → commit →
//! diff").
//!
//! - [`Snapshots`] opens the snapshotter under the store (`<root>/snapshots`) on first use, so
//!   builds that never touch a filesystem (FROM + metadata steps) never open it.
//! - [`ensure_chain`] makes sure a committed snapshot exists for every ChainID prefix of an
//!   image's layer stack, applying only the missing layers (blob digest and DiffID verified
//!   while applying). Snapshots are named [`CommittedName::for_chain`], so images that share
//!   base layers share snapshots, and so do build steps that produce the same layer on the same
//!   parent.
//! - [`file_step`] runs one file step (COPY, WORKDIR) on a writable rootfs prepared on the
//!   stage's current snapshot, produces its layer and commits it under the new ChainID.
//!
//! # Concurrency
//!
//! Two kiln processes may unpack or build the same chain at once: each prepares its own active
//! snapshot under a unique key (the snapshotter's metadata lock serialises the transactions),
//! and the second commit of one name fails with "already exists", which is taken as a hit: the
//! loser removes its active snapshot and uses the winner's (identical) one.
//!
//! # Cleanup
//!
//! Mounts and temporary mountpoints are guards, released on every path; an active snapshot is
//! removed unless it was committed, so a failing step leaves neither a mount nor a snapshot
//! behind (a killed process leaves its records to the snapshotter's sweep at the next open).
//!
//! # Layers of file steps
//!
//! - overlay: the upperdir is the exact record of the step's writes; it is diffed with
//!   [`diff_upperdir`] keeping copy-ups (the parents of written paths, with their metadata as
//!   the rootfs has them after the step, as Docker's `overlay2` driver and containerd's change
//!   writer emit them).
//! - copy: there is no upperdir, and a walk of the whole tree is wasteful for a step that knows
//!   what it touched, so the step reports its touched paths and [`touched_layer`] writes those
//!   paths and all their ancestors from the new tree: for COPY and WORKDIR that is exactly the
//!   set an overlay upperdir holds, read with the same metadata, so with `SOURCE_DATE_EPOCH`
//!   both drivers give the same layer bytes. Known difference: xattrs are not carried by this
//!   path (file steps from the build context carry none), and a directory written over a lower
//!   non-directory is not marked opaque (overlay marks it; the extracted trees are the same).

use std::collections::{BTreeSet, HashMap};
use std::io::BufReader;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use snapshotter::apply::{
    ApplyError, ApplyExpect, ApplyOptions, Verification, WhiteoutMode, apply,
};
use snapshotter::compress::EncodeOptions;
use snapshotter::diff::{
    CopyUps, DiffError, DiffOptions, OverlayXattrs, diff_upperdir, diff_upperdir_vouched,
};
use snapshotter::layer::{
    Compression, Entry, EntryKind, LayerError, LayerInfo, LayerPath, LayerWriter,
};
use snapshotter::snapshot::{
    ActiveKey, Changes, CommittedName, LocalSnapshotter, SnapshotError, SnapshotRef, Snapshotter,
    StorageDriver,
};
use snapshotter::{BlobDigest, ChainId, DiffId};

use super::inroot::{InRoot, InRootError, StatKind};
use super::reuse::{LayerHistory, StepKey};
use crate::image::Descriptor;
use crate::store::{ContentStore, Expected, Store, StoreError};

/// Errors of snapshots and file-step rootfs handling.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("opening the snapshot store at `{path}`")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: Box<SnapshotError>,
    },
    #[error("snapshot store")]
    Snapshot(#[source] Box<SnapshotError>),
    #[error("the image lists {layers} layers but {diff_ids} DiffIDs")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("unpacking layer {digest}")]
    Apply {
        digest: snapshotter::Digest,
        #[source]
        source: Box<ApplyError>,
    },
    #[error("creating a temporary mountpoint")]
    Mountpoint(#[source] std::io::Error),
    #[error("diffing the step's changes")]
    Diff(#[from] DiffError),
    #[error(transparent)]
    InRoot(#[from] InRootError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SnapshotError> for RootfsError {
    fn from(e: SnapshotError) -> Self {
        Self::Snapshot(Box::new(e))
    }
}

type Result<T> = std::result::Result<T, RootfsError>;

/// How a step's layer is written.
#[derive(Debug, Clone, Copy)]
pub struct LayerSettings<'a> {
    /// `SOURCE_DATE_EPOCH`: clamps mtimes in the layer.
    pub epoch: Option<u64>,
    pub compression: Compression,
    /// Reuse of the blob the same step made before, if any (`solver::reuse`).
    pub reuse: Option<Reuse<'a>>,
    /// Files of an earlier result of the step to link before it runs (`solver::seed`;
    /// overlay only, file steps only).
    pub seed: Option<&'a super::seed::Seed>,
}

/// The store's snapshotter, opened on first use.
#[derive(Debug)]
pub struct Snapshots {
    dir: std::path::PathBuf,
    mounts: std::path::PathBuf,
    driver: Option<StorageDriver>,
    opened: OnceLock<LocalSnapshotter>,
}

impl Snapshots {
    pub fn new(store: &Store, driver: Option<StorageDriver>) -> Self {
        Self {
            dir: store.snapshots_dir(),
            mounts: store.mounts_dir(),
            driver,
            opened: OnceLock::new(),
        }
    }

    /// Parent of the steps' temporary mountpoints.
    pub fn mounts_dir(&self) -> &std::path::Path {
        &self.mounts
    }

    /// The snapshotter, opening (and creating) it the first time.
    pub fn get(&self) -> Result<&LocalSnapshotter> {
        if let Some(sn) = self.opened.get() {
            return Ok(sn);
        }
        // Mounts left by a kiln process that was killed mid-step.
        snapshotter::snapshot::sweep_stale_mounts(&self.mounts)?;
        let sn = snapshotter::snapshot::open(&self.dir, self.driver).map_err(|source| {
            RootfsError::Open {
                path: self.dir.clone(),
                source: Box::new(source),
            }
        })?;
        Ok(self.opened.get_or_init(|| sn))
    }
}

/// A key no other step or process uses.
fn unique_key(purpose: &str) -> Result<ActiveKey> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ok(ActiveKey::new(format!(
        "kiln-{purpose}-{}-{nanos}-{n}",
        std::process::id()
    ))?)
}

/// Removes an active snapshot on drop unless it was committed.
struct RemoveActive<'a> {
    sn: &'a LocalSnapshotter,
    key: Option<ActiveKey>,
}

impl RemoveActive<'_> {
    fn disarm(&mut self) {
        self.key = None;
    }
}

impl Drop for RemoveActive<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Best effort: a record left behind is swept once this process is gone.
            let _ = self.sn.remove(SnapshotRef::Active(&key));
        }
    }
}

/// Commit `active` as `name`; a concurrent commit of the same name is a hit.
fn commit_or_reuse(
    sn: &LocalSnapshotter,
    active: snapshotter::snapshot::ActiveSnapshot,
    guard: &mut RemoveActive<'_>,
    name: CommittedName,
) -> Result<CommittedName> {
    match sn.commit(name.clone(), active) {
        Ok(name) => {
            guard.disarm();
            Ok(name)
        }
        // The guard removes our copy; the existing snapshot holds the same stack.
        Err(SnapshotError::AlreadyExists { .. }) => Ok(name),
        Err(e) => Err(e.into()),
    }
}

/// Where a layer is applied (overlay: the upperdir; copy: the tree), without a mount.
fn write_target(changes: &Changes) -> &Path {
    match changes {
        Changes::Upper(upper) => upper,
        Changes::FullTree { tree, .. } => tree,
    }
}

/// Make sure a committed snapshot exists for the stack `layers` (bottom first) and return the
/// top one (`None` for an empty stack).
pub fn ensure_chain(
    sn: &LocalSnapshotter,
    content: &ContentStore,
    layers: &[Descriptor],
    diff_ids: &[DiffId],
) -> Result<Option<CommittedName>> {
    ensure_chain_verified(sn, content, layers, diff_ids, &[])
}

/// [`ensure_chain`], where `verified[i]` says that the caller has verified layer `i`'s stored
/// blob against both its digest and `diff_ids[i]` (a pull that just downloaded it): that
/// layer's apply does not hash it again. Layers without a `true` entry are hashed and checked.
pub fn ensure_chain_verified(
    sn: &LocalSnapshotter,
    content: &ContentStore,
    layers: &[Descriptor],
    diff_ids: &[DiffId],
    verified: &[bool],
) -> Result<Option<CommittedName>> {
    if layers.len() != diff_ids.len() {
        return Err(RootfsError::LayerCount {
            layers: layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    // The highest prefix already unpacked; everything below it exists too.
    let mut start = 0;
    let mut parent = None;
    for i in (0..diff_ids.len()).rev() {
        let chain = ChainId::of_stack(&diff_ids[..=i]).expect("a non-empty stack");
        if let Some(name) = sn.committed_for_chain(&chain)? {
            start = i + 1;
            parent = Some(name);
            break;
        }
    }
    let whiteouts = match sn.driver() {
        StorageDriver::Overlay => WhiteoutMode::Overlay,
        StorageDriver::Copy => WhiteoutMode::Delete,
    };
    for i in start..diff_ids.len() {
        let chain = ChainId::of_stack(&diff_ids[..=i]).expect("a non-empty stack");
        let layer = &layers[i];
        let active = sn.prepare(unique_key("unpack")?, parent.as_ref())?;
        let mut guard = RemoveActive {
            sn,
            key: Some(active.key().clone()),
        };
        let target = write_target(active.changes());
        let blob = BufReader::with_capacity(256 * 1024, content.open_blob(&layer.digest)?);
        let expect = ApplyExpect {
            diff_id: Some(diff_ids[i]),
            digest: Some(BlobDigest(layer.digest)),
        };
        // The commit below flushes the snapshot's files; a whole-filesystem sync is not needed.
        let verification = if verified.get(i) == Some(&true) {
            Verification::Vouched
        } else {
            Verification::Hash
        };
        let options = ApplyOptions {
            durability: snapshotter::apply::Durability::NoSync,
            verification,
            ..ApplyOptions::new(whiteouts)
        };
        apply(blob, target, expect, &options).map_err(|e| RootfsError::Apply {
            digest: layer.digest,
            source: Box::new(e),
        })?;
        parent = Some(commit_or_reuse(
            sn,
            active,
            &mut guard,
            CommittedName::for_chain(&chain),
        )?);
    }
    Ok(parent)
}

/// What a file step changed, for the layer of the copy driver.
#[derive(Debug, Default)]
pub struct Touched {
    /// Paths the step created or changed; their ancestors are added when the layer is written.
    pub paths: BTreeSet<LayerPath>,
    /// Regular files the step wrote from sources it `lstat`ed just before reading them (a
    /// COPY's context files): the sources' identities stand for the files' bytes, so that
    /// exporting the layer again takes unchanged members from the previous blob unread
    /// (`UpperDiff::write_to_vouched`).
    pub sources: HashMap<LayerPath, snapshotter::layer::FileIdentity>,
}

/// The result of a file step.
#[derive(Debug)]
pub enum StepLayer {
    /// The step changed nothing (e.g. WORKDIR on an existing directory): no layer.
    Unchanged,
    /// The step's layer, already in the content store, and the snapshot holding its result.
    Layer(LayerInfo),
}

/// A file step that wrote at least this many entries returns freed memory to the kernel before
/// its layer is written (`memory::release_freed`; about a millisecond).
const RELEASE_AFTER_ENTRIES: usize = 4096;

/// Run a file step: prepare an active snapshot on `parent` (the stage's stack, whose DiffIDs are
/// `parent_diff_ids`), give `write` the writable rootfs, then write the layer into the content
/// store and commit the snapshot under the new ChainID. `write` returns `None` for "nothing
/// changed" (the snapshot is dropped, no layer is made).
pub fn file_step<E: From<RootfsError>>(
    sn: &LocalSnapshotter,
    content: &ContentStore,
    parent: Option<&CommittedName>,
    parent_diff_ids: &[DiffId],
    layer: LayerSettings<'_>,
    mount_parent: &std::path::Path,
    write: impl FnOnce(&InRoot) -> std::result::Result<Option<Touched>, E>,
) -> std::result::Result<StepLayer, E> {
    let LayerSettings {
        epoch,
        compression,
        reuse,
        seed,
    } = layer;
    let active = sn
        .prepare(unique_key("step").map_err(E::from)?, parent)
        .map_err(RootfsError::from)?;
    let mut guard = RemoveActive {
        sn,
        key: Some(active.key().clone()),
    };
    // Before the upperdir is mounted: overlay must not see it change under a mount.
    if let (Some(seed), Changes::Upper(upper)) = (seed, active.changes()) {
        super::seed::link_into(seed, upper);
    }
    let touched = match sn.driver() {
        StorageDriver::Overlay => {
            let mountpoint = snapshotter::snapshot::mountpoint_in(mount_parent)
                .map_err(|e| E::from(RootfsError::from(e)))?;
            let mounted = active
                .mounts()
                .mount_at(mountpoint.path())
                .map_err(RootfsError::from)?;
            let root = InRoot::open(mounted.target()).map_err(RootfsError::from)?;
            let touched = write(&root);
            drop(root);
            match touched {
                // Unmount before reading the upperdir.
                Ok(touched) => {
                    mounted.unmount().map_err(RootfsError::from)?;
                    touched
                }
                // The step's own error is the one to report; unmounting is still attempted
                // (and the active snapshot removed by its guard).
                Err(e) => {
                    let _ = mounted.unmount();
                    return Err(e);
                }
            }
        }
        StorageDriver::Copy => {
            let tree = write_target(active.changes());
            write(&InRoot::open(tree).map_err(RootfsError::from)?)?
        }
    };
    let Some(touched) = touched else {
        return Ok(StepLayer::Unchanged);
    };
    // A large copy freed its walk and plan: give that back before the layer's buffers.
    if touched.paths.len() >= RELEASE_AFTER_ENTRIES {
        crate::memory::release_freed();
    }
    let key = reuse.map(|r| (r.history, r.key(parent_diff_ids)));
    let mut layer = layer_writer(content, compression, key.as_ref())?;
    match active.changes() {
        Changes::Upper(upper) => {
            let options = DiffOptions {
                copy_ups: CopyUps::Keep,
                xattrs: OverlayXattrs::Trusted,
                source_date_epoch: epoch,
            };
            let vouched = |path: &LayerPath| touched.sources.get(path).copied();
            diff_upperdir_vouched(upper, &options, &mut layer, &vouched)
                .map_err(RootfsError::from)?;
        }
        Changes::FullTree { tree, .. } => {
            let root = InRoot::open(tree).map_err(RootfsError::from)?;
            touched_layer(&root, &touched, epoch, &mut layer)?;
        }
    }
    let info = commit_layer(layer, key.as_ref())?;
    let mut diff_ids = parent_diff_ids.to_vec();
    diff_ids.push(info.diff_id);
    let chain = ChainId::of_stack(&diff_ids).expect("a non-empty stack");
    commit_or_reuse(sn, active, &mut guard, CommittedName::for_chain(&chain))?;
    Ok(StepLayer::Layer(info))
}

/// Where a step's layer may reuse the blob the same step made before (`solver::reuse`).
#[derive(Debug, Clone, Copy)]
pub struct Reuse<'a> {
    pub history: &'a LayerHistory,
    /// The instruction as written.
    pub instruction: &'a str,
}

impl Reuse<'_> {
    fn key(&self, parent_diff_ids: &[DiffId]) -> StepKey {
        StepKey::new(
            ChainId::of_stack(parent_diff_ids).as_ref(),
            self.instruction,
        )
    }
}

type BlobLayerWriter = LayerWriter<crate::store::BlobWriter>;

/// A layer writer into the content store, reusing the step's previous blob when there is one.
fn layer_writer(
    content: &ContentStore,
    compression: Compression,
    key: Option<&(&LayerHistory, StepKey)>,
) -> Result<BlobLayerWriter> {
    let previous = key.and_then(|(h, k)| h.previous(k, content, compression));
    let options = EncodeOptions {
        previous,
        ..EncodeOptions::default()
    };
    // The encoder hashes the blob as it writes it: the store need not hash it again.
    Ok(LayerWriter::with_options(
        content.writer_vouched()?,
        compression,
        options,
    ))
}

/// Finish a layer, commit its blob (verified), and record it for the next re-export.
fn commit_layer(
    writer: BlobLayerWriter,
    key: Option<&(&LayerHistory, StepKey)>,
) -> Result<LayerInfo> {
    let (blob, encoded) = writer.finish_encoded()?;
    let info = LayerInfo::from(&encoded);
    blob.commit(Some(Expected {
        digest: info.digest.0,
        size: Some(info.size),
    }))?;
    if let Some((history, key)) = key {
        history.record(key, &encoded);
    }
    Ok(info)
}

/// A read-only view of a committed snapshot, mounted under `mount_parent`; unmounted and
/// removed on drop.
pub struct MountedView<'a> {
    sn: &'a LocalSnapshotter,
    key: ActiveKey,
    mounted: bool,
    _dir: Option<snapshotter::snapshot::TempMountpoint>,
    path: std::path::PathBuf,
}

impl MountedView<'_> {
    /// Where the view's tree is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MountedView<'_> {
    fn drop(&mut self) {
        if self.mounted && snapshotter::snapshot::unmount(&self.path).is_err() {
            let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = self.sn.remove(SnapshotRef::Active(&self.key));
    }
}

/// Mount a read-only view of `name` (a stage's or an image's filesystem).
pub fn mount_view<'a>(
    sn: &'a LocalSnapshotter,
    name: Option<&CommittedName>,
    mount_parent: &Path,
) -> Result<MountedView<'a>> {
    let view = sn.view(unique_key("view")?, name)?;
    let key = view.key().clone();
    let dir = snapshotter::snapshot::mountpoint_in(mount_parent)?;
    match view.mounts().mount_at(dir.path()) {
        // Unmounted by the view's drop.
        Ok(m) => drop(m.leak()),
        Err(e) => {
            let _ = sn.remove(SnapshotRef::Active(&key));
            return Err(e.into());
        }
    }
    Ok(MountedView {
        sn,
        key,
        path: dir.path().to_owned(),
        mounted: true,
        _dir: Some(dir),
    })
}

/// Run a process step (RUN): prepare an active snapshot on `parent`, mount it writable and give
/// `run` the rootfs path, then diff what the step changed into a layer and commit the snapshot
/// under the new ChainID. On overlay the diff reads only the upperdir, dropping copy-ups that
/// are the same as in the parent (BuildKit's overlay differ); on the copy driver the new tree
/// is compared with the parent's. A step that changed nothing gives [`StepLayer::Unchanged`]
/// (BuildKit leaves empty layers out of the image).
pub fn process_step<E: From<RootfsError>>(
    sn: &LocalSnapshotter,
    content: &ContentStore,
    parent: Option<&CommittedName>,
    parent_diff_ids: &[DiffId],
    layer: LayerSettings<'_>,
    mount_parent: &Path,
    run: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<StepLayer, E> {
    let LayerSettings {
        epoch,
        compression,
        reuse,
        seed: _,
    } = layer;
    let active = sn
        .prepare(unique_key("run").map_err(E::from)?, parent)
        .map_err(RootfsError::from)?;
    let mut guard = RemoveActive {
        sn,
        key: Some(active.key().clone()),
    };
    fs_err::create_dir_all(mount_parent).map_err(|e| E::from(RootfsError::Mountpoint(e)))?;
    match sn.driver() {
        StorageDriver::Overlay => {
            let mountpoint = snapshotter::snapshot::mountpoint_in(mount_parent)
                .map_err(|e| E::from(RootfsError::from(e)))?;
            let mounted = active
                .mounts()
                .mount_at(mountpoint.path())
                .map_err(RootfsError::from)?;
            let ran = run(mounted.target());
            let unmounted = mounted.unmount();
            ran?;
            unmounted.map_err(RootfsError::from)?;
        }
        StorageDriver::Copy => run(write_target(active.changes()))?,
    }
    let key = reuse.map(|r| (r.history, r.key(parent_diff_ids)));
    let mut writer = layer_writer(content, compression, key.as_ref())?;
    let summary = match active.changes() {
        Changes::Upper(upper) => {
            let view = parent
                .map(|p| mount_view(sn, Some(p), mount_parent))
                .transpose()?;
            let options = DiffOptions {
                copy_ups: match &view {
                    Some(v) => CopyUps::DropUnchanged { lower: v.path() },
                    None => CopyUps::Keep,
                },
                xattrs: OverlayXattrs::Trusted,
                source_date_epoch: epoch,
            };
            diff_upperdir(upper, &options, &mut writer).map_err(RootfsError::from)?
        }
        Changes::FullTree { tree, parent } => {
            let options = DiffOptions {
                copy_ups: CopyUps::Keep,
                xattrs: OverlayXattrs::Trusted,
                source_date_epoch: epoch,
            };
            snapshotter::diff::diff_trees(parent.as_deref(), tree, &options, &mut writer)
                .map_err(RootfsError::from)?
        }
    };
    if summary.entries == 0 {
        // Dropping the writer discards its temporary blob; the guard removes the snapshot.
        return Ok(StepLayer::Unchanged);
    }
    let info = commit_layer(writer, key.as_ref())?;
    let mut diff_ids = parent_diff_ids.to_vec();
    diff_ids.push(info.diff_id);
    let chain = ChainId::of_stack(&diff_ids).expect("a non-empty stack");
    commit_or_reuse(sn, active, &mut guard, CommittedName::for_chain(&chain))?;
    Ok(StepLayer::Layer(info))
}

/// The layer of the touched paths and their ancestors, read from the tree (copy driver).
fn touched_layer<W: std::io::Write>(
    root: &InRoot,
    touched: &Touched,
    epoch: Option<u64>,
    layer: &mut LayerWriter<W>,
) -> Result<()> {
    let mut all: BTreeSet<LayerPath> = BTreeSet::new();
    for p in &touched.paths {
        all.extend(p.ancestors());
        all.insert(p.clone());
    }
    let clamp = |mtime: i64| {
        let m = u64::try_from(mtime).unwrap_or(0);
        epoch.map_or(m, |e| m.min(e))
    };
    let mut first_link: HashMap<(u64, u64), LayerPath> = HashMap::new();
    for path in all {
        let Some(st) = root.lstat(&path)? else {
            continue;
        };
        let mut content = None;
        let kind = match st.kind {
            StatKind::Directory => EntryKind::Directory,
            StatKind::Symlink => EntryKind::Symlink {
                target: root.read_link(&path)?,
            },
            StatKind::File => {
                let key = (st.dev, st.ino);
                match first_link.get(&key) {
                    Some(first) if st.nlink > 1 => EntryKind::Hardlink {
                        target: first.clone(),
                    },
                    _ => {
                        if st.nlink > 1 {
                            first_link.insert(key, path.clone());
                        }
                        content =
                            Some(BufReader::with_capacity(128 * 1024, root.open_file(&path)?));
                        EntryKind::File { size: st.size }
                    }
                }
            }
            // File steps create no other types; the tree's own (from the image) are untouched.
            StatKind::Other => continue,
        };
        let entry = Entry {
            path,
            kind,
            mode: if matches!(st.kind, StatKind::Symlink) {
                0o777
            } else {
                st.mode
            },
            uid: st.uid,
            gid: st.gid,
            mtime: clamp(st.mtime),
        };
        layer.append(
            &entry,
            content.as_mut().map(|r| r as &mut dyn std::io::Read),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use snapshotter::snapshot::Kind;

    use crate::image::{Descriptor, media_type};
    use crate::store::Layout;

    fn counts(sn: &LocalSnapshotter) -> (usize, usize) {
        let all = sn.walk().unwrap();
        let committed = all.iter().filter(|i| i.kind == Kind::Committed).count();
        (committed, all.len() - committed)
    }

    /// A one-directory, one-file gzip layer in `content`.
    fn base_layer(content: &ContentStore) -> (Descriptor, DiffId) {
        let mut layer = LayerWriter::new(content.writer().unwrap(), Compression::Gzip);
        let dir = Entry {
            path: LayerPath::new("tmp").unwrap(),
            kind: EntryKind::Directory,
            mode: 0o1777,
            uid: 0,
            gid: 0,
            mtime: 5,
        };
        let file = Entry {
            path: LayerPath::new("etc-file").unwrap(),
            kind: EntryKind::File { size: 2 },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 5,
        };
        layer.append(&file, Some(&mut &b"hi"[..])).unwrap();
        layer.append(&dir, None).unwrap();
        let (writer, info) = layer.finish().unwrap();
        writer.commit(None).unwrap();
        (
            Descriptor::new(media_type::OCI_LAYER_GZIP, info.digest.0, info.size),
            info.diff_id,
        )
    }

    #[test]
    fn copy_driver_unpacks_once_and_commits_steps_by_chain() {
        let store = tempfile::tempdir().unwrap();
        let content = ContentStore::open(&Layout::new(store.path())).unwrap();
        let mounts = store.path().join("mnt");
        let sn =
            snapshotter::snapshot::open(&store.path().join("snapshots"), Some(StorageDriver::Copy))
                .unwrap();
        let (layer, diff_id) = base_layer(&content);
        let base = ensure_chain(&sn, &content, std::slice::from_ref(&layer), &[diff_id])
            .unwrap()
            .unwrap();
        assert_eq!(
            ensure_chain(&sn, &content, std::slice::from_ref(&layer), &[diff_id]).unwrap(),
            Some(base.clone()),
            "a hit"
        );
        assert_eq!(counts(&sn), (1, 0));

        // A wrong DiffID is refused and leaves nothing behind.
        let wrong = DiffId(snapshotter::Digest::of(b"other"));
        assert!(matches!(
            ensure_chain(&sn, &content, std::slice::from_ref(&layer), &[wrong]),
            Err(RootfsError::Apply { .. })
        ));
        assert_eq!(counts(&sn), (1, 0));

        // A step writing into /tmp: the layer has /tmp as the tree has it, and the new file.
        let step = |sn: &LocalSnapshotter| {
            file_step::<RootfsError>(
                sn,
                &content,
                Some(&base),
                &[diff_id],
                LayerSettings {
                    epoch: Some(100),
                    compression: Compression::Gzip,
                    reuse: None,
                    seed: None,
                },
                &mounts,
                |root| {
                    let path = LayerPath::new("tmp/new").unwrap();
                    root.write_file(&path, &mut &b"new"[..], 0o600, 0, 0, 50)?;
                    Ok(Some(Touched {
                        paths: [path].into_iter().collect(),
                        ..Touched::default()
                    }))
                },
            )
        };
        let StepLayer::Layer(info) = step(&sn).unwrap() else {
            panic!("a layer")
        };
        let chain = ChainId::of_stack(&[diff_id, info.diff_id]).unwrap();
        assert!(sn.committed_for_chain(&chain).unwrap().is_some());
        assert_eq!(counts(&sn), (2, 0));
        let bytes = content.read(&info.digest.0).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("tmp/".to_owned(), 0o1777, 100),
                ("tmp/new".to_owned(), 0o600, 50)
            ]
        );
        // The same step again produces the same layer and reuses the committed snapshot.
        let StepLayer::Layer(again) = step(&sn).unwrap() else {
            panic!("a layer")
        };
        assert_eq!(again, info);
        assert_eq!(counts(&sn), (2, 0));

        // A failing step and a step that changes nothing leave no active snapshot.
        let failed = file_step::<RootfsError>(
            &sn,
            &content,
            Some(&base),
            &[diff_id],
            LayerSettings {
                epoch: None,
                compression: Compression::Gzip,
                reuse: None,
                seed: None,
            },
            &mounts,
            |root| {
                root.write_file(
                    &LayerPath::new("tmp").unwrap(),
                    &mut &b""[..],
                    0o644,
                    0,
                    0,
                    0,
                )?;
                Ok(None)
            },
        );
        assert!(matches!(
            failed,
            Err(RootfsError::InRoot(InRootError::OverwriteDirectory(_)))
        ));
        let unchanged = file_step::<RootfsError>(
            &sn,
            &content,
            Some(&base),
            &[diff_id],
            LayerSettings {
                epoch: None,
                compression: Compression::Gzip,
                reuse: None,
                seed: None,
            },
            &mounts,
            |_| Ok(None),
        )
        .unwrap();
        assert!(matches!(unchanged, StepLayer::Unchanged));
        assert_eq!(counts(&sn), (2, 0));
    }
}
