//! The build cache (DESIGN.md decision 4), persisted in the store under `<root>/cache/build/`:
//!
//! ```text
//! keys/<key hex>.json     one record per step result: the key's preimage and the outcome (the
//!                         layer's blob digest, DiffID and sizes, or "no layer"); its mtime is
//!                         when a build last used it (least recently used goes first in prune)
//! steps/<id hex>          the key the step at one place in a Dockerfile had last (explains a
//!                         miss: which preimage fields changed)
//! sources/<digest hex>    the entry lines of a step's inputs hash (explains which files changed)
//! stat/<root hex>         the stat cache of a context (`stat`)
//! copies/<DiffID hex>     what a COPY layer's files were copied from (`copies`)
//! created/<image hex>     the date an image (without dates) was first made
//! ```
//!
//! A step computes its key from the preimage ([`key::Preimage`]: version, op, parent ChainID,
//! the op's definition, the content hash of its inputs from [`content`]), then
//! [`BuildCache::lookup`] gives the recorded outcome if its layer blob is still in the store; a
//! hit reuses that blob (and the snapshot of its ChainID, when there is one) without running
//! anything. A miss runs the step and [`BuildCache::record`]s the outcome. Keys chain through
//! the parent's ChainID, i.e. through content: the same layers reached by two paths share the
//! steps above them, and so do two machines with the same sources and bases.
//!
//! Every record is written atomically; anything unreadable is a miss. Nothing here deletes blobs
//! except [`prune`], which holds the store's content lock exclusively (builds hold it shared).
//!
//! Not responsible for: deciding what a step's key covers (each step in `solver::steps`),
//! running steps, the progress display.

pub mod content;
pub mod copies;
pub mod key;
pub mod prune;
pub mod share;
pub mod stat;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use snapshotter::layer::LayerInfo;
use snapshotter::{BlobDigest, DiffId, Digest};

use crate::store::Store;
pub use content::{InputEntry, InputKind, InputsDigest};
pub use key::{CacheKey, Preimage};
use stat::StatCache;

/// How a build uses the cache (`--no-cache`, `--no-cache-filter`, `--debug-cache`).
#[derive(Debug, Clone, Default)]
pub struct CacheSettings {
    /// `--no-cache`: look nothing up (results are still recorded for the next build).
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (names, lowercase, or indexes) whose steps are not looked up.
    pub no_cache_stages: BTreeSet<String>,
    /// `--debug-cache`: explain every miss.
    pub explain: bool,
    /// `--cache-from`: records of exported caches, looked up after a local miss.
    pub imported: Option<Arc<share::ImportedCache>>,
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No layer (nothing changed).
    Unchanged,
    Layer {
        digest: Digest,
        diff_id: Digest,
        size: u64,
        uncompressed_size: u64,
    },
}

impl Outcome {
    pub fn of_layer(info: &LayerInfo) -> Self {
        Self::Layer {
            digest: info.digest.0,
            diff_id: info.diff_id.0,
            size: info.size,
            uncompressed_size: info.uncompressed_size,
        }
    }

    /// The layer, for the stage state.
    pub fn layer(&self) -> Option<LayerInfo> {
        match self {
            Outcome::Unchanged => None,
            Outcome::Layer {
                digest,
                diff_id,
                size,
                uncompressed_size,
            } => Some(LayerInfo {
                diff_id: DiffId(*diff_id),
                digest: BlobDigest(*digest),
                size: *size,
                uncompressed_size: *uncompressed_size,
            }),
        }
    }

    /// The blob this outcome needs.
    pub fn blob(&self) -> Option<Digest> {
        match self {
            Outcome::Unchanged => None,
            Outcome::Layer { digest, .. } => Some(*digest),
        }
    }
}

/// One cache record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub preimage: Preimage,
    pub outcome: Outcome,
}

/// Why a step was not found in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// `--no-cache` or `--no-cache-filter`.
    Disabled,
    /// No record was made at this place in the Dockerfile before.
    New,
    /// The key's preimage differs from the last record at this place in these fields (with
    /// details: the files that changed when the inputs did).
    Changed(Vec<String>),
    /// The same key was recorded, but its layer blob is no longer in the store.
    BlobGone(Digest),
    /// A `--cache-from` cache has the key, but its layer could not be fetched.
    ImportFailed(String),
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Disabled => f.write_str("the cache is disabled for this step"),
            Miss::New => f.write_str("no earlier build of this step is recorded"),
            Miss::Changed(why) => write!(f, "changed: {}", why.join("; ")),
            Miss::BlobGone(d) => write!(f, "the recorded layer {d} was removed from the store"),
            Miss::ImportFailed(why) => write!(f, "the imported cache could not be used: {why}"),
        }
    }
}

