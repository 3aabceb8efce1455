//! The content hash of a step's inputs (DESIGN.md decision 4): exactly the entries a COPY or
//! ADD will write, each with the path, type and metadata it will have in the image (mode after
//! `--chmod`, owner after a numeric `--chown`), its link target or the SHA-256 of its bytes.
//! Host mtimes, owners of context files and inode numbers are not part of it, so a CI runner
//! and a laptop with the same sources compute the same hash.
//!
//! Files under a context root with a [`StatCache`] are recognised from their `lstat` identity
//! when unchanged; the others (and changed files) are read, several at once.
//!
//! Not responsible for: choosing the entries (the copy planner in `solver::steps::copy` does).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use snapshotter::Digest;

use super::stat::{StatCache, StatIdentity};

/// What an input entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    Dir,
    /// A regular file, read from `host`.
    File {
        host: PathBuf,
    },
    Symlink {
        target: String,
    },
    /// ADD: an archive extracted at the entry's path; its bytes are read from `host`.
    Archive {
        host: PathBuf,
    },
}

/// One entry a step writes, as it will be in the image.
#[derive(Debug, Clone)]
pub struct InputEntry {
    /// Where it goes, relative to the copy's destination.
    pub path: String,
    pub kind: InputKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// The entry's `lstat` identity when the planner already has it (saves a syscall per
    /// file).
    pub identity: Option<StatIdentity>,
}

/// The hash of a step's inputs, and one line per entry (kept to explain a miss).
#[derive(Debug, Clone)]
pub struct InputsDigest {
    pub digest: Digest,
    /// The entries, one line each (`path\tkind\tmode\tuid\tgid\tcontent`).
    pub listing: String,
    /// Files read (not found in a stat cache), for tests and `--debug-cache`.
    pub files_read: usize,
}

/// Hash `entries`; `stat_caches` are the contexts whose files may be recognised by identity.
pub fn digest_inputs(
    entries: &[InputEntry],
    stat_caches: &[Arc<StatCache>],
) -> std::io::Result<InputsDigest> {
    // Unchanged files first, from the stat caches (looked up from several threads under a
    // shared lock); then the rest is read, several files at once.
    let cache_of = |host: &Path| stat_caches.iter().find(|c| host.starts_with(c.root()));
    let mut contents: Vec<(Option<Digest>, bool)> = entries
        .par_iter()
        .map(|e| match &e.kind {
            InputKind::File { host } | InputKind::Archive { host } => {
                let known = cache_of(host).and_then(|c| {
                    let identity = match e.identity {
                        Some(i) => i,
                        None => StatIdentity::of(&fs_err::metadata(host).ok()?),
                    };
                    c.get(host, &identity)
                });
                (known, false)
            }
            InputKind::Dir | InputKind::Symlink { .. } => (None, false),
        })
        .collect();
    let to_read: Vec<usize> = entries
        .iter()
        .zip(&contents)
        .enumerate()
        .filter(|(_, (e, (known, _)))| {
            known.is_none() && matches!(e.kind, InputKind::File { .. } | InputKind::Archive { .. })
        })
        .map(|(i, _)| i)
        .collect();
    let read: Vec<(usize, Digest)> = to_read
        .par_iter()
        .map(|&i| {
            let e = &entries[i];
            let (InputKind::File { host } | InputKind::Archive { host }) = &e.kind else {
                unreachable!("only files and archives are read");
            };
            file_digest(host, e.identity, cache_of(host).map(|c| &**c)).map(|(d, _)| (i, d))
        })
        .collect::<std::io::Result<_>>()?;
    for (i, d) in read {
        contents[i] = (Some(d), true);
    }
    // Paths are written escaped (no raw tab or newline), fields are tab-separated and entries
    // end in a newline, so no two inputs share a preimage. The digest is the listing's.
    let mut listing = String::with_capacity(entries.len() * 112);
    let mut files_read = 0;
    for (e, (content, read)) in entries.iter().zip(contents) {
        use std::fmt::Write as _;
        files_read += usize::from(read);
        let kind = match &e.kind {
            InputKind::Dir => "dir",
            InputKind::Symlink { .. } => "symlink",
            InputKind::File { .. } => "file",
            InputKind::Archive { .. } => "archive",
        };
        // `escape_default` leaves printable ASCII other than `\\`, `'` and `"` as it is.
        if e.path
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && !b"\\'\"".contains(&b))
        {
            listing.push_str(&e.path);
        } else {
            let _ = write!(listing, "{}", e.path.escape_default());
        }
        let _ = write!(listing, "\t{kind}\t{:o}\t{}\t{}\t", e.mode, e.uid, e.gid);
        match (&e.kind, content) {
            (InputKind::Dir, _) => {}
            (InputKind::Symlink { target }, _) => listing.push_str(target),
            (InputKind::File { .. } | InputKind::Archive { .. }, Some(d)) => {
                let _ = write!(listing, "{d}");
            }
            (_, None) => unreachable!("files and archives have a digest"),
        }
        listing.push('\n');
    }
    Ok(InputsDigest {
        digest: Digest::from_bytes(Sha256::digest(listing.as_bytes()).into()),
        listing,
        files_read,
    })
}

