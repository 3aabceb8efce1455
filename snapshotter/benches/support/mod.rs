//! Shared by the export benches: a deterministic test tree (generated, never committed) and a
//! minimal export (walk → tar → compress → digest → sink) over it.
//!
//! The tree: 20,000 small text files of 1–14 KiB in 100 directories, and five 50 MB files (two
//! incompressible, three text-like), about 400 MB in all, generated with a fixed-seed PRNG.

#![allow(dead_code)]

use fs_err as fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use snapshotter::compress::{EncodeOptions, EncodedLayer, MemberIndex, PreviousBlob};
use snapshotter::layer::{
    Compression, Entry, EntryKind, FileIdentity, FileSource, LayerPath, LayerWriter,
};

/// Bump when the generated tree changes, so a cached tree is regenerated.
const TREE_VERSION: &str = "kiln-export-bench-tree-v1";
pub const SMALL_FILES: usize = 20_000;
pub const SMALL_DIRS: usize = 100;
pub const LARGE_FILE: usize = 50_000_000;

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

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Text-like bytes: log-ish lines over a 2,000-word vocabulary with numbers (gzip -6 ≈ 3.5×).
struct Text {
    rng: Rng,
    words: Vec<Vec<u8>>,
}

impl Text {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let words = (0..2000)
            .map(|_| {
                let len = 2 + rng.below(9) as usize;
                (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
            })
            .collect();
        Self { rng, words }
    }

    fn fill(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        while out.len() < len {
            let n = self.rng.below(100_000);
            out.extend_from_slice(format!("{n:06} ").as_bytes());
            for _ in 0..3 + self.rng.below(10) {
                // Zipf-ish: small indices far more often.
                let r = self.rng.below(2000);
                let i = (r * r / 2000) as usize;
                out.extend_from_slice(&self.words[i]);
                out.push(b' ');
            }
            out.push(b'\n');
        }
        out.truncate(len);
        out
    }
}

/// The bench tree under the system temp dir, generated on first use.
pub fn tree() -> PathBuf {
    let root = std::env::temp_dir().join(TREE_VERSION);
    if !root.join(".complete").exists() {
        generate(&root).expect("generating the bench tree");
    }
    root
}

/// Write the tree into `root` (replacing what is there).
pub fn generate(root: &Path) -> io::Result<()> {
    if root.exists() {
        fs::remove_dir_all(root)?;
    }
    let mut text = Text::new(1);
    let mut rng = Rng(2);
    for d in 0..SMALL_DIRS {
        let dir = root.join("small").join(format!("d{d:03}"));
        fs::create_dir_all(&dir)?;
        for f in 0..SMALL_FILES / SMALL_DIRS {
            let n = d * (SMALL_FILES / SMALL_DIRS) + f;
            let len = 1024 + rng.below(13 * 1024 + 1) as usize;
            fs::File::create(dir.join(format!("f{n:05}.txt")))?.write_all(&text.fill(len))?;
        }
    }
    let large = root.join("large");
    fs::create_dir_all(&large)?;
    for i in 0..3 {
        let mut f = io::BufWriter::new(fs::File::create(large.join(format!("text-{i}.log")))?);
        let mut left = LARGE_FILE;
        while left > 0 {
            let n = left.min(1 << 20);
            f.write_all(&text.fill(n))?;
            left -= n;
        }
        f.flush()?;
    }
    for i in 0..2 {
        let mut f = io::BufWriter::new(fs::File::create(large.join(format!("random-{i}.bin")))?);
        let mut buf = Vec::with_capacity(1 << 20);
        let mut left = LARGE_FILE;
        while left > 0 {
            let n = left.min(1 << 20);
            buf.clear();
            while buf.len() < n {
                buf.extend_from_slice(&rng.next().to_le_bytes());
            }
            buf.truncate(n);
            f.write_all(&buf)?;
            left -= n;
        }
        f.flush()?;
    }
    fs::File::create(root.join(".complete"))?;
    Ok(())
}

