//! The stat cache of a local context: the content digest of each file, remembered with the
//! file's `lstat` identity (device, inode, size, mode, mtime and ctime in nanoseconds), so a
//! rebuild recognises unchanged files from one `lstat` each without reading them.
//!
//! A record is trusted only when everything in its identity still matches and the file was not
//! modified in the second before the cache was written ("racy" records, as git treats index
//! entries no older than the index): a file changed right after it was hashed, within the
//! filesystem's timestamp granularity, could otherwise keep its old identity. The ctime check
//! catches changes that restore the mtime (`touch -d`, `cp -p`, `tar x`).
//!
//! One file per context root under `<root>/cache/build/stat/`, read on first use (a build whose
//! steps are all recognised from their selection summaries never reads it), replaced atomically
//! when a build learned something; records of files that are gone (and that the build did not
//! look up) are dropped when it is rewritten.
//!
//! # Selection summaries
//!
//! Beside the records, one small file per COPY selection (`<root hex>.sel/<selection key hex>`):
//! the fingerprint of everything the selection looked at in the context (each entry's name and
//! `statx` identity, see `solver::context::fingerprint`) and the inputs digest the selection
//! had then. A rebuild that finds the same fingerprint takes that digest without planning the
//! selection or looking up its files one by one. A summary is written only when nothing it
//! covers changed in the second before its fingerprint was taken (the racy rule again): an
//! identity seen then cannot come back with other content, since a change moves the ctime.
//!
//! Not responsible for: what is hashed or how (see `content`), what a fingerprint covers.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{OnceLock, RwLock};

use snapshotter::Digest;

/// The file starts with this line, then the time it was written (`i128` little-endian, ns since
/// the epoch), then one record after another (see [`Record::encode`]). A private cache read on
/// every build, so a fixed binary layout rather than text: 20,000 records load in about a
/// millisecond. Anything that does not parse is an empty cache.
const MAGIC: &[u8] = b"kiln-stat-v2\n";

