//! Snapshot metadata on disk: one JSON record per snapshot, the id counter, transactions under
//! the store lock, and the sweep that removes what a crash left behind.
//!
//! Layout of a driver root (`<store>/snapshots/<driver>/`):
//!
//! ```text
//! lock                  flock(2)ed for every metadata transaction
//! meta/next-id          decimal counter; ids are never reused
//! meta/generation       decimal counter, bumped (under the lock) before a transaction's first
//!                       record write: a process reuses the records it loaded while it is unchanged
//! meta/<id>.json        the record of snapshot <id> (kind, state, key or name, parent id, owner,
//!                       usage); written temp → fsync → rename (→ fsync dir when it must
//!                       survive a crash: committed or persisted)
//! snapshots/<id>/fs     the snapshot's tree (overlay: the upperdir; copy: the full tree)
//! snapshots/<id>/work   overlay workdir (overlay driver, active snapshots only)
//! ```
//!
//! Protocol (containers/storage's "incomplete" flag, containerd's metadata-first removal):
//! - quick prepares (overlay; copy without parent) create `snapshots/<id>` under the lock, then
//!   write the record as [`State::Ready`]; a crash in between leaves an orphan directory.
//! - long prepares (copy with a parent) write the record in [`State::Preparing`] *before*
//!   creating `snapshots/<id>`, drop the lock while copying the tree, then rewrite the record as
//!   [`State::Ready`]. Preparing records are invisible to every verb but reserve their key and
//!   pin their parent.
//! - commit makes the snapshot's tree durable (overlay: fsync of each file and directory of the
//!   upperdir during the usage walk, as it holds only the changes; copy: one `syncfs(2)`, as the
//!   whole copied tree is dirty), then rewrites the record (same file, one rename) from active
//!   to committed: there is no instant at which both or neither exist, and a committed record
//!   never points at unsynced data.
//! - active snapshots and views are not made durable: after a crash their owner is dead and they
//!   are swept. `persist` makes the record and directories durable (the contents stay whatever
//!   the filesystem kept, like any container rootfs).
//! - remove deletes the record first, then the directory; a crash in between leaves a directory
//!   without a record, which the sweep deletes.
//! - the sweep (on open, under the lock) deletes temp files, records still preparing whose owner
//!   process is dead, active snapshots and views whose owner process is dead (unless persisted),
//!   and directories without a record.
//!
//! Not responsible for: what is inside `fs/` (the drivers), or mounting.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::durable::{self, Durability, LockGuard, TEMP_PREFIX};
use super::error::{Result, SnapshotError};
use super::id::{ActiveKey, CommittedName, SnapshotName, SnapshotRef};
use super::tree;
use super::{Kind, Usage};

/// Version of the record format; bump instead of adding compatibility branches.
const FORMAT_VERSION: u32 = 1;

/// Paths inside one driver root. The only place these paths are built.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// In `meta/`, so that the next record write's directory fsync persists it.
    fn counter_file_name() -> &'static str {
        "next-id"
    }

    /// In `meta/`: the generation of the records (see [`MetaStore::begin`]).
    fn generation_file_name() -> &'static str {
        "generation"
    }

    fn meta_dir(&self) -> PathBuf {
        self.root.join("meta")
    }

    fn record_file_name(id: u64) -> String {
        let mut name = id.to_string();
        name.push_str(".json");
        name
    }

    pub(crate) fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub(crate) fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.snapshots_dir().join(id.to_string())
    }

    /// The snapshot's tree: the upperdir (overlay) or the full tree (copy).
    pub(crate) fn fs_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("fs")
    }

    /// The overlay workdir of an active snapshot (same filesystem as its upperdir, as required).
    pub(crate) fn work_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("work")
    }
}

/// Where a record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// The directory is being created; invisible, swept when the owner is dead.
    Preparing,
    /// Usable.
    Ready,
}

/// The process that owns an active snapshot or view. `start_ticks` (field 22 of
/// `/proc/<pid>/stat`) tells a live owner from a later process that reused the pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) pid: u32,
    pub(crate) start_ticks: u64,
}