/// One small file in the middle of the layer's small files (at ~80% of the tar stream: the
/// five large files come first).
pub const CHANGED_FILE: &str = "small/d050/f10000.txt";

/// A file of the tree with one more line appended, restored (truncated back) on drop. The
/// restored file has its old content but a new ctime, so the next export reads it again.
pub struct Changed {
    path: PathBuf,
    len: u64,
}

const EXTRA_LINE: &[u8] = b"one more line\n";

impl Changed {
    /// Append a line to `rel` in `root`.
    pub fn apply(root: &Path, rel: &str) -> io::Result<Self> {
        let path = root.join(rel);
        let len = fs::metadata(&path)?.len();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)?
            .write_all(EXTRA_LINE)?;
        Ok(Self { path, len })
    }
}

impl Drop for Changed {
    fn drop(&mut self) {
        let restored = fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|f| f.set_len(self.len));
        assert!(restored.is_ok(), "restoring {}", self.path.display());
    }
}

/// Export `root` as a layer into `out`: walk (sorted), tar, compress, digest. Files go through
/// [`LayerWriter::append_file`] with their identity, as an export from a snapshot would, so a
/// re-export with a previous blob skips reading the unchanged ones.
pub fn export<W: Write>(
    root: &Path,
    out: W,
    compression: Compression,
    options: EncodeOptions,
) -> io::Result<(W, EncodedLayer)> {
    let mut layer = LayerWriter::with_options(out, compression, options);
    walk(root, None, &mut layer)?;
    layer.finish_encoded().map_err(io::Error::other)
}

fn walk<W: Write>(
    root: &Path,
    rel: Option<&LayerPath>,
    layer: &mut LayerWriter<W>,
) -> io::Result<()> {
    let dir = match rel {
        Some(rel) => root.join(rel.as_str()),
        None => root.to_owned(),
    };
    let mut names: Vec<String> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<_>>()?;
    names.retain(|n| n != ".complete");
    // Byte order of names within a directory, depth first, is LayerPath's component order.
    names.sort();
    for name in names {
        let path = match rel {
            Some(rel) => rel.join(&name),
            None => LayerPath::new(&name),
        }
        .map_err(io::Error::other)?;
        let host = dir.join(&name);
        let meta = fs::symlink_metadata(&host)?;
        let mut entry = Entry {
            path: path.clone(),
            kind: EntryKind::Directory,
            mode: meta.mode() & 0o7777,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: meta.mtime().max(0) as u64,
        };
        if meta.is_dir() {
            layer.append(&entry, None).map_err(io::Error::other)?;
            walk(root, Some(&path), layer)?;
        } else if meta.is_file() {
            entry.kind = EntryKind::File { size: meta.len() };
            let source = FileSource {
                path: host,
                identity: FileIdentity::of(&meta),
            };
            layer
                .append_file(&entry, &[], source)
                .map_err(io::Error::other)?;
        } else if meta.file_type().is_symlink() {
            entry.kind = EntryKind::Symlink {
                target: fs::read_link(&host)?.to_string_lossy().into_owned(),
            };
            layer.append(&entry, None).map_err(io::Error::other)?;
        }
    }
    Ok(())
}

/// Export the unchanged tree into `blob_path` and return its member index.
pub fn export_to_file(root: &Path, blob_path: &Path, compression: Compression) -> MemberIndex {
    let file = io::BufWriter::new(fs::File::create(blob_path).expect("creating blob file"));
    let (mut file, layer) = export(root, file, compression, EncodeOptions::default())
        .expect("exporting the bench tree");
    file.flush().expect("flushing blob file");
    layer.index.expect("compressed layers have an index")
}

/// Open a previous blob for reuse.
pub fn previous(blob_path: &Path, index: &MemberIndex) -> PreviousBlob {
    PreviousBlob::open(blob_path, index).expect("opening previous blob")
}