/// Records newer than the cache file by less than this are not trusted.
const RACY_NANOS: i128 = 1_000_000_000;

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl StatIdentity {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mode: meta.mode(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

#[derive(Debug)]
struct Record {
    identity: StatIdentity,
    digest: Digest,
    /// Looked up or recorded by this build (so its file existed a moment ago). Atomic so that
    /// lookups, by the thousand from several threads, share a read lock.
    seen: AtomicBool,
}

/// Bytes of an encoded record before its path.
const RECORD_FIXED: usize = 8 + 8 + 8 + 4 + 16 + 16 + 32 + 4;

impl Record {
    /// `dev ino size (u64) mode (u32) mtime ctime (i128) digest (32 bytes) path length (u32)
    /// path`, integers little-endian.
    fn encode(&self, rel: &[u8], out: &mut Vec<u8>) {
        let i = &self.identity;
        out.extend_from_slice(&i.dev.to_le_bytes());
        out.extend_from_slice(&i.ino.to_le_bytes());
        out.extend_from_slice(&i.size.to_le_bytes());
        out.extend_from_slice(&i.mode.to_le_bytes());
        out.extend_from_slice(&i.mtime_ns.to_le_bytes());
        out.extend_from_slice(&i.ctime_ns.to_le_bytes());
        out.extend_from_slice(self.digest.as_bytes());
        out.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        out.extend_from_slice(rel);
    }

    /// One record from the front of `bytes`, and the rest.
    fn decode(bytes: &[u8]) -> Option<(&[u8], Record, &[u8])> {
        let (fixed, rest) = bytes.split_at_checked(RECORD_FIXED)?;
        let mut at = 0;
        let mut take = |n: usize| {
            let field = &fixed[at..at + n];
            at += n;
            field
        };
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or_default());
        let i128_of = |b: &[u8]| i128::from_le_bytes(b.try_into().unwrap_or_default());
        let dev = u64_of(take(8));
        let ino = u64_of(take(8));
        let size = u64_of(take(8));
        let mode = u32::from_le_bytes(take(4).try_into().ok()?);
        let mtime_ns = i128_of(take(16));
        let ctime_ns = i128_of(take(16));
        let digest = Digest::from_bytes(take(32).try_into().ok()?);
        let len = u32::from_le_bytes(take(4).try_into().ok()?) as usize;
        let (rel, rest) = rest.split_at_checked(len)?;
        let identity = StatIdentity {
            dev,
            ino,
            size,
            mode,
            mtime_ns,
            ctime_ns,
        };
        let record = Record {
            identity,
            digest,
            seen: AtomicBool::new(false),
        };
        Some((rel, record, rest))
    }
}

/// The stat cache of one context root.
#[derive(Debug)]
pub struct StatCache {
    root: PathBuf,
    file: PathBuf,
    /// The records, read from `file` on first use.
    loaded: OnceLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// When the loaded file was written (ns since the epoch); 0 when there was none.
    written_ns: i128,
    state: RwLock<State>,
}

/// The start of a selection summary file, then the fingerprint and the inputs digest.
const SUMMARY_MAGIC: &[u8] = b"kiln-selection-v1\n";

/// Records by the file's absolute path (its bytes: hashed as bytes, not component by
/// component).
type Records = HashMap<Box<[u8]>, Record, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct State {
    records: Records,
    /// Records were added or changed since loading.
    changed: bool,
}

fn key(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

impl StatCache {
    /// The stat cache of the context at `root` (absolute, canonical), kept in `dir`. Its file
    /// is read on first use; a missing, unreadable or malformed file is an empty cache.
    pub fn load(dir: &Path, root: &Path) -> Self {
        let name = hex::encode(Digest::of(root.as_os_str().as_encoded_bytes()).as_bytes());
        Self {
            root: root.to_owned(),
            file: dir.join(name),
            loaded: OnceLock::new(),
        }
    }

    fn loaded(&self) -> &Loaded {
        self.loaded.get_or_init(|| {
            let (written_ns, records) = fs_err::read(&self.file)
                .ok()
                .and_then(|bytes| Self::decode(&self.root, &bytes))
                .unwrap_or_default();
            Loaded {
                written_ns,
                state: RwLock::new(State {
                    records,
                    changed: false,
                }),
            }
        })
    }

    fn decode(root: &Path, bytes: &[u8]) -> Option<(i128, Records)> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (stamp, mut rest) = rest.split_at_checked(16)?;
        let written_ns = i128::from_le_bytes(stamp.try_into().ok()?);
        let root = key(root);
        let mut records = Records::default();
        while !rest.is_empty() {
            let (rel, record, next) = Record::decode(rest)?;
            let mut path = Vec::with_capacity(root.len() + 1 + rel.len());
            path.extend_from_slice(root);
            path.push(b'/');
            path.extend_from_slice(rel);
            records.insert(path.into_boxed_slice(), record);
            rest = next;
        }
        Some((written_ns, records))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.loaded().state.read().unwrap().records.len()
    }

    /// The context root this cache covers.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The digest recorded for `path` if its identity still matches and is not racy.
    pub fn get(&self, path: &Path, identity: &StatIdentity) -> Option<Digest> {
        let loaded = self.loaded();
        let state = loaded.state.read().unwrap_or_else(|p| p.into_inner());
        let r = state.records.get(key(path))?;
        r.seen.store(true, Ordering::Relaxed);
        let racy = identity.mtime_ns.max(identity.ctime_ns) + RACY_NANOS > loaded.written_ns;
        (r.identity == *identity && !racy).then_some(r.digest)
    }

    /// Remember the digest of `path` read with `identity`.
    pub fn insert(&self, path: &Path, identity: StatIdentity, digest: Digest) {
        let mut state = self
            .loaded()
            .state
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let record = Record {
            identity,
            digest,
            seen: AtomicBool::new(true),
        };
        let same = state
            .records
            .get(key(path))
            .is_some_and(|r| r.identity == identity && r.digest == digest);
        if !same {
            state.records.insert(key(path).into(), record);
            state.changed = true;
        }
    }

    /// Whether records were added or changed since loading (or the loaded ones are racy and
    /// would be read again): then [`Self::save`] rewrites the file. A cache never used is
    /// never rewritten.
    pub fn needs_saving(&self) -> bool {
        let Some(loaded) = self.loaded.get() else {
            return false;
        };
        let state = loaded.state.read().unwrap_or_else(|p| p.into_inner());
        state.changed
            || state.records.values().any(|r| {
                r.identity.mtime_ns.max(r.identity.ctime_ns) + RACY_NANOS > loaded.written_ns
            })
    }

    /// Write the cache (atomically) if it changed. Records this build did not use are kept
    /// while their file exists.
    pub fn save(&self) -> std::io::Result<()> {
        if !self.needs_saving() {
            return Ok(());
        }
        let root = key(&self.root);
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&now_ns().to_le_bytes());
        let loaded = self.loaded();
        let state = loaded.state.read().unwrap_or_else(|p| p.into_inner());
        for (path, r) in &state.records {
            let Some(rel) = path
                .strip_prefix(root)
                .and_then(|rel| rel.strip_prefix(b"/"))
            else {
                continue;
            };
            let host = Path::new(std::ffi::OsStr::from_bytes(path));
            if !r.seen.load(Ordering::Relaxed) && fs_err::symlink_metadata(host).is_err() {
                continue;
            }
            r.encode(rel, &mut out);
        }
        drop(state);
        super::write_atomic(&self.file, &out)?;
        let mut state = loaded.state.write().unwrap_or_else(|p| p.into_inner());
        state.changed = false;
        Ok(())
    }

    fn summary_path(&self, selection: &Digest) -> PathBuf {
        let mut dir = self.file.clone().into_os_string();
        dir.push(".sel");
        PathBuf::from(dir).join(selection.hex())
    }

    /// The inputs digest recorded for the selection `selection` (a key of what it selects and
    /// how, see `solver::steps::copy::summary`) if it was recorded with this `fingerprint`.
    pub fn summary(&self, selection: &Digest, fingerprint: &Digest) -> Option<Digest> {
        let bytes = fs_err::read(self.summary_path(selection)).ok()?;
        let rest = bytes.strip_prefix(SUMMARY_MAGIC)?;
        let (seen, inputs) = rest.split_at_checked(32)?;
        let inputs: [u8; 32] = inputs.try_into().ok()?;
        (seen == fingerprint.as_bytes()).then(|| Digest::from_bytes(inputs))
    }

    /// Remember that `selection` has the inputs digest `inputs` while its fingerprint is
    /// `fingerprint`, which was taken from `started_ns` on and saw no change newer than
    /// `newest_ns`. Nothing is written when that change is less than a second older than the
    /// fingerprint (it could have been followed by another one that kept the same identity),
    /// or when the same summary is there already. Returns whether the summary is now there.
    pub fn record_summary(
        &self,
        selection: &Digest,
        fingerprint: &Digest,
        newest_ns: i128,
        started_ns: i128,
        inputs: &Digest,
    ) -> std::io::Result<bool> {
        if newest_ns + RACY_NANOS > started_ns {
            return Ok(false);
        }
        if self.summary(selection, fingerprint) == Some(*inputs) {
            return Ok(true);
        }
        let mut out = Vec::with_capacity(SUMMARY_MAGIC.len() + 64);
        out.extend_from_slice(SUMMARY_MAGIC);
        out.extend_from_slice(fingerprint.as_bytes());
        out.extend_from_slice(inputs.as_bytes());
        super::write_atomic(&self.summary_path(selection), &out)?;
        Ok(true)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Set a file's times far back (its ctime is now: wait a second before trusting it).
    pub(crate) fn date_back(p: &Path) {
        let old = rustix::fs::Timespec {
            tv_sec: 1_000_000,
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            p,
            &rustix::fs::Timestamps {
                last_access: old,
                last_modification: old,
            },
            rustix::fs::AtFlags::empty(),
        )
        .unwrap();
    }

    fn identity_of(p: &Path) -> StatIdentity {
        StatIdentity::of(&fs_err::symlink_metadata(p).unwrap())
    }

    /// A saved cache (store dir, context dir, canonical root, its file `a`, the cache) with
    /// one record.
    fn saved_cache_of_one_file() -> (
        tempfile::TempDir,
        tempfile::TempDir,
        std::path::PathBuf,
        std::path::PathBuf,
        StatCache,
    ) {
        let store = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(ctx.path()).unwrap();
        let f = root.join("a");
        fs_err::write(&f, b"a").unwrap();
        let cache = StatCache::load(store.path(), &root);
        cache.insert(&f, identity_of(&f), Digest::of(b"a"));
        cache.save().unwrap();
        (store, ctx, root, f, cache)
    }

    #[test]
    fn a_saved_record_is_trusted_once_it_is_not_racy() {
        let store = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(ctx.path()).unwrap();
        let f = root.join("a.txt");
        fs_err::write(&f, b"one").unwrap();
        date_back(&f);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let cache = StatCache::load(store.path(), &root);
        let id = identity_of(&f);
        let d = Digest::of(b"one");
        cache.insert(&f, id, d);
        cache.save().unwrap();
        let again = StatCache::load(store.path(), &root);
        assert_eq!(again.get(&f, &id), Some(d));
        assert!(!again.needs_saving());
        // Any change of identity is a miss.
        let mut other = id;
        other.size += 1;
        assert_eq!(again.get(&f, &other), None);
        let mut touched = id;
        touched.ctime_ns += 1;
        assert_eq!(again.get(&f, &touched), None);
    }

    #[test]
    fn a_record_made_just_before_saving_is_racy() {
        let store = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(ctx.path()).unwrap();
        let f = root.join("new.txt");
        fs_err::write(&f, b"fresh").unwrap();
        let cache = StatCache::load(store.path(), &root);
        let id = identity_of(&f);
        cache.insert(&f, id, Digest::of(b"fresh"));
        cache.save().unwrap();
        // Its ctime is within a second of the file's stamp: read again next time.
        let again = StatCache::load(store.path(), &root);
        assert_eq!(again.get(&f, &id), None);
    }

    #[test]
    fn records_of_removed_files_are_dropped_on_save() {
        let store = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(ctx.path()).unwrap();
        let (a, b) = (root.join("a"), root.join("b"));
        fs_err::write(&a, b"a").unwrap();
        fs_err::write(&b, b"b").unwrap();
        let cache = StatCache::load(store.path(), &root);
        cache.insert(&a, identity_of(&a), Digest::of(b"a"));
        cache.insert(&b, identity_of(&b), Digest::of(b"b"));
        cache.save().unwrap();
        assert_eq!(StatCache::load(store.path(), &root).len(), 2);
        // The next build uses `a` only, and `b` is gone: its record goes.
        fs_err::remove_file(&b).unwrap();
        let next = StatCache::load(store.path(), &root);
        let _ = next.get(&a, &identity_of(&a));
        next.insert(&a, identity_of(&a), Digest::of(b"a2"));
        next.save().unwrap();
        let again = StatCache::load(store.path(), &root);
        assert_eq!(again.len(), 1);
        let state = again.loaded().state.read().unwrap();
        assert_eq!(state.records[key(&a)].digest, Digest::of(b"a2"));
    }

    #[test]
    fn a_cache_that_is_not_used_is_neither_read_nor_written() {
        let (store, _ctx, root, f, cache) = saved_cache_of_one_file();
        let written = fs_err::metadata(&cache.file).unwrap().modified().unwrap();
        // Its records are racy: a cache that was used would be written again.
        let unused = StatCache::load(store.path(), &root);
        assert!(!unused.needs_saving());
        unused.save().unwrap();
        assert!(unused.loaded.get().is_none(), "the file was read");
        assert_eq!(
            fs_err::metadata(&cache.file).unwrap().modified().unwrap(),
            written
        );
        let used = StatCache::load(store.path(), &root);
        assert_eq!(used.get(&f, &identity_of(&f)), None);
        assert!(used.needs_saving());
    }

    #[test]
    fn a_summary_is_recorded_only_when_what_it_saw_is_a_second_old() {
        let store = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(ctx.path()).unwrap();
        let cache = StatCache::load(store.path(), &root);
        let (selection, fingerprint, inputs) =
            (Digest::of(b"sel"), Digest::of(b"fp"), Digest::of(b"in"));
        let now = now_ns();
        // A change 0.9 s before the fingerprint was taken: racy, not recorded.
        let racy = cache.record_summary(&selection, &fingerprint, now - 900_000_000, now, &inputs);
        assert!(!racy.unwrap());
        assert_eq!(cache.summary(&selection, &fingerprint), None);
        let settled =
            cache.record_summary(&selection, &fingerprint, now - RACY_NANOS, now, &inputs);
        assert!(settled.unwrap());
        assert_eq!(cache.summary(&selection, &fingerprint), Some(inputs));
        // Another fingerprint, or another selection, is not that summary.
        assert_eq!(cache.summary(&selection, &Digest::of(b"other")), None);
        assert_eq!(cache.summary(&Digest::of(b"other"), &fingerprint), None);
        // Summaries are per context root, and a broken file is no summary.
        let elsewhere = StatCache::load(store.path(), store.path());
        assert_eq!(elsewhere.summary(&selection, &fingerprint), None);
        let path = cache.summary_path(&selection);
        let mut bytes = fs_err::read(&path).unwrap();
        bytes.pop();
        fs_err::write(&path, &bytes).unwrap();
        assert_eq!(cache.summary(&selection, &fingerprint), None);
        // Recording the newer state replaces it.
        let later = Digest::of(b"fp2");
        cache
            .record_summary(
                &selection,
                &later,
                now - RACY_NANOS,
                now,
                &Digest::of(b"in2"),
            )
            .unwrap();
        assert_eq!(cache.summary(&selection, &later), Some(Digest::of(b"in2")));
        assert_eq!(cache.summary(&selection, &fingerprint), None);
    }

    #[test]
    fn a_malformed_file_is_an_empty_cache() {
        let (store, _ctx, root, _f, cache) = saved_cache_of_one_file();
        let mut bytes = fs_err::read(&cache.file).unwrap();
        bytes.pop();
        fs_err::write(&cache.file, &bytes).unwrap();
        assert_eq!(StatCache::load(store.path(), &root).len(), 0);
        fs_err::write(&cache.file, b"kiln-stat-v1 123\n").unwrap();
        assert_eq!(StatCache::load(store.path(), &root).len(), 0);
    }
}
