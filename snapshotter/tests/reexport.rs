//! Incremental re-export from files on disk (issue [C] item 5, and the re-export benchmark
//! target): with a previous blob, files given with their identity are not read while their
//! members are unchanged, the DiffID and blob digest resume from saved states, and the output is
//! byte-identical to an export from scratch, whatever changed and wherever.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use snapshotter::compress::{
    EncodeOptions, EncodedLayer, MemberIndex, PreviousBlob, RACY_MARGIN, SPLIT,
};
use snapshotter::layer::{
    Compression, Entry, EntryKind, FileIdentity, FileSource, LayerPath, LayerWriter,
};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &["layer", "member", "kiln", "tar", "blob", "digest", "reuse"];
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(WORDS[(rng.next() % WORDS.len() as u64) as usize].as_bytes());
        out.push(if rng.next().is_multiple_of(9) {
            b'\n'
        } else {
            b' '
        });
    }
    out.truncate(len);
    out
}

/// A tree on disk: `a-large/big.bin` (a large file, first in the tar), then 600 small files
/// in `d0`..`d5`, and a symlink. Returns the root.
fn make_tree(root: &Path) {
    let mut rng = Rng(7);
    fs_err::create_dir_all(root.join("a-large")).unwrap();
    let big: Vec<u8> = (0..2 * SPLIT + 12_345)
        .map(|i| (rng.next() >> (i % 56)) as u8)
        .collect();
    fs_err::write(root.join("a-large/big.bin"), big).unwrap();
    for d in 0..6 {
        let dir = root.join(format!("d{d}"));
        fs_err::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let len = 1000 + (rng.next() % 12_000) as usize;
            fs_err::write(dir.join(format!("f{f:03}.txt")), text(&mut rng, len)).unwrap();
        }
    }
    std::os::unix::fs::symlink("d0/f000.txt", root.join("link")).unwrap();
}

/// Wait until every file of the tree is older than the racy margin.
fn settle() {
    std::thread::sleep(RACY_MARGIN + Duration::from_millis(200));
}

/// Export `root` (sorted walk), files through `append_file` with their identity.
fn export(
    root: &Path,
    compression: Compression,
    options: EncodeOptions,
) -> (Vec<u8>, EncodedLayer) {
    let mut w = LayerWriter::with_options(Vec::new(), compression, options);
    walk(root, None, &mut w);
    w.finish_encoded().unwrap()
}

fn walk(root: &Path, rel: Option<&LayerPath>, w: &mut LayerWriter<Vec<u8>>) {
    let dir = rel.map_or(root.to_owned(), |r| root.join(r.as_str()));
    let mut names: Vec<String> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        let path = match rel {
            Some(r) => r.join(&name).unwrap(),
            None => LayerPath::new(&name).unwrap(),
        };
        let host = dir.join(&name);
        let meta = fs_err::symlink_metadata(&host).unwrap();
        let mut entry = Entry {
            path: path.clone(),
            kind: EntryKind::Directory,
            mode: meta.mode() & 0o7777,
            uid: 0,
            gid: 0,
            mtime: meta.mtime().max(0) as u64,
        };
        if meta.is_dir() {
            w.append(&entry, None).unwrap();
            walk(root, Some(&path), w);
        } else if meta.is_file() {
            entry.kind = EntryKind::File { size: meta.len() };
            let source = FileSource {
                path: host,
                identity: FileIdentity::of(&meta),
            };
            w.append_file(&entry, &[], source).unwrap();
        } else {
            entry.kind = EntryKind::Symlink {
                target: fs_err::read_link(&host)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            };
            w.append(&entry, None).unwrap();
        }
    }
}

struct Previous {
    file: tempfile::NamedTempFile,
    index: MemberIndex,
}

impl Previous {
    fn save(blob: &[u8], layer: &EncodedLayer) -> Self {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(blob).unwrap();
        file.flush().unwrap();
        Self {
            file,
            index: layer.index.clone().unwrap(),
        }
    }

