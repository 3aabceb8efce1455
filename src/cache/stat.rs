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
//! One file per context root under `<root>/cache/build/stat/`, replaced atomically when a build
//! learned something; records of files that are gone are dropped when it is rewritten.
//!
//! Not responsible for: what is hashed or how (see `content`).

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use snapshotter::Digest;

const HEADER: &str = "kiln-stat-v1";

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

#[derive(Debug, Clone, Copy)]
struct Record {
    identity: StatIdentity,
    digest: Digest,
}

/// The stat cache of one context root.
#[derive(Debug)]
pub struct StatCache {
    root: PathBuf,
    file: PathBuf,
    /// When the loaded file was written (ns since the epoch); 0 when there was none.
    written_ns: i128,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<PathBuf, Record>,
    /// Paths looked up or recorded by this build: the next file keeps only these and the
    /// loaded records of files that still exist.
    changed: bool,
}

impl StatCache {
    /// Load the stat cache of the context at `root` (absolute, canonical) from `dir`; a
    /// missing or unreadable file is an empty cache.
    pub fn load(dir: &Path, root: &Path) -> Self {
        let name = hex::encode(Digest::of(root.as_os_str().as_encoded_bytes()).as_bytes());
        let file = dir.join(name);
        let mut records = HashMap::new();
        let mut written_ns = 0;
        if let Ok(f) = fs_err::File::open(&file) {
            let mut lines = std::io::BufReader::new(f).lines();
            if let Some(Ok(header)) = lines.next()
                && let Some(stamp) = header.strip_prefix(HEADER).map(str::trim)
                && let Ok(stamp) = stamp.parse::<i128>()
            {
                written_ns = stamp;
                for line in lines.map_while(Result::ok) {
                    if let Some((path, record)) = parse_line(&line) {
                        records.insert(root.join(path), record);
                    }
                }
            }
        }
        Self {
            root: root.to_owned(),
            file,
            written_ns,
            state: Mutex::new(State {
                records,
                changed: false,
            }),
        }
    }

    /// The context root this cache covers.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The digest recorded for `path` if its identity still matches and is not racy.
    pub fn get(&self, path: &Path, identity: &StatIdentity) -> Option<Digest> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let r = state.records.get(path)?;
        let racy = identity.mtime_ns.max(identity.ctime_ns) + RACY_NANOS > self.written_ns;
        (r.identity == *identity && !racy).then_some(r.digest)
    }

    /// Remember the digest of `path` read with `identity`.
    pub fn insert(&self, path: &Path, identity: StatIdentity, digest: Digest) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let record = Record { identity, digest };
        let same = state
            .records
            .get(path)
            .is_some_and(|r| r.identity == identity && r.digest == digest);
        if !same {
            state.records.insert(path.to_owned(), record);
            state.changed = true;
        }
    }

    /// Whether records were added or changed since loading (or the loaded ones are racy and
    /// would be read again): then [`Self::save`] rewrites the file.
    pub fn needs_saving(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.changed
            || state.records.values().any(|r| {
                r.identity.mtime_ns.max(r.identity.ctime_ns) + RACY_NANOS > self.written_ns
            })
    }

    /// Write the cache (atomically) if it changed; records of paths that no longer exist are
    /// dropped.
    pub fn save(&self) -> std::io::Result<()> {
        if !self.needs_saving() {
            return Ok(());
        }
        let mut out = Vec::new();
        writeln!(out, "{HEADER} {}", now_ns())?;
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (path, r) in &state.records {
            let Ok(rel) = path.strip_prefix(&self.root) else {
                continue;
            };
            let Some(rel) = rel.to_str().filter(|r| !r.contains('\n')) else {
                continue;
            };
            if fs_err::symlink_metadata(path).is_err() {
                continue;
            }
            let i = &r.identity;
            writeln!(
                out,
                "{} {} {} {} {} {} {} {rel}",
                i.dev,
                i.ino,
                i.size,
                i.mode,
                i.mtime_ns,
                i.ctime_ns,
                r.digest.hex()
            )?;
        }
        drop(state);
        super::write_atomic(&self.file, &out)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.changed = false;
        Ok(())
    }
}

fn parse_line(line: &str) -> Option<(&str, Record)> {
    let mut parts = line.splitn(8, ' ');
    let mut next = || parts.next();
    let dev = next()?.parse().ok()?;
    let ino = next()?.parse().ok()?;
    let size = next()?.parse().ok()?;
    let mode = next()?.parse().ok()?;
    let mtime_ns = next()?.parse().ok()?;
    let ctime_ns = next()?.parse().ok()?;
    let digest = Digest::from_hex(next()?).ok()?;
    let path = next()?;
    Some((
        path,
        Record {
            identity: StatIdentity {
                dev,
                ino,
                size,
                mode,
                mtime_ns,
                ctime_ns,
            },
            digest,
        },
    ))
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
        fs_err::remove_file(&b).unwrap();
        cache.save().unwrap();
        let text = fs_err::read_to_string(&cache.file).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.lines().nth(1).unwrap().ends_with(" a"));
    }
}