impl Owner {
    /// The current process (computed once).
    pub(crate) fn current() -> Option<Owner> {
        static CURRENT: OnceLock<Option<Owner>> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let pid = rustix::process::getpid()
                .as_raw_nonzero()
                .get()
                .unsigned_abs();
            start_ticks(pid).map(|start_ticks| Owner { pid, start_ticks })
        })
    }

    /// Whether the owning process still runs. Pids are those of the pid namespace the store is
    /// used from; a store shared across pid namespaces should persist its active snapshots.
    pub(crate) fn is_alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

fn start_ticks(pid: u32) -> Option<u64> {
    let path = Path::new("/proc").join(pid.to_string()).join("stat");
    let stat = fs_err::read_to_string(path).ok()?;
    // The command name (field 2) is parenthesised and may contain spaces and parentheses.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on; starttime is field 22.
    after_comm.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// One snapshot's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) format: u32,
    pub(crate) id: u64,
    pub(crate) name: SnapshotName,
    pub(crate) kind: Kind,
    pub(crate) state: State,
    /// Record id of the parent (always a committed snapshot).
    pub(crate) parent: Option<u64>,
    pub(crate) created_unix_secs: u64,
    /// `None`: not tied to a process (committed, or persisted with `Snapshotter::persist`).
    pub(crate) owner: Option<Owner>,
    /// Measured at commit; `None` while active.
    pub(crate) usage: Option<Usage>,
}

impl Record {
    pub(crate) fn new_active(id: u64, key: ActiveKey, kind: Kind, parent: Option<u64>) -> Self {
        let created_unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            format: FORMAT_VERSION,
            id,
            name: SnapshotName::Active(key),
            kind,
            state: State::Preparing,
            parent,
            created_unix_secs,
            owner: Owner::current(),
            usage: None,
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Left behind by a process that is gone: still preparing, or an unpersisted active snapshot
    /// or view.
    fn is_abandoned(&self) -> bool {
        let owner_dead = self.owner.is_some_and(|owner| !owner.is_alive());
        owner_dead && (self.state == State::Preparing || self.kind != Kind::Committed)
    }

    pub(crate) fn created(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(self.created_unix_secs)
    }
}

/// The metadata of one driver root.
#[derive(Debug)]
pub(crate) struct MetaStore {
    layout: Layout,
    /// The records as of a generation, to skip reading every record file in every transaction
    /// (a build runs several per step, over stores of thousands of snapshots).
    loaded: std::sync::Mutex<Option<(u64, Vec<Record>)>>,
}

impl MetaStore {
    /// Create the directories if needed, then sweep what crashed processes left behind.
    pub(crate) fn open(layout: Layout) -> Result<Self> {
        for dir in [layout.meta_dir(), layout.snapshots_dir()] {
            fs_err::create_dir_all(&dir).map_err(SnapshotError::fs("create snapshot store"))?;
        }
        let store = Self {
            layout,
            loaded: std::sync::Mutex::new(None),
        };
        let orphans = {
            let mut txn = store.begin()?;
            txn.sweep()?
        };
        for dir in orphans {
            tree::remove_tree(&dir)?;
        }
        Ok(store)
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Take the store lock and load every record (from memory when no process changed them
    /// since this one last loaded or wrote them: every change bumps the generation first).
    pub(crate) fn begin(&self) -> Result<Txn<'_>> {
        let lock = LockGuard::acquire(&self.layout.lock_file())?;
        let generation = self.generation()?;
        let cached = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(g, _)| *g == generation)
            .map(|(_, records)| records.clone());
        let records = match cached {
            Some(records) => records,
            None => self.load_records()?,
        };
        Ok(Txn {
            store: self,
            _lock: lock,
            records,
            generation,
            bumped: false,
        })
    }