/// The store's build cache, as one build uses it.
#[derive(Debug)]
pub struct BuildCache {
    dir: PathBuf,
    settings: CacheSettings,
    /// Identifies the build's Dockerfile and context for [`Self::step_id`].
    build_id: String,
    stat_caches: Mutex<Vec<Arc<StatCache>>>,
    /// The records this build hit or made, for `--cache-to`.
    used: Mutex<Used>,
}

/// Records in the order first used, each once.
#[derive(Debug, Default)]
struct Used {
    keys: std::collections::HashSet<CacheKey>,
    records: Vec<Record>,
}

impl BuildCache {
    /// The cache of `store` for a build of `dockerfile_name` in `context`.
    pub fn new(
        store: &Store,
        settings: CacheSettings,
        context: &Path,
        dockerfile_name: &str,
    ) -> Self {
        Self {
            dir: store.build_cache_dir(),
            settings,
            build_id: format!("{}\n{dockerfile_name}", context.display()),
            stat_caches: Mutex::new(Vec::new()),
            used: Mutex::new(Used::default()),
        }
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Whether steps of the stage named `name` (or numbered `index`) may be looked up.
    pub fn lookups_enabled(&self, name: Option<&str>, index: usize) -> bool {
        !self.settings.no_cache
            && !name.is_some_and(|n| {
                self.settings
                    .no_cache_stages
                    .contains(&n.to_ascii_lowercase())
            })
            && !self.settings.no_cache_stages.contains(&index.to_string())
    }

    /// Use (and keep up to date) the stat cache of the local context at `root`.
    pub fn register_context(&self, root: &Path) {
        let mut caches = self.stat_caches.lock().unwrap_or_else(|p| p.into_inner());
        if caches.iter().any(|c| c.root() == root) {
            return;
        }
        caches.push(Arc::new(StatCache::load(&self.dir.join("stat"), root)));
    }

    /// The stat cache of the registered context at `root`.
    pub fn stat_cache(&self, root: &Path) -> Option<Arc<StatCache>> {
        let caches = self.stat_caches.lock().unwrap_or_else(|p| p.into_inner());
        caches.iter().find(|c| c.root() == root).cloned()
    }

    /// Hash a step's inputs (files of registered contexts through their stat caches), and keep
    /// the entry lines to explain a later miss.
    pub fn digest_inputs(&self, entries: &[InputEntry]) -> std::io::Result<InputsDigest> {
        let caches = self
            .stat_caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let d = content::digest_inputs(entries, &caches)?;
        let listing = self.sources_path(&d.digest);
        if !listing.exists() {
            // Best effort: a missing listing only makes explanations coarser.
            let _ = write_atomic(&listing, d.listing.as_bytes());
        }
        Ok(d)
    }

    /// Save the stat caches that learned something (best effort: an unsaved stat cache only
    /// means reading the files again next time).
    pub fn save_stat_caches(&self) {
        for c in self
            .stat_caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = c.save();
        }
    }

    /// The date to give an image whose content (without dates) has digest `identity`: the one
    /// it got when it was first made, else `now` (remembered for next time).
    pub fn stable_created(&self, identity: &Digest, now: &str) -> String {
        let path = self.dir.join("created").join(identity.hex());
        if let Ok(text) = fs_err::read_to_string(&path)
            && !text.trim().is_empty()
        {
            touch(&path);
            return text.trim().to_owned();
        }
        let _ = write_atomic(&path, now.as_bytes());
        now.to_owned()
    }

    /// The identity of the step at a place in this build (stage label and step index), for
    /// explanations.
    pub fn step_id(&self, stage: &str, index: usize) -> String {
        let text = format!("{}\n{stage}\n{index}", self.build_id);
        Digest::of(text.as_bytes()).hex()
    }

    /// The recorded outcome of `key`, if its blob is still in the store; else the record of a
    /// `--cache-from` cache, its layer fetched into the store (and the record kept locally).
    /// Marks the record used.
    pub fn lookup(&self, key: &CacheKey, store: &Store) -> Result<Record, Miss> {
        let path = self.key_path(key);
        let miss = match read_record(&path) {
            Some(record) => match record.outcome.blob() {
                Some(blob) if !store.content().contains(&blob) => Miss::BlobGone(blob),
                _ => {
                    touch(&path);
                    self.note_used(key, &record);
                    return Ok(record);
                }
            },
            None => Miss::New,
        };
        let Some(imported) = &self.settings.imported else {
            return Err(miss);
        };
        match imported.fetch(key, store) {
            None => Err(miss),
            Some(Err(why)) => Err(Miss::ImportFailed(why)),
            Some(Ok(record)) => {
                if let Ok(json) = serde_json::to_vec(&record) {
                    let _ = write_atomic(&path, &json);
                }
                self.note_used(key, &record);
                Ok(record)
            }
        }
    }