    fn options(&self) -> EncodeOptions {
        EncodeOptions::default()
            .with_previous(PreviousBlob::open(self.file.path(), &self.index).unwrap())
    }
}

fn append_line(path: &Path) {
    let mut f = fs_err::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(b"one more line\n").unwrap();
}

/// The tar offset where `member` starts.
fn tar_offset(index: &MemberIndex, member: usize) -> u64 {
    index.members[..member].iter().map(|m| m.tar_size).sum()
}

fn assert_same(got: &(Vec<u8>, EncodedLayer), want: &(Vec<u8>, EncodedLayer), what: &str) {
    assert!(
        got.0 == want.0,
        "{what}: blob bytes differ from an export from scratch"
    );
    assert_eq!(got.1.digest, want.1.digest, "{what}");
    assert_eq!(got.1.diff_id, want.1.diff_id, "{what}");
    // Member keys depend on time too (an identity is recorded only once its ctime is older
    // than the racy margin), so indexes are compared without them.
    assert_eq!(
        keyless(&got.1.index),
        keyless(&want.1.index),
        "{what}: index"
    );
}

fn keyless(index: &Option<MemberIndex>) -> Option<MemberIndex> {
    index.clone().map(|mut index| {
        for m in &mut index.members {
            m.key = None;
        }
        index
    })
}

#[test]
fn re_export_reads_only_what_follows_a_change_and_equals_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    make_tree(&root);
    settle();
    for compression in [Compression::Gzip, Compression::Zstd] {
        let first = export(&root, compression, EncodeOptions::default());
        let index = first.1.index.clone().unwrap();
        assert!(index.members.len() >= 8, "{} members", index.members.len());
        let keyless: Vec<(usize, u64)> = index
            .members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.key.is_none())
            .map(|(i, m)| (i, m.tar_size))
            .collect();
        assert!(keyless.is_empty(), "keyless members {keyless:?}");
        assert!(
            index
                .members
                .iter()
                .all(|m| m.key.is_some() && m.tar_state.is_some()),
            "settled files give every member a key and states"
        );
        let previous = Previous::save(&first.0, &first.1);

        // Nothing changed: every member is taken without reading a file or hashing a byte.
        let same = export(&root, compression, previous.options());
        assert_same(&same, &first, "unchanged");
        let s = same.1.stats;
        assert_eq!(s.unread_tar_bytes, same.1.uncompressed_size, "{s:?}");
        assert_eq!(s.resumed_tar_bytes, same.1.uncompressed_size, "{s:?}");
        assert_eq!(s.reused_members, s.members);

        // One small file changed, near the end of the tar: what precedes its member is not read.
        let target = root.join("d4/f050.txt");
        let saved = fs_err::read(&target).unwrap();
        append_line(&target);
        let scratch = export(&root, compression, EncodeOptions::default());
        let again = export(&root, compression, previous.options());
        assert_same(&again, &scratch, "one small file changed");
        let s = again.1.stats;
        let total = again.1.uncompressed_size;
        assert!(s.unread_tar_bytes > total / 2, "{s:?} of {total}");
        assert!(s.resumed_tar_bytes >= s.unread_tar_bytes, "{s:?}");
        assert!(s.reused_members + 3 >= s.members, "{s:?}");
        // The first member that was read is the one holding the change.
        let first_read = again
            .1
            .index
            .as_ref()
            .unwrap()
            .members
            .iter()
            .zip(&index.members)
            .position(|(new, old)| new.tar_digest != old.tar_digest)
            .unwrap();
        assert_eq!(s.unread_tar_bytes, tar_offset(&index, first_read), "{s:?}");
        fs_err::write(&target, &saved).unwrap();
        settle();
    }
}

