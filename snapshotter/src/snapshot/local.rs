//! [`LocalSnapshotter`]: the [`Snapshotter`] verbs over a local directory, with the driver
//! (overlay or copy) deciding only how trees are created and mounted.
//!
//! Each verb is a metadata transaction (`meta.rs`); long work (copying a tree, measuring and
//! syncing it at commit) happens outside the lock, bracketed by a record state that keeps
//! half-done snapshots invisible.
//!
//! Not responsible for: the on-disk record format (`meta.rs`), mount calls (`mounts.rs`).

use std::path::{Path, PathBuf};

use super::durable;
use super::error::{Result, SnapshotError};
use super::meta::{Layout, MetaStore, Record, State, Txn};
use super::{
    ActiveKey, ActiveSnapshot, Changes, CommittedName, Info, Kind, Mounts, SnapshotName,
    SnapshotRef, Snapshotter, StorageDriver, Usage, ViewSnapshot, copy, overlay, tree,
};

/// A snapshot store in a local directory.
#[derive(Debug)]
pub struct LocalSnapshotter {
    driver: StorageDriver,
    meta: MetaStore,
}

impl LocalSnapshotter {
    /// See [`super::open`].
    pub fn open(root: &Path, driver: Option<StorageDriver>) -> Result<Self> {
        fs_err::create_dir_all(root).map_err(SnapshotError::fs("create snapshot root"))?;
        let driver = match driver {
            Some(StorageDriver::Copy) => StorageDriver::Copy,
            Some(StorageDriver::Overlay) => {
                overlay::probe(root).map_err(|source| SnapshotError::OverlayUnsupported {
                    root: root.to_owned(),
                    source: Box::new(source),
                })?;
                StorageDriver::Overlay
            }
            None => match overlay::probe(root) {
                Ok(()) => StorageDriver::Overlay,
                Err(_) => StorageDriver::Copy,
            },
        };
        let meta = MetaStore::open(Layout::new(root.join(driver.as_str())))?;
        Ok(Self { driver, meta })
    }

    /// The driver's directory (`<root>/<driver>`), laid out as described in `meta.rs`.
    pub fn root(&self) -> &Path {
        self.meta.layout().root()
    }

    fn layout(&self) -> &Layout {
        self.meta.layout()
    }

    /// Overlay: the directory holding only the committed snapshot `name`'s own layer (its
    /// upperdir when it was active), for a caller that seeds a sibling snapshot by hard-linking
    /// unchanged files from it. Nothing may be written there: committed snapshots are
    /// immutable, and a link shares the inode. `None` on the copy driver (a full tree) or when
    /// there is no such snapshot.
    pub fn committed_layer_dir(&self, name: &CommittedName) -> Result<Option<PathBuf>> {
        if self.driver != StorageDriver::Overlay {
            return Ok(None);
        }
        let txn = self.meta.begin()?;
        Ok(txn
            .find(SnapshotRef::Committed(name))
            .filter(|r| r.kind == Kind::Committed)
            .map(|r| self.snapshot_fs(r.id)))
    }

    /// Create the snapshot `key`: under the lock when creating its directory is quick; with a
    /// [`State::Preparing`] record and the lock released when it means copying a tree.
    fn create(
        &self,
        key: ActiveKey,
        parent: Option<&CommittedName>,
        kind: Kind,
    ) -> Result<(Record, Vec<Record>)> {
        let long_work =
            self.driver == StorageDriver::Copy && kind == Kind::Active && parent.is_some();
        let mut txn = self.meta.begin()?;
        txn.ensure_free(&SnapshotName::Active(key.clone()))?;
        let parent_record = match parent {
            Some(name) => Some(txn.find_committed(name)?.clone()),
            None => None,
        };
        if let Some(parent_record) = &parent_record
            && self.driver == StorageDriver::Overlay
        {
            let mut depth = txn.ancestors(parent_record)?;
            depth.push(parent_record);
            overlay::check_depth(&key, &depth)?;
        }
        let id = txn.allocate_id()?;
        let mut record = Record::new_active(id, key, kind, parent_record.map(|p| p.id));
        if long_work {
            txn.put(record.clone())?;
            drop(txn);
            let built = self.materialize(&record);
            txn = self.meta.begin()?;
            if let Err(err) = built {
                txn.delete(id)?;
                drop(txn);
                tree::remove_tree(&self.layout().snapshot_dir(id))?;
                return Err(err);
            }
        } else if let Err(err) = self.materialize(&record) {
            tree::remove_tree(&self.layout().snapshot_dir(id))?;
            return Err(err);
        }
        record.state = State::Ready;
        txn.put(record.clone())?;
        let ancestors = txn.ancestors(&record)?.into_iter().cloned().collect();
        Ok((record, ancestors))
    }