    fn note_used(&self, key: &CacheKey, record: &Record) {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.keys.insert(*key) {
            used.records.push(record.clone());
        }
    }

    /// The records this build hit or made, each once, in the order first used.
    pub fn used(&self) -> Vec<Record> {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .records
            .clone()
    }

    /// Record a step's outcome under its key, and remember the key for the step's place.
    pub fn record(&self, step_id: &str, preimage: &Preimage, outcome: Outcome) {
        let key = preimage.key();
        let record = Record {
            preimage: preimage.clone(),
            outcome,
        };
        if let Ok(json) = serde_json::to_vec(&record) {
            let _ = write_atomic(&self.key_path(&key), &json);
        }
        self.note_used(&key, &record);
        let _ = write_atomic(&self.steps_path(step_id), key.0.hex().as_bytes());
    }

    /// The last record made at the place `step_id` (the step's previous result).
    pub fn previous_record(&self, step_id: &str) -> Option<Record> {
        let hex = fs_err::read_to_string(self.steps_path(step_id)).ok()?;
        let d = Digest::from_hex(hex.trim()).ok()?;
        read_record(&self.key_path(&CacheKey(d)))
    }

    /// Why `preimage` missed: compared with the last record at the same place.
    pub fn explain(&self, step_id: &str, preimage: &Preimage) -> Miss {
        let Some(before) = self.previous_record(step_id) else {
            return Miss::New;
        };
        let fields = preimage.changed_fields(&before.preimage);
        if fields.is_empty() {
            // Same key: the record exists but could not be used.
            return match before.outcome.blob() {
                Some(b) => Miss::BlobGone(b),
                None => Miss::New,
            };
        }
        let details = fields
            .iter()
            .map(|f| self.describe_change(f, preimage, &before.preimage))
            .collect();
        Miss::Changed(details)
    }

    fn describe_change(&self, field: &str, now: &Preimage, before: &Preimage) -> String {
        let text = |v: Option<&serde_json::Value>| match v {
            None => "(none)".to_owned(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        let (a, b) = (before.get(field), now.get(field));
        if field == "inputs"
            && let (Some(serde_json::Value::String(a)), Some(serde_json::Value::String(b))) = (a, b)
            && let (Ok(a), Ok(b)) = (a.parse::<Digest>(), b.parse::<Digest>())
            && let Some(files) = self.changed_files(&a, &b)
        {
            return format!("inputs: {files}");
        }
        let short = |s: String| {
            if s.chars().count() > 120 {
                format!("{}…", s.chars().take(120).collect::<String>())
            } else {
                s
            }
        };
        format!("{field}: {} → {}", short(text(a)), short(text(b)))
    }

    /// Which entries differ between two inputs listings (up to 10 named).
    fn changed_files(&self, before: &Digest, now: &Digest) -> Option<String> {
        let load = |d: &Digest| -> Option<std::collections::BTreeMap<String, String>> {
            let text = fs_err::read_to_string(self.sources_path(d)).ok()?;
            Some(
                text.lines()
                    .map(|l| match l.split_once('\t') {
                        Some((p, rest)) => (p.to_owned(), rest.to_owned()),
                        None => (l.to_owned(), String::new()),
                    })
                    .collect(),
            )
        };
        let (a, b) = (load(before)?, load(now)?);
        let mut changes = Vec::new();
        for (path, what) in &b {
            match a.get(path) {
                None => changes.push(format!("{path} added")),
                Some(old) if old != what => changes.push(format!("{path} changed")),
                Some(_) => {}
            }
        }
        for path in a.keys().filter(|p| !b.contains_key(*p)) {
            changes.push(format!("{path} removed"));
        }
        let n = changes.len();
        let mut text = changes.into_iter().take(10).collect::<Vec<_>>().join(", ");
        if n > 10 {
            text.push_str(&format!(" and {} more", n - 10));
        }
        Some(text)
    }

    fn key_path(&self, key: &CacheKey) -> PathBuf {
        key_path(&self.dir, key)
    }

    fn steps_path(&self, step_id: &str) -> PathBuf {
        self.dir.join("steps").join(step_id)
    }

    fn sources_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("sources").join(d.hex())
    }
}

fn key_path(dir: &Path, key: &CacheKey) -> PathBuf {
    dir.join("keys").join(format!("{}.json", key.0.hex()))
}

fn read_record(path: &Path) -> Option<Record> {
    let bytes = fs_err::read(path).ok()?;
    let record: Record = serde_json::from_slice(&bytes).ok()?;
    (record.preimage.version == key::KEY_VERSION).then_some(record)
}

/// Mark a record used now (its mtime orders prune's least-recently-used removal).
fn touch(path: &Path) {
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
        },
        rustix::fs::AtFlags::empty(),
    );
}

