//! Layer compression end to end (issue [C] item 5): members decode with real tools, the blob is
//! the same for every thread count, incremental re-export equals export from scratch, the
//! output is pinned by golden digests, and memory stays bounded on a 1 GiB stream.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use snapshotter::Digest;
use snapshotter::compress::{
    CompressError, EncodeOptions, EncodedLayer, FORMAT_VERSION, MAX_MEMBER, MemberIndex,
    PreviousBlob, SPLIT,
};
use snapshotter::layer::{Compression, Entry, EntryKind, LayerPath, LayerWriter};

// ---------------------------------------------------------------------------------------------
// A counting allocator, so the memory test can see the peak heap. Tests that allocate a lot take
// the read side of `EXCLUSIVE`; the memory test takes the write side and runs alone.

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
}

fn skip(test: &str, reason: &str) {
    let _ = writeln!(io::stderr(), "SKIP {test}: {reason}");
}

// ---------------------------------------------------------------------------------------------
// Deterministic test trees.

/// splitmix64: a tiny deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "layer", "member", "kiln", "snapshot", "digest", "gzip", "zstd", "tar", "entry", "path",
    "chunk", "index", "reuse", "stream", "blob", "config", "image", "build", "cache", "step",
];

/// Text-like content (compressible).
fn text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
        out.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// Incompressible content.
fn noise(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

#[derive(Clone)]
struct Tree {
    /// Sorted entries with their content (files only).
    entries: Vec<(Entry, Option<Vec<u8>>)>,
}

fn entry(path: &str, kind: EntryKind) -> Entry {
    Entry {
        path: LayerPath::new(path).unwrap(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
    }
}

/// `small` files of 1–14 KiB in a few directories, plus one large text file of `large` bytes
/// and one large incompressible file.
fn tree(seed: u64, small: usize, large: usize) -> Tree {
    let mut rng = Rng(seed);
    let mut entries = Vec::new();
    let dirs = 8;
    entries.push((entry("app", EntryKind::Directory), None));
    if large > 0 {
        let big = text(&mut rng, large);
        entries.push((
            entry(
                "app/big.txt",
                EntryKind::File {
                    size: big.len() as u64,
                },
            ),
            Some(big),
        ));
        let bin = noise(&mut rng, large / 2 + 777);
        entries.push((
            entry(
                "app/blob.bin",
                EntryKind::File {
                    size: bin.len() as u64,
                },
            ),
            Some(bin),
        ));
    }
    for d in 0..dirs {
        entries.push((entry(&format!("app/d{d}"), EntryKind::Directory), None));
        for f in 0..small / dirs {
            let len = 1024 + rng.below(13 * 1024) as usize;
            let body = text(&mut rng, len);
            entries.push((
                entry(
                    &format!("app/d{d}/f{f:05}.txt"),
                    EntryKind::File {
                        size: body.len() as u64,
                    },
                ),
                Some(body),
            ));
        }
    }
    entries.push((
        entry(
            "app/link",
            EntryKind::Symlink {
                target: "d0/f00000.txt".into(),
            },
        ),
        None,
    ));
    entries.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    Tree { entries }
}

fn export(
    tree: &Tree,
    compression: Compression,
    options: EncodeOptions,
) -> (Vec<u8>, EncodedLayer) {
    let mut w = LayerWriter::with_options(Vec::new(), compression, options);
    for (e, content) in &tree.entries {
        match content {
            Some(c) => w.append(e, Some(&mut &c[..])).unwrap(),
            None => w.append(e, None).unwrap(),
        }
    }
    w.finish_encoded().unwrap()
}

fn blob_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    f
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unzstd(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(bytes)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Run `program args` with `input` on stdin; `None` when the program is not installed.
fn pipe(program: &str, args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running {program}: {e}"),
    };
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "{program} {args:?} failed");
    Some(out.stdout)
}

/// The tar stream of a tree (uncompressed export).
fn tar_of(tree: &Tree) -> Vec<u8> {
    export(tree, Compression::Uncompressed, EncodeOptions::default()).0
}

// ---------------------------------------------------------------------------------------------

#[test]
fn gzip_members_decode_with_real_tools_and_multi_gz_decoder() {
    let _g = shared();
    let t = tree(1, 600, 9 << 19);
    let (blob, info) = export(
        &t,
        Compression::Gzip,
        EncodeOptions::default().with_threads(2),
    );
    let tar = tar_of(&t);
    assert!(info.stats.members >= 5, "{:?}", info.stats);
    assert_eq!(info.diff_id.0, Digest::of(&tar));
    assert_eq!(info.digest.0, Digest::of(&blob));
    assert_eq!(info.size, blob.len() as u64);
    assert_eq!(info.uncompressed_size, tar.len() as u64);
    assert_eq!(gunzip(&blob), tar);
    for (program, args) in [
        ("gzip", &["-dc"][..]),
        ("zcat", &[][..]),
        ("pigz", &["-dc"][..]),
    ] {
        match pipe(program, args, &blob) {
            Some(out) => assert!(out == tar, "{program} decoded different bytes"),
            None => skip(
                "gzip_members_decode_with_real_tools_and_multi_gz_decoder",
                &format!("{program} is not installed"),
            ),
        }
    }
    // `gzip -t` checks every member's CRC and length.
    if let Some(out) = pipe("gzip", &["-t"], &blob) {
        assert!(out.is_empty());
    }
    // The tar reads back entry by entry.
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), t.entries.len());
    // Members tile the blob and each is a complete gzip member holding whole tar pieces.
    let index = info.index.expect("gzip layers have an index");
    assert_eq!(index.blob_size(), blob.len() as u64);
    assert_eq!(index.tar_size(), tar.len() as u64);
    let mut tar_offset = 0usize;
    for m in &index.members {
        let bytes = &blob[m.offset as usize..(m.offset + m.size) as usize];
        assert_eq!(&bytes[..4], &[0x1f, 0x8b, 8, 0]);
        let part = gunzip(bytes);
        assert_eq!(part.len() as u64, m.tar_size);
        assert_eq!(Digest::of(&part), m.tar_digest);
        assert_eq!(&tar[tar_offset..tar_offset + part.len()], &part[..]);
        assert_eq!(tar_offset % 512, 0, "members begin at tar block boundaries");
        tar_offset += part.len();
        assert!(m.tar_size <= MAX_MEMBER + SPLIT + 4096);
    }
}