    /// Create the snapshot's directories (and, for the copy driver, its tree). Nothing is synced:
    /// see `meta.rs` for why active snapshots need not be durable.
    fn materialize(&self, record: &Record) -> Result<()> {
        match self.driver {
            StorageDriver::Overlay => overlay::materialize(self.layout(), record),
            StorageDriver::Copy => copy::materialize(self.layout(), record),
        }
    }

    /// Make a snapshot's tree durable and measure it (see `meta.rs` for the per-driver choice).
    fn sync_and_measure(&self, id: u64) -> Result<Usage> {
        let fs = self.snapshot_fs(id);
        match self.driver {
            StorageDriver::Overlay => tree::sync_and_measure(&fs),
            StorageDriver::Copy => {
                durable::syncfs(&fs)?;
                tree::disk_usage(&fs)
            }
        }
    }

    fn mounts_of(&self, record: &Record, ancestors: &[&Record]) -> Mounts {
        match self.driver {
            StorageDriver::Overlay => overlay::mounts(self.layout(), record, ancestors),
            StorageDriver::Copy => copy::mounts(self.layout(), record),
        }
    }

    fn changes_of(&self, record: &Record) -> Changes {
        match self.driver {
            StorageDriver::Overlay => overlay::changes(self.layout(), record),
            StorageDriver::Copy => copy::changes(self.layout(), record),
        }
    }

    fn active_handle(&self, txn: &Txn<'_>, record: &Record) -> Result<ActiveSnapshot> {
        let SnapshotName::Active(key) = &record.name else {
            return Err(not_found(record.name.as_snapshot_ref()));
        };
        if record.kind == Kind::View {
            return Err(SnapshotError::IsView { key: key.clone() });
        }
        let ancestors = txn.ancestors(record)?;
        Ok(ActiveSnapshot {
            key: key.clone(),
            parent: parent_name(&ancestors),
            mounts: self.mounts_of(record, &ancestors),
            changes: self.changes_of(record),
        })
    }

    fn snapshot_fs(&self, id: u64) -> PathBuf {
        self.layout().fs_dir(id)
    }
}

fn not_found(snapshot: SnapshotRef<'_>) -> SnapshotError {
    SnapshotError::NotFound {
        snapshot: snapshot.to_name(),
    }
}

fn parent_name(ancestors: &[&Record]) -> Option<CommittedName> {
    match ancestors.first().map(|p| &p.name) {
        Some(SnapshotName::Committed(name)) => Some(name.clone()),
        _ => None,
    }
}

fn find_active<'t>(txn: &'t Txn<'_>, key: &ActiveKey) -> Result<&'t Record> {
    txn.find(SnapshotRef::Active(key))
        .ok_or_else(|| not_found(SnapshotRef::Active(key)))
}

fn info(txn: &Txn<'_>, record: &Record) -> Info {
    let parent = record
        .parent
        .and_then(|id| txn.by_id(id))
        .and_then(|p| match &p.name {
            SnapshotName::Committed(name) => Some(name.clone()),
            SnapshotName::Active(_) => None,
        });
    Info {
        name: record.name.clone(),
        kind: record.kind,
        parent,
        created: record.created(),
    }
}

impl Snapshotter for LocalSnapshotter {
    fn driver(&self) -> StorageDriver {
        self.driver
    }

    fn prepare(&self, key: ActiveKey, parent: Option<&CommittedName>) -> Result<ActiveSnapshot> {
        let (record, ancestors) = self.create(key.clone(), parent, Kind::Active)?;
        let ancestors: Vec<&Record> = ancestors.iter().collect();
        Ok(ActiveSnapshot {
            key,
            parent: parent.cloned(),
            mounts: self.mounts_of(&record, &ancestors),
            changes: self.changes_of(&record),
        })
    }