/// Write a small file of the store's metadata (cache records, layer indexes) atomically:
/// temp file in the same directory, then rename; the directory is created if missing.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a file inside a directory");
    fs_err::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        (d, s)
    }

    fn cache_of(store: &Store, settings: CacheSettings) -> BuildCache {
        BuildCache::new(store, settings, Path::new("/ctx"), "Dockerfile")
    }

    #[test]
    fn a_recorded_layer_is_a_hit_while_its_blob_exists() {
        let (_d, store) = store();
        let cache = cache_of(&store, CacheSettings::default());
        let blob = store.content().put(b"layer bytes").unwrap();
        let mut p = Preimage::new("run", None);
        p.field("argv", ["true"]);
        let outcome = Outcome::Layer {
            digest: blob.digest,
            diff_id: Digest::of(b"tar"),
            size: 11,
            uncompressed_size: 3,
        };
        let step = cache.step_id("", 2);
        assert_eq!(cache.lookup(&p.key(), &store).unwrap_err(), Miss::New);
        cache.record(&step, &p, outcome.clone());
        assert_eq!(cache.lookup(&p.key(), &store).unwrap().outcome, outcome);
        store.content().delete(&blob.digest).unwrap();
        assert_eq!(
            cache.lookup(&p.key(), &store).unwrap_err(),
            Miss::BlobGone(blob.digest)
        );
    }

    #[test]
    fn a_miss_is_explained_by_the_fields_that_changed() {
        let (_d, store) = store();
        let cache = cache_of(&store, CacheSettings::default());
        let step = cache.step_id("builder", 3);
        let before = [("a.txt", "one"), ("b.txt", "two")];
        let entries = |files: &[(&str, &str)], dir: &Path| -> Vec<InputEntry> {
            files
                .iter()
                .map(|(name, data)| {
                    let host = dir.join(name);
                    fs_err::write(&host, data).unwrap();
                    InputEntry {
                        path: (*name).to_owned(),
                        kind: InputKind::File { host },
                        mode: 0o644,
                        uid: 0,
                        gid: 0,
                        identity: None,
                    }
                })
                .collect()
        };
        let dir = tempfile::tempdir().unwrap();
        let d1 = cache.digest_inputs(&entries(&before, dir.path())).unwrap();
        let mut p1 = Preimage::new("copy", None);
        p1.field("dest", "/app")
            .field("inputs", d1.digest.to_string());
        cache.record(&step, &p1, Outcome::Unchanged);
        assert_eq!(cache.explain(&cache.step_id("builder", 4), &p1), Miss::New);

        let dir2 = tempfile::tempdir().unwrap();
        let d2 = cache
            .digest_inputs(&entries(&[("a.txt", "ONE"), ("c.txt", "new")], dir2.path()))
            .unwrap();
        let mut p2 = p1.clone();
        p2.field("inputs", d2.digest.to_string());
        let Miss::Changed(why) = cache.explain(&step, &p2) else {
            panic!("expected a change");
        };
        assert_eq!(why, ["inputs: a.txt changed, c.txt added, b.txt removed"]);

        let mut p3 = p1.clone();
        p3.field("dest", "/srv");
        assert_eq!(
            cache.explain(&step, &p3),
            Miss::Changed(vec!["dest: /app → /srv".to_owned()])
        );
    }

    #[test]
    fn lookups_follow_no_cache_and_the_stage_filter() {
        let (_d, store) = store();
        let settings = CacheSettings {
            no_cache_stages: ["builder".to_owned(), "2".to_owned()].into(),
            ..Default::default()
        };
        let cache = cache_of(&store, settings);
        assert!(!cache.lookups_enabled(Some("Builder"), 0));
        assert!(!cache.lookups_enabled(None, 2));
        assert!(cache.lookups_enabled(Some("final"), 1));
        let all = BuildCache::new(
            &store,
            CacheSettings {
                no_cache: true,
                ..Default::default()
            },
            Path::new("/ctx"),
            "Dockerfile",
        );
        assert!(!all.lookups_enabled(Some("final"), 1));
    }
}