#[test]
fn changes_anywhere_give_the_scratch_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    make_tree(&root);
    settle();
    let first = export(&root, Compression::Gzip, EncodeOptions::default());
    let previous = Previous::save(&first.0, &first.1);
    type Change<'a> = (&'a str, &'a dyn Fn(&Path));
    let cases: [Change<'_>; 6] = [
        ("first file (large) grows", &|r| {
            append_line(&r.join("a-large/big.bin"))
        }),
        ("first small file", &|r| append_line(&r.join("d0/f000.txt"))),
        ("last file", &|r| append_line(&r.join("d5/f099.txt"))),
        ("a file removed", &|r| {
            fs_err::remove_file(r.join("d2/f010.txt")).unwrap()
        }),
        ("a file added", &|r| {
            fs_err::write(r.join("d3/new.txt"), b"new").unwrap()
        }),
        ("the symlink retargeted", &|r| {
            fs_err::remove_file(r.join("link")).unwrap();
            std::os::unix::fs::symlink("d1/f001.txt", r.join("link")).unwrap();
        }),
    ];
    let copy = dir.path().join("copy");
    copy_tree(&root, &copy);
    settle();
    for (what, change) in cases {
        // Files changed by earlier cases are too fresh for keys; the others have them.
        let base = export(&copy, Compression::Gzip, EncodeOptions::default());
        let base_prev = Previous::save(&base.0, &base.1);
        change(&copy);
        let scratch = export(&copy, Compression::Gzip, EncodeOptions::default());
        let again = export(&copy, Compression::Gzip, base_prev.options());
        assert_same(&again, &scratch, what);
        // The original tree's previous blob: other inodes, so no file is skipped unread (only
        // a member holding nothing but a directory's header can be), but compressed bytes and
        // hash states are still reused.
        let other = export(&copy, Compression::Gzip, previous.options());
        assert_same(&other, &scratch, what);
        assert!(
            other.1.stats.unread_tar_bytes <= 512,
            "{what}: {:?}",
            other.1.stats
        );
        assert!(other.1.stats.reused_members > 0, "{what}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .args(["-a", "--"])
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_rewrite_that_keeps_size_and_mtime_is_still_seen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    make_tree(&root);
    settle();
    let first = export(&root, Compression::Gzip, EncodeOptions::default());
    let previous = Previous::save(&first.0, &first.1);
    // Same length, same mtime (restored), other bytes: only ctime tells.
    let target = root.join("d1/f020.txt");
    let meta = fs_err::metadata(&target).unwrap();
    let mut bytes = fs_err::read(&target).unwrap();
    bytes[0] ^= 0x20;
    fs_err::write(&target, &bytes).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&target)
        .unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
    drop(f);
    let after = fs_err::metadata(&target).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec()),
        (meta.len(), meta.mtime(), meta.mtime_nsec())
    );
    let scratch = export(&root, Compression::Gzip, EncodeOptions::default());
    assert_ne!(scratch.1.diff_id, first.1.diff_id);
    let again = export(&root, Compression::Gzip, previous.options());
    assert_same(&again, &scratch, "rewritten in place");

    // Just after a change the identities are too fresh to be recorded: no keys, so the next
    // export reads those members again.
    let fresh = export(&root, Compression::Gzip, EncodeOptions::default());
    let keyless = fresh
        .1
        .index
        .as_ref()
        .unwrap()
        .members
        .iter()
        .filter(|m| m.key.is_none())
        .count();
    assert!(
        keyless >= 1,
        "the member of a file changed within the margin has no key"
    );
}

#[test]
fn damaged_previous_bytes_are_compressed_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    make_tree(&root);
    settle();
    let first = export(&root, Compression::Gzip, EncodeOptions::default());
    let index = first.1.index.clone().unwrap();
    // Member 0 holds the first directory's header, 1-3 are the pieces of the large file (2 and
    // 3 are written again from the middle of the file), 6 holds small files.
    for damaged in [0, 1, 2, 3, 6] {
        let mut blob = first.0.clone();
        let m = index.members[damaged];
        blob[(m.offset + m.size / 2) as usize] ^= 0x55;
        let previous = Previous::save(&blob, &first.1);
        let again = export(&root, Compression::Gzip, previous.options());
        assert_same(&again, &first, &format!("member {damaged} damaged"));
        assert_eq!(again.1.stats.reused_members + 1, again.1.stats.members);
        // Everything before the damaged member was taken without reading: a damaged piece of
        // the large file resumes it from that piece.
        assert!(
            again.1.stats.unread_tar_bytes >= tar_offset(&index, damaged),
            "member {damaged}: {:?}",
            again.1.stats
        );
    }
}