    fn view(&self, key: ActiveKey, parent: Option<&CommittedName>) -> Result<ViewSnapshot> {
        let (record, ancestors) = self.create(key.clone(), parent, Kind::View)?;
        let ancestors: Vec<&Record> = ancestors.iter().collect();
        Ok(ViewSnapshot {
            key,
            parent: parent.cloned(),
            mounts: self.mounts_of(&record, &ancestors),
        })
    }

    fn commit(&self, name: CommittedName, active: ActiveSnapshot) -> Result<CommittedName> {
        let committed = SnapshotName::Committed(name.clone());
        let id = {
            let txn = self.meta.begin()?;
            let record = find_active(&txn, &active.key)?;
            if record.kind == Kind::View {
                return Err(SnapshotError::IsView { key: active.key });
            }
            txn.ensure_free(&committed)?;
            record.id
        };
        // Long work outside the lock: the record is still an active snapshot owned by us.
        let usage = self.sync_and_measure(id)?;

        let mut txn = self.meta.begin()?;
        let mut record = find_active(&txn, &active.key)?.clone();
        if record.id != id {
            // Removed and re-prepared under the same key meanwhile.
            return Err(not_found(SnapshotRef::Active(&active.key)));
        }
        txn.ensure_free(&committed)?;
        record.name = committed;
        record.kind = Kind::Committed;
        record.owner = None;
        record.usage = Some(usage);
        txn.put(record)?;
        drop(txn);
        if self.driver == StorageDriver::Overlay {
            overlay::after_commit(self.layout(), id)?;
        }
        Ok(name)
    }

    fn resume(&self, key: &ActiveKey) -> Result<ActiveSnapshot> {
        let txn = self.meta.begin()?;
        let record = find_active(&txn, key)?;
        self.active_handle(&txn, record)
    }

    fn persist(&self, key: &ActiveKey) -> Result<()> {
        let mut txn = self.meta.begin()?;
        let mut record = find_active(&txn, key)?.clone();
        if record.owner.is_some() {
            let layout = self.layout();
            durable::fsync_dir(&layout.snapshot_dir(record.id))?;
            durable::fsync_dir(&layout.snapshots_dir())?;
            record.owner = None;
            txn.put(record)?;
        }
        Ok(())
    }

    fn mounts(&self, key: &ActiveKey) -> Result<Mounts> {
        let txn = self.meta.begin()?;
        let record = find_active(&txn, key)?;
        let ancestors = txn.ancestors(record)?;
        Ok(self.mounts_of(record, &ancestors))
    }

    fn stat(&self, snapshot: SnapshotRef<'_>) -> Result<Info> {
        let txn = self.meta.begin()?;
        let record = txn.find(snapshot).ok_or_else(|| not_found(snapshot))?;
        Ok(info(&txn, record))
    }

    fn usage(&self, snapshot: SnapshotRef<'_>) -> Result<Usage> {
        let (id, stored) = {
            let txn = self.meta.begin()?;
            let record = txn.find(snapshot).ok_or_else(|| not_found(snapshot))?;
            (record.id, record.usage)
        };
        match stored {
            Some(usage) => Ok(usage),
            None => tree::disk_usage(&self.snapshot_fs(id)),
        }
    }

    fn walk(&self) -> Result<Vec<Info>> {
        let txn = self.meta.begin()?;
        let mut all: Vec<Info> = txn
            .records()
            .iter()
            .filter(|r| r.is_ready())
            .map(|r| info(&txn, r))
            .collect();
        all.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        Ok(all)
    }

    fn remove(&self, snapshot: SnapshotRef<'_>) -> Result<()> {
        let id = {
            let mut txn = self.meta.begin()?;
            let record = txn.find(snapshot).ok_or_else(|| not_found(snapshot))?;
            let id = record.id;
            let children = txn.children(id);
            if !children.is_empty() {
                return Err(SnapshotError::HasChildren {
                    snapshot: snapshot.to_name(),
                    children,
                });
            }
            txn.delete(id)?;
            id
        };
        // Metadata is gone: from here on the directory is an orphan, also for a concurrent sweep.
        tree::remove_tree(&self.layout().snapshot_dir(id))
    }
}