#[test]
fn zstd_frames_decode_and_carry_the_oci_media_type() {
    let _g = shared();
    let t = tree(2, 600, 9 << 19);
    let (blob, info) = export(
        &t,
        Compression::Zstd,
        EncodeOptions::default().with_threads(2),
    );
    assert_eq!(
        Compression::Zstd.media_type(),
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let tar = tar_of(&t);
    assert_eq!(unzstd(&blob), tar);
    assert_eq!(info.diff_id.0, Digest::of(&tar));
    assert_eq!(info.digest.0, Digest::of(&blob));
    assert!(info.stats.members >= 5);
    match pipe("zstd", &["-dc"], &blob) {
        Some(out) => assert!(out == tar, "zstd -d decoded different bytes"),
        None => skip(
            "zstd_frames_decode_and_carry_the_oci_media_type",
            "the zstd command is not installed",
        ),
    }
}

#[test]
fn uncompressed_blob_is_the_tar() {
    let _g = shared();
    let t = tree(3, 100, 0);
    let (blob, info) = export(&t, Compression::Uncompressed, EncodeOptions::default());
    assert_eq!(info.digest.0, info.diff_id.0);
    assert_eq!(info.digest.0, Digest::of(&blob));
    assert_eq!(info.size, blob.len() as u64);
    assert!(info.index.is_none());
}

#[test]
fn output_is_identical_for_every_thread_count() {
    let _g = shared();
    let t = tree(4, 700, 9 << 19);
    for compression in [Compression::Gzip, Compression::Zstd] {
        let (reference, ref_info) =
            export(&t, compression, EncodeOptions::default().with_threads(1));
        assert!(ref_info.stats.members >= 6);
        assert_eq!(
            ref_info.stats.peak_in_flight, 0,
            "one thread compresses inline"
        );
        for threads in [2, 3, 8] {
            let (blob, info) = export(
                &t,
                compression,
                EncodeOptions::default().with_threads(threads),
            );
            assert!(
                blob == reference,
                "{compression:?} differs with {threads} threads"
            );
            assert_eq!(info.index, ref_info.index);
            assert_eq!(info.digest, ref_info.digest);
            assert!(info.stats.peak_in_flight <= 2 * threads);
        }
    }
}

fn small_change(t: &Tree) -> Tree {
    let mut changed = t.clone();
    let i = changed.entries.len() / 2;
    let (e, content) = &mut changed.entries[i];
    let body = content.as_mut().expect("a file in the middle");
    body.extend_from_slice(b"one more line\n");
    e.kind = EntryKind::File {
        size: body.len() as u64,
    };
    changed
}

#[test]
fn incremental_re_export_equals_export_from_scratch() {
    let _g = shared();
    let t = tree(5, 1600, 9 << 19);
    let changed = small_change(&t);
    for compression in [Compression::Gzip, Compression::Zstd] {
        let (old_blob, old) = export(&t, compression, EncodeOptions::default());
        let old_index = old.index.clone().unwrap();
        let file = blob_file(&old_blob);

        let (scratch, scratch_info) = export(&changed, compression, EncodeOptions::default());
        for threads in [1, 3] {
            let previous = PreviousBlob::open(file.path(), &old_index).unwrap();
            let options = EncodeOptions::default()
                .with_threads(threads)
                .with_previous(previous);
            let (again, info) = export(&changed, compression, options);
            assert!(again == scratch, "{compression:?}: reuse changed the bytes");
            assert_eq!(info.digest, scratch_info.digest);
            assert_eq!(info.diff_id, scratch_info.diff_id);
            assert_eq!(info.index, scratch_info.index);
            let s = info.stats;
            assert!(
                s.reused_members + 2 >= s.members && s.members >= 10,
                "{compression:?}: {s:?}"
            );
        }
        // The unchanged tree re-exports entirely from the previous blob.
        let previous = PreviousBlob::open(file.path(), &old_index).unwrap();
        let (same, info) = export(
            &t,
            compression,
            EncodeOptions::default().with_previous(previous),
        );
        assert!(same == old_blob);
        assert_eq!(info.stats.reused_members, info.stats.members);
    }
}

#[test]
fn a_damaged_previous_blob_costs_reuse_not_correctness() {
    let _g = shared();
    let t = tree(6, 800, 0);
    let (mut old_blob, old) = export(&t, Compression::Gzip, EncodeOptions::default());
    let index = old.index.unwrap();
    // Flip a byte inside the second member.
    let m = index.members[1];
    old_blob[(m.offset + m.size / 2) as usize] ^= 0xff;
    let file = blob_file(&old_blob);
    let previous = PreviousBlob::open(file.path(), &index).unwrap();
    let (again, info) = export(
        &t,
        Compression::Gzip,
        EncodeOptions::default().with_previous(previous),
    );
    let (scratch, _) = export(&t, Compression::Gzip, EncodeOptions::default());
    assert!(again == scratch);
    assert_eq!(info.stats.reused_members + 1, info.stats.members);

    // A blob of the wrong size, an index of another format, or of another compression.
    let short = blob_file(&old_blob[..old_blob.len() - 1]);
    assert!(matches!(
        PreviousBlob::open(short.path(), &index),
        Err(CompressError::PreviousSize { .. })
    ));
    let mut other = index.clone();
    other.format = FORMAT_VERSION + 1;
    assert!(matches!(
        PreviousBlob::open(file.path(), &other),
        Err(CompressError::IndexFormat { .. })
    ));
    let previous = PreviousBlob::open(file.path(), &index).unwrap();
    let (_, zinfo) = export(
        &t,
        Compression::Zstd,
        EncodeOptions::default().with_previous(previous),
    );
    assert_eq!(zinfo.stats.reused_members, 0);
}

#[test]
fn member_index_round_trips_through_json() {
    let _g = shared();
    let t = tree(7, 300, 0);
    let (_, info) = export(&t, Compression::Zstd, EncodeOptions::default());
    let index = info.index.unwrap();
    let json = serde_json::to_string(&index).unwrap();
    assert!(json.starts_with(r#"{"format":1,"compression":"zstd","level":3,"blob":"sha256:"#));
    let back: MemberIndex = serde_json::from_str(&json).unwrap();
    assert_eq!(back, index);
    assert_eq!(back.blob, info.digest);
}

/// The bytes kiln writes are pinned: a change of backend, level or boundary rule shows here
/// first. When it is intended, bump `FORMAT_VERSION` and update these digests.
#[test]
fn golden_digests_pin_the_member_format() {
    let _g = shared();
    let t = tree(42, 400, 9 << 19);
    let mut got = Vec::new();
    for compression in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        let (_, info) = export(&t, compression, EncodeOptions::default());
        got.push(format!(
            "{compression:?} {} {} {}",
            info.digest, info.diff_id, info.stats.members
        ));
    }
    let expected = [
        "Gzip sha256:c51c261e51d97d20ebc93a1173f1f687e2febf45463f3879e50bc14cbe35b8d0 \
         sha256:93e30e699be10569fb3cf53bbe4cfb66eb7d6f3632bc16fd8bb32f8c6a53e683 7",
        "Zstd sha256:467aea181d1c54a2ebf713fc40dd5a454e666beebef2802c05b947060e0b82c8 \
         sha256:93e30e699be10569fb3cf53bbe4cfb66eb7d6f3632bc16fd8bb32f8c6a53e683 7",
        "Uncompressed sha256:93e30e699be10569fb3cf53bbe4cfb66eb7d6f3632bc16fd8bb32f8c6a53e683 \
         sha256:93e30e699be10569fb3cf53bbe4cfb66eb7d6f3632bc16fd8bb32f8c6a53e683 7",
    ];
    assert_eq!(got, expected);
}

/// A 1 GiB stream goes through with a heap that stays a small multiple of the window.
///
/// Unoptimized sha2 and zlib-rs run at ~25 MB/s, so a debug build streams 192 MiB instead:
/// the bound asserted is the same and still far below the stream size.
#[test]
fn memory_stays_bounded_on_a_1_gib_stream() {
    let _g = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
    const FILE: u64 = 48 << 20;
    const TOTAL: u64 = if cfg!(debug_assertions) {
        192 << 20
    } else {
        1 << 30
    };
    let threads = 2;
    let mut w = LayerWriter::with_options(
        io::sink(),
        Compression::Gzip,
        EncodeOptions::default().with_threads(threads),
    );
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut written = 0u64;
    let mut n = 0;
    while written < TOTAL {
        // Small files between the large ones exercise the content-defined boundaries too.
        for s in 0..200 {
            let body = vec![b'a' + (s % 26) as u8; 3000];
            let e = entry(
                &format!("f{n:03}/s{s:03}"),
                EntryKind::File {
                    size: body.len() as u64,
                },
            );
            w.append(&e, Some(&mut &body[..])).unwrap();
        }
        let e = entry(&format!("f{n:03}/z-large"), EntryKind::File { size: FILE });
        let mut content = Pattern { left: FILE, n: 0 };
        w.append(&e, Some(&mut content)).unwrap();
        written += FILE + 200 * 3072;
        n += 1;
    }
    let (_, info) = w.finish_encoded().unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(info.uncompressed_size >= TOTAL);
    assert!(info.stats.peak_in_flight <= 2 * threads, "{:?}", info.stats);
    let window_bytes = (2 * threads as u64) * (MAX_MEMBER + SPLIT);
    assert!(info.stats.peak_in_flight_bytes <= window_bytes);
    // In flight: the window's inputs and outputs, the open member, spare buffers, and the
    // compressors' own state: (window + 4) members' worth, whatever the stream size.
    let bound = (2 * threads as u64 + 4) * (MAX_MEMBER + SPLIT);
    let _ = writeln!(
        io::stderr(),
        "peak heap {} KiB for {} MiB of tar (bound {} MiB), {:?}",
        peak >> 10,
        info.uncompressed_size >> 20,
        bound >> 20,
        info.stats
    );
    assert!(
        (peak as u64) < bound,
        "peak heap {} MiB for {} MiB of tar",
        peak >> 20,
        info.uncompressed_size >> 20
    );
}

/// Compressible, cheap-to-generate file content.
struct Pattern {
    left: u64,
    n: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        const LINE: &[u8] = b"0123456789abcdef\n";
        let len = (buf.len() as u64).min(self.left) as usize;
        for (i, b) in buf[..len].iter_mut().enumerate() {
            *b = LINE[(self.n as usize + i) % LINE.len()];
        }
        self.n += len as u64;
        self.left -= len as u64;
        Ok(len)
    }
}