#[test]
fn a_reader_between_offered_files_ends_the_offer_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    make_tree(&root);
    settle();
    let first = export(&root, Compression::Gzip, EncodeOptions::default());
    let previous = Previous::save(&first.0, &first.1);
    // The same tree, with one file given as a reader: the same bytes.
    let mut w = LayerWriter::with_options(Vec::new(), Compression::Gzip, previous.options());
    let mut via_reader = 0;
    let mut entries = Vec::new();
    list(&root, None, &mut entries);
    for (entry, host) in entries {
        match (&entry.kind, host) {
            (EntryKind::File { .. }, Some(host)) if host.ends_with("d3/f000.txt") => {
                let mut f = fs_err::File::open(&host).unwrap();
                w.append(&entry, Some(&mut f)).unwrap();
                via_reader += 1;
            }
            (EntryKind::File { .. }, Some(host)) => {
                let meta = fs_err::symlink_metadata(&host).unwrap();
                let source = FileSource {
                    path: host,
                    identity: FileIdentity::of(&meta),
                };
                w.append_file(&entry, &[], source).unwrap();
            }
            _ => w.append(&entry, None).unwrap(),
        }
    }
    assert_eq!(via_reader, 1);
    let got = w.finish_encoded().unwrap();
    assert!(got.0 == first.0);
    assert_eq!(got.1.diff_id, first.1.diff_id);
    assert!(got.1.stats.unread_tar_bytes > 0);
}

fn list(root: &Path, rel: Option<&LayerPath>, out: &mut Vec<(Entry, Option<PathBuf>)>) {
    let dir = rel.map_or(root.to_owned(), |r| root.join(r.as_str()));
    let mut names: Vec<String> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        let path = match rel {
            Some(r) => r.join(&name).unwrap(),
            None => LayerPath::new(&name).unwrap(),
        };
        let host = dir.join(&name);
        let meta = fs_err::symlink_metadata(&host).unwrap();
        let mut entry = Entry {
            path: path.clone(),
            kind: EntryKind::Directory,
            mode: meta.mode() & 0o7777,
            uid: 0,
            gid: 0,
            mtime: meta.mtime().max(0) as u64,
        };
        if meta.is_dir() {
            out.push((entry, None));
            list(root, Some(&path), out);
        } else if meta.is_file() {
            entry.kind = EntryKind::File { size: meta.len() };
            out.push((entry, Some(host)));
        } else {
            entry.kind = EntryKind::Symlink {
                target: fs_err::read_link(&host)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            };
            out.push((entry, None));
        }
    }
}

#[test]
fn an_index_from_before_keys_and_states_still_serves_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    make_tree(&root);
    settle();
    let first = export(&root, Compression::Gzip, EncodeOptions::default());
    // As an index written before members had keys and hash states would read back.
    let json = serde_json::to_value(first.1.index.as_ref().unwrap()).unwrap();
    let mut old = json.clone();
    for m in old["members"].as_array_mut().unwrap() {
        let m = m.as_object_mut().unwrap();
        for field in ["key", "tar_state", "blob_state"] {
            assert!(m.remove(field).is_some());
        }
    }
    let old: MemberIndex = serde_json::from_value(old).unwrap();
    assert!(
        old.members
            .iter()
            .all(|m| m.key.is_none() && m.tar_state.is_none())
    );
    let previous = Previous {
        file: Previous::save(&first.0, &first.1).file,
        index: old,
    };
    let again = export(&root, Compression::Gzip, previous.options());
    assert_same(&again, &first, "old index");
    let s = again.1.stats;
    assert_eq!(s.reused_members, s.members, "{s:?}");
    assert_eq!((s.unread_tar_bytes, s.resumed_tar_bytes), (0, 0), "{s:?}");
}