    /// The current generation (0 before the first change).
    fn generation(&self) -> Result<u64> {
        let path = self.layout.meta_dir().join(Layout::generation_file_name());
        match fs_err::read(&path) {
            Ok(bytes) => Ok(std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(err) => Err(SnapshotError::fs("read metadata generation")(err)),
        }
    }

    fn load_records(&self) -> Result<Vec<Record>> {
        let meta_dir = self.layout.meta_dir();
        let mut records = Vec::new();
        for entry in fs_err::read_dir(&meta_dir).map_err(SnapshotError::fs("list metadata"))? {
            let entry = entry.map_err(SnapshotError::fs("list metadata"))?;
            let file_name = entry.file_name();
            let Some(id) = file_name
                .to_str()
                .and_then(|name| name.strip_suffix(".json"))
                .and_then(|stem| stem.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let bytes = fs_err::read(&path).map_err(SnapshotError::fs("read metadata"))?;
            let record: Record = serde_json::from_slice(&bytes)
                .map_err(|source| SnapshotError::CorruptMetadata { path, source })?;
            if record.id != id || record.format != FORMAT_VERSION {
                return Err(SnapshotError::CorruptMetadata {
                    path: entry.path(),
                    source: serde::de::Error::custom("record id or format does not match"),
                });
            }
            records.push(record);
        }
        records.sort_by_key(|r| r.id);
        Ok(records)
    }
}

/// A metadata transaction: the store lock plus a snapshot of all records.
pub(crate) struct Txn<'s> {
    store: &'s MetaStore,
    _lock: LockGuard,
    records: Vec<Record>,
    /// The generation the records are of; bumped before the first change.
    generation: u64,
    bumped: bool,
}

impl Drop for Txn<'_> {
    /// Still under the lock: remember the records as of this transaction's generation.
    fn drop(&mut self) {
        let mut loaded = self.store.loaded.lock().unwrap_or_else(|p| p.into_inner());
        *loaded = Some((self.generation, std::mem::take(&mut self.records)));
    }
}

impl Txn<'_> {
    /// Before the first change of this transaction: a new generation, so that every process
    /// (this one included, should the change fail half-way) reads the records again.
    fn bump_generation(&mut self) -> Result<()> {
        if self.bumped {
            return Ok(());
        }
        let next = self.generation + 1;
        // Invalidate our own copy first: if writing fails, nothing stale is kept.
        self.generation = u64::MAX;
        // Not synced: the generation only tells live processes that their loaded records are
        // stale. No process outlives a crash, so a counter lost or torn by one (read as 0)
        // invalidates nothing that still exists.
        durable::write_atomic(
            &self.store.layout.meta_dir(),
            Layout::generation_file_name(),
            next.to_string().as_bytes(),
            Durability::BestEffort,
        )?;
        self.generation = next;
        self.bumped = true;
        Ok(())
    }

    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }

    /// A usable (ready) snapshot by key or name.
    pub(crate) fn find(&self, snapshot: SnapshotRef<'_>) -> Option<&Record> {
        let wanted = snapshot.to_name();
        self.records
            .iter()
            .find(|r| r.is_ready() && r.name == wanted)
    }

    pub(crate) fn find_committed(&self, name: &CommittedName) -> Result<&Record> {
        self.find(SnapshotRef::Committed(name))
            .ok_or_else(|| SnapshotError::ParentNotFound {
                parent: name.clone(),
            })
    }

    /// Refuse `wanted` if any record (even one still preparing) holds it as key or name.
    pub(crate) fn ensure_free(&self, wanted: &SnapshotName) -> Result<()> {
        match self
            .records
            .iter()
            .find(|r| r.name.as_str() == wanted.as_str())
        {
            Some(existing) => Err(SnapshotError::AlreadyExists {
                snapshot: existing.name.clone(),
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn by_id(&self, id: u64) -> Option<&Record> {
        self.records.iter().find(|r| r.id == id)
    }

    /// The record's parent chain, nearest parent first (the overlay lowerdir order).
    pub(crate) fn ancestors(&self, record: &Record) -> Result<Vec<&Record>> {
        let mut chain = Vec::new();
        let mut next = record.parent;
        while let Some(parent_id) = next {
            let parent = self
                .by_id(parent_id)
                .ok_or_else(|| SnapshotError::BrokenChain {
                    path: self.record_path(record.id),
                    parent_id,
                })?;
            chain.push(parent);
            next = parent.parent;
        }
        Ok(chain)
    }

    /// Snapshots (including ones still preparing) whose parent is `id`.
    pub(crate) fn children(&self, id: u64) -> Vec<SnapshotName> {
        self.records
            .iter()
            .filter(|r| r.parent == Some(id))
            .map(|r| r.name.clone())
            .collect()
    }

    /// A fresh id: above the counter, every record and every directory; then persist the counter.
    pub(crate) fn allocate_id(&mut self) -> Result<u64> {
        let layout = &self.store.layout;
        let counter_path = layout.meta_dir().join(Layout::counter_file_name());
        let counter = match fs_err::read(&counter_path) {
            Ok(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .unwrap_or(0),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
            Err(err) => return Err(SnapshotError::fs("read snapshot id counter")(err)),
        };
        let max_record = self.records.iter().map(|r| r.id).max().unwrap_or(0);
        let max_dir = snapshot_dir_ids(&layout.snapshots_dir())?
            .into_iter()
            .max()
            .unwrap_or(0);
        let id = counter.max(max_record + 1).max(max_dir + 1).max(1);
        // A hint: ids are also kept above every record and directory, so a counter lost in a
        // crash can only bring back an id that no surviving record or directory uses.
        durable::write_atomic(
            &layout.meta_dir(),
            Layout::counter_file_name(),
            (id + 1).to_string().as_bytes(),
            Durability::BestEffort,
        )?;
        Ok(id)
    }

    fn record_path(&self, id: u64) -> PathBuf {
        self.store
            .layout
            .meta_dir()
            .join(Layout::record_file_name(id))
    }

    /// Write (create or replace) a record: durably when it must survive a crash (committed,
    /// persisted); merely untorn for an active snapshot or view of a live process, which a
    /// crash makes abandoned anyway.
    pub(crate) fn put(&mut self, record: Record) -> Result<()> {
        self.bump_generation()?;
        let durability = if record.owner.is_none() {
            Durability::Durable
        } else {
            Durability::NotTorn
        };
        let bytes = serde_json::to_vec_pretty(&record).map_err(|source| {
            SnapshotError::CorruptMetadata {
                path: self.record_path(record.id),
                source,
            }
        })?;
        if let Err(e) = durable::write_atomic(
            &self.store.layout.meta_dir(),
            &Layout::record_file_name(record.id),
            &bytes,
            durability,
        ) {
            // The file may or may not have changed: never reuse these records.
            self.generation = u64::MAX;
            return Err(e);
        }
        match self.records.iter_mut().find(|r| r.id == record.id) {
            Some(slot) => *slot = record,
            None => self.records.push(record),
        }
        Ok(())
    }

    /// Delete a record durably. Its directory becomes an orphan for the caller (or a later
    /// sweep) to remove.
    pub(crate) fn delete(&mut self, id: u64) -> Result<()> {
        self.bump_generation()?;
        // Until the record is gone from memory too, these records are not to be reused.
        let generation = std::mem::replace(&mut self.generation, u64::MAX);
        match fs_err::remove_file(self.record_path(id)) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(SnapshotError::fs("delete metadata")(err)),
        }
        durable::fsync_dir(&self.store.layout.meta_dir())?;
        self.generation = generation;
        self.records.retain(|r| r.id != id);
        Ok(())
    }

    /// Delete abandoned records and temp files; return the directories that no record owns.
    fn sweep(&mut self) -> Result<Vec<PathBuf>> {
        let meta_dir = self.store.layout.meta_dir();
        for entry in fs_err::read_dir(&meta_dir).map_err(SnapshotError::fs("list metadata"))? {
            let entry = entry.map_err(SnapshotError::fs("list metadata"))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                fs_err::remove_file(entry.path())
                    .map_err(SnapshotError::fs("remove stale metadata temp file"))?;
            }
        }
        // Children before parents: an abandoned view must go before its (abandoned) parent.
        let mut abandoned: Vec<u64> = self
            .records
            .iter()
            .filter(|r| r.is_abandoned())
            .map(|r| r.id)
            .collect();
        abandoned.sort_unstable_by(|a, b| b.cmp(a));
        for id in abandoned {
            if self.children(id).is_empty() {
                self.delete(id)?;
            }
        }
        let snapshots_dir = self.store.layout.snapshots_dir();
        let orphans = snapshot_dir_ids(&snapshots_dir)?
            .into_iter()
            .filter(|id| self.by_id(*id).is_none())
            .map(|id| self.store.layout.snapshot_dir(id))
            .collect();
        Ok(orphans)
    }
}

/// Numeric directory names under `snapshots/` (anything else is not ours and left alone).
fn snapshot_dir_ids(snapshots_dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs_err::read_dir(snapshots_dir).map_err(SnapshotError::fs("list snapshots"))? {
        let entry = entry.map_err(SnapshotError::fs("list snapshots"))?;
        if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> MetaStore {
        MetaStore::open(Layout::new(dir.to_owned())).unwrap()
    }

    #[test]
    fn owner_of_this_process_is_alive_and_a_bogus_one_is_not() {
        let me = Owner::current().unwrap();
        assert!(me.is_alive());
        let reused = Owner {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!reused.is_alive());
        assert!(
            !Owner {
                pid: u32::MAX,
                start_ticks: 0
            }
            .is_alive()
        );
    }

    #[test]
    fn ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut txn = store.begin().unwrap();
        let a = txn.allocate_id().unwrap();
        let b = txn.allocate_id().unwrap();
        assert!(b > a);
        drop(txn);
        let mut txn = store.begin().unwrap();
        assert!(txn.allocate_id().unwrap() > b);
    }

    #[test]
    fn sweep_removes_dead_preparing_records_and_their_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let dead = Owner {
            pid: u32::MAX,
            start_ticks: 1,
        };
        let (half, alive, persisted) = {
            let mut txn = store.begin().unwrap();
            let key = |k: &str| ActiveKey::new(k).unwrap();
            let mut half =
                Record::new_active(txn.allocate_id().unwrap(), key("half"), Kind::Active, None);
            half.owner = Some(dead);
            let mut alive =
                Record::new_active(txn.allocate_id().unwrap(), key("mine"), Kind::Active, None);
            alive.state = State::Ready;
            let mut persisted =
                Record::new_active(txn.allocate_id().unwrap(), key("kept"), Kind::Active, None);
            persisted.state = State::Ready;
            persisted.owner = None;
            for r in [&half, &alive, &persisted] {
                txn.put(r.clone()).unwrap();
                fs_err::create_dir_all(store.layout().fs_dir(r.id)).unwrap();
            }
            (half.id, alive.id, persisted.id)
        };
        fs_err::write(dir.path().join("meta").join(".tmp-9.json"), b"{").unwrap();
        let store = self::store(dir.path());
        let txn = store.begin().unwrap();
        let ids: Vec<u64> = txn.records().iter().map(|r| r.id).collect();
        assert_eq!(ids, [alive, persisted]);
        assert!(!store.layout().snapshot_dir(half).exists());
        assert!(!dir.path().join("meta").join(".tmp-9.json").exists());
    }

    #[test]
    fn records_are_reused_only_while_no_store_changed_them() {
        let dir = tempfile::tempdir().unwrap();
        // Two opens of one root: two processes sharing a store.
        let (a, b) = (store(dir.path()), store(dir.path()));
        let key = |k: &str| ActiveKey::new(k).unwrap();
        let put = |s: &MetaStore, k: &str| {
            let mut txn = s.begin().unwrap();
            let mut r = Record::new_active(txn.allocate_id().unwrap(), key(k), Kind::Active, None);
            r.state = State::Ready;
            txn.put(r.clone()).unwrap();
            r.id
        };
        let names = |s: &MetaStore| -> Vec<u64> {
            s.begin().unwrap().records().iter().map(|r| r.id).collect()
        };
        let first = put(&a, "one");
        assert_eq!(names(&a), [first]);
        assert_eq!(names(&b), [first]);
        // b changes the records: a sees it in its next transaction.
        let second = put(&b, "two");
        assert_eq!(names(&a), [first, second]);
        {
            let mut txn = b.begin().unwrap();
            txn.delete(first).unwrap();
        }
        assert_eq!(names(&a), [second]);
        // Unchanged: a's next transactions read no record file (a bogus file is not seen).
        fs_err::write(dir.path().join("meta").join("999.json"), b"{").unwrap();
        assert_eq!(names(&a), [second]);
        // A store that did not load since is not fooled either: it reads the bogus record.
        assert!(store_err(dir.path()));
    }

    fn store_err(dir: &Path) -> bool {
        MetaStore::open(Layout::new(dir.to_owned())).is_err()
    }
}
