//! What a COPY wrote, per layer: for each regular file, its path in the layer, the `lstat`
//! identity of the source file it was read from, and the metadata it got. A later run of the
//! same COPY on the same parent (some inputs changed) links the files whose source is provably
//! unchanged from that earlier result instead of writing them again (`solver::seed`).
//!
//! Kept at `<root>/cache/build/copies/<DiffID hex>`; best effort like every cache file.
//!
//! Not responsible for: deciding what may be linked (the copy planner) or linking.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use snapshotter::Digest;

use super::stat::StatIdentity;

const HEADER: &str = "kiln-copies-v1";

/// One regular file a COPY wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopiedFile {
    /// The source file's identity when the copy planned it (read right after).
    pub source: StatIdentity,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// The mtime written (seconds).
    pub mtime: u64,
}

/// The files of one COPY layer, by path in the layer.
#[derive(Debug, Clone, Default)]
pub struct CopyManifest {
    /// When the copy started (ns since the epoch): sources changed less than a second before
    /// may have changed again unseen within their timestamps' granularity.
    pub started_ns: i128,
    pub files: HashMap<String, CopiedFile>,
}

impl CopyManifest {
    /// Whether `path` may be taken from this layer: its source still has the identity it had
    /// then, not changed within a second of the copy, and it gets the same metadata.
    pub fn unchanged(&self, path: &str, now: &CopiedFile) -> bool {
        let Some(then) = self.files.get(path) else {
            return false;
        };
        let settled =
            then.source.mtime_ns.max(then.source.ctime_ns) + 1_000_000_000 <= self.started_ns;
        settled && then == now
    }
}

impl super::BuildCache {
    /// Remember what the COPY that made the layer `diff_id` wrote.
    pub fn record_copy(&self, diff_id: &Digest, manifest: &CopyManifest) {
        let mut out = Vec::with_capacity(manifest.files.len() * 96);
        let _ = writeln!(out, "{HEADER} {}", manifest.started_ns);
        for (path, f) in &manifest.files {
            if path.contains('\n') {
                continue;
            }
            let s = &f.source;
            let _ = writeln!(
                out,
                "{} {} {} {} {} {} {} {} {} {} {path}",
                s.dev, s.ino, s.size, s.mode, s.mtime_ns, s.ctime_ns, f.mode, f.uid, f.gid, f.mtime
            );
        }
        let _ = super::write_atomic(&self.copies_path(diff_id), &out);
    }

    /// What the COPY that made `diff_id` wrote, if it was recorded.
    pub fn copy_manifest(&self, diff_id: &Digest) -> Option<CopyManifest> {
        let f = fs_err::File::open(self.copies_path(diff_id)).ok()?;
        let mut lines = std::io::BufReader::new(f).lines();
        let header = lines.next()?.ok()?;
        let started_ns = header.strip_prefix(HEADER)?.trim().parse().ok()?;
        let mut files = HashMap::new();
        for line in lines.map_while(Result::ok) {
            let mut p = line.splitn(11, ' ');
            let mut n = || p.next();
            let source = StatIdentity {
                dev: n()?.parse().ok()?,
                ino: n()?.parse().ok()?,
                size: n()?.parse().ok()?,
                mode: n()?.parse().ok()?,
                mtime_ns: n()?.parse().ok()?,
                ctime_ns: n()?.parse().ok()?,
            };
            let file = CopiedFile {
                source,
                mode: n()?.parse().ok()?,
                uid: n()?.parse().ok()?,
                gid: n()?.parse().ok()?,
                mtime: n()?.parse().ok()?,
            };
            files.insert(n()?.to_owned(), file);
        }
        Some(CopyManifest { started_ns, files })
    }

    fn copies_path(&self, diff_id: &Digest) -> std::path::PathBuf {
        self.dir.join("copies").join(diff_id.hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{BuildCache, CacheSettings};

    #[test]
    fn a_manifest_round_trips_and_trusts_only_settled_unchanged_sources() {
        let d = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(d.path()).unwrap();
        let cache = BuildCache::new(
            &store,
            CacheSettings::default(),
            std::path::Path::new("/ctx"),
            "Dockerfile",
        );
        let file = |ctime_ns: i128| CopiedFile {
            source: StatIdentity {
                dev: 1,
                ino: 2,
                size: 3,
                mode: 0o100644,
                mtime_ns: 5,
                ctime_ns,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 5,
        };
        let mut m = CopyManifest {
            started_ns: 10_000_000_000,
            files: HashMap::new(),
        };
        m.files.insert("app/old.txt".into(), file(1));
        m.files
            .insert("app/racy name.txt".into(), file(9_500_000_000));
        let diff_id = Digest::of(b"layer");
        cache.record_copy(&diff_id, &m);
        let back = cache.copy_manifest(&diff_id).unwrap();
        assert_eq!(back.files, m.files);
        assert!(back.unchanged("app/old.txt", &file(1)));
        assert!(!back.unchanged("app/old.txt", &file(2)), "a new ctime");
        assert!(!back.unchanged("app/racy name.txt", &file(9_500_000_000)));
        assert!(!back.unchanged("app/missing.txt", &file(1)));
        let mut chmodded = file(1);
        chmodded.mode = 0o600;
        assert!(!back.unchanged("app/old.txt", &chmodded));
    }
}