/// A file's SHA-256, from the stat cache when its identity is unchanged; `true` when it was
/// read.
fn file_digest(
    host: &Path,
    identity: Option<StatIdentity>,
    cache: Option<&StatCache>,
) -> std::io::Result<(Digest, bool)> {
    let Some(cache) = cache else {
        return Ok((read_digest(host)?, true));
    };
    let identity = match identity {
        Some(i) => i,
        None => StatIdentity::of(&fs_err::metadata(host)?),
    };
    if let Some(d) = cache.get(host, &identity) {
        return Ok((d, false));
    }
    let d = read_digest(host)?;
    // Recorded only if the file did not change while it was read.
    if fs_err::metadata(host).is_ok_and(|after| StatIdentity::of(&after) == identity) {
        cache.insert(host, identity, d);
    }
    Ok((d, true))
}

fn read_digest(host: &Path) -> std::io::Result<Digest> {
    let mut f = fs_err::File::open(host)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Digest::from_bytes(h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, host: &Path, mode: u32) -> InputEntry {
        InputEntry {
            path: path.to_owned(),
            kind: InputKind::File {
                host: host.to_owned(),
            },
            mode,
            uid: 0,
            gid: 0,
            identity: None,
        }
    }

    #[test]
    fn the_hash_covers_content_mode_owner_and_path_but_not_mtime() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs_err::write(&a, b"hello").unwrap();
        let base = digest_inputs(&[file("a", &a, 0o644)], &[]).unwrap();
        let same = digest_inputs(&[file("a", &a, 0o644)], &[]).unwrap();
        assert_eq!(base.digest, same.digest);
        // mtime does not matter
        crate::cache::stat::tests::date_back(&a);
        assert_eq!(
            digest_inputs(&[file("a", &a, 0o644)], &[]).unwrap().digest,
            base.digest
        );
        assert_ne!(
            digest_inputs(&[file("a", &a, 0o755)], &[]).unwrap().digest,
            base.digest
        );
        assert_ne!(
            digest_inputs(&[file("b", &a, 0o644)], &[]).unwrap().digest,
            base.digest
        );
        let mut owned = file("a", &a, 0o644);
        owned.uid = 1000;
        assert_ne!(digest_inputs(&[owned], &[]).unwrap().digest, base.digest);
        fs_err::write(&a, b"hellO").unwrap();
        assert_ne!(
            digest_inputs(&[file("a", &a, 0o644)], &[]).unwrap().digest,
            base.digest
        );
    }

    /// The listing (and so the key) is pinned: paths escaped as `str::escape_default` does,
    /// fields tab-separated, digests as `sha256:<hex>`.
    #[test]
    fn the_listing_format_is_stable() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs_err::write(&a, b"hello").unwrap();
        let paths = [
            "plain/p.txt",
            "tab\there",
            "quote's \"q\"",
            "back\\slash",
            "é",
            "del\u{7f}",
        ];
        let entries: Vec<InputEntry> = paths.iter().map(|p| file(p, &a, 0o644)).collect();
        let got = digest_inputs(&entries, &[]).unwrap();
        let hello = Digest::of(b"hello");
        let expected: String = paths
            .iter()
            .map(|p| format!("{}\tfile\t644\t0\t0\t{hello}\n", p.escape_default()))
            .collect();
        assert_eq!(got.listing, expected);
        assert!(
            got.listing.contains(
                "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
            )
        );
        assert_eq!(got.digest, Digest::of(expected.as_bytes()));
    }

    #[test]
    fn a_stat_cache_spares_reading_unchanged_files() {
        let store = tempfile::tempdir().unwrap();
        let ctx = tempfile::tempdir().unwrap();
        let root = fs_err::canonicalize(ctx.path()).unwrap();
        let a = root.join("a");
        fs_err::write(&a, b"data").unwrap();
        crate::cache::stat::tests::date_back(&a);
        // The ctime just changed: wait until it is not racy against the save.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let cache = Arc::new(StatCache::load(store.path(), &root));
        let first = digest_inputs(&[file("a", &a, 0o644)], std::slice::from_ref(&cache)).unwrap();
        assert_eq!(first.files_read, 1);
        cache.save().unwrap();
        let cache = Arc::new(StatCache::load(store.path(), &root));
        let second = digest_inputs(&[file("a", &a, 0o644)], &[cache]).unwrap();
        assert_eq!(second.files_read, 0);
        assert_eq!(first.digest, second.digest);
    }
}
