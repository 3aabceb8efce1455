//! Writing OCI layers: a deterministic tar stream, compressed, with the DiffID (of the tar) and
//! the blob digest (of the compressed bytes) computed in the same pass (DESIGN.md decision 6).
//!
//! Determinism: the writer refuses entries that are not in canonical order (see [`LayerPath`]),
//! writes numeric uid/gid only (no user or group names), and takes every mtime from the caller,
//! so the same entries give the same bytes on any machine. The writer encodes tar headers itself
//! (ustar, with a PAX extended header for long names and large ids) and hands each entry to a
//! [`LayerEncoder`], which cuts the stream into independently compressed members and compresses
//! them in parallel; the member format, its pinned backends and levels, and its invariants are
//! documented in [`crate::compress`].
//!
//! File content comes as a reader, or as a [`FileSource`] (a path and the file's
//! [`FileIdentity`]) that the writer opens only when it needs the bytes: with a previous blob, a
//! re-export does not read files whose members are unchanged (see [`crate::compress`]).
//!
//! Not responsible for: choosing what goes into a layer (the caller walks a context or a
//! snapshot), or reading layers (`apply`).

mod header;

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::compress::{CompressError, EncodeOptions, EncodedLayer, LayerEncoder, Offer};
use crate::digest::{BlobDigest, DiffId};

pub use crate::compress::{Compression, FileIdentity, GZIP_LEVEL, ZSTD_LEVEL};

/// Size of the buffer file contents are read through.
const COPY_BUFFER: usize = 128 * 1024;

/// Errors while writing a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("writing layer entry `{path}`")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("finishing layer stream")]
    Finish(#[source] CompressError),
    #[error("compressing layer entry `{path}`")]
    Compress {
        path: String,
        #[source]
        source: CompressError,
    },
    #[error("layer entry `{path}` is out of order (after `{previous}`); entries must be sorted")]
    OutOfOrder { path: String, previous: String },
    #[error("layer entry path `{0}` is not a clean relative path")]
    BadPath(String),
    #[error("layer entry `{0}` was given a file source but is not a regular file")]
    NotAFile(String),
    #[error("layer entry `{path}` declared {declared} bytes but its content had {actual}")]
    SizeChanged {
        path: String,
        declared: u64,
        actual: u64,
    },
}

/// A clean, relative path inside a layer (`usr/bin/app`), ordered component by component so a
/// directory sorts immediately before its contents (`a`, `a/b`, `a-b`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LayerPath(String);

impl LayerPath {
    /// Validate a relative path: no empty, `.` or `..` components, no leading `/`.
    pub fn new(path: &str) -> Result<Self, LayerError> {
        let ok = !path.is_empty()
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..")
            && !path.contains('\0');
        if ok {
            Ok(Self(path.to_owned()))
        } else {
            Err(LayerError::BadPath(path.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every proper ancestor, outermost first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> impl Iterator<Item = LayerPath> + '_ {
        self.0
            .match_indices('/')
            .map(|(i, _)| LayerPath(self.0[..i].to_owned()))
    }

    /// `self/name`.
    pub fn join(&self, name: &str) -> Result<Self, LayerError> {
        Self::new(&format!("{}/{name}", self.0))
    }
}

impl Ord for LayerPath {
    fn cmp(&self, other: &Self) -> Ordering {
        // The components before the one where the bytes first differ are equal in both: compare
        // from that component on (maps of thousands of paths under one directory compare a lot).
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        let common = a
            .iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let start = a[..common]
            .iter()
            .rposition(|&c| c == b'/')
            .map_or(0, |slash| slash + 1);
        // `start` follows an ASCII `/` (or is 0), so it is a char boundary of both.
        let (rest_a, rest_b) = (&self.0[start..], &other.0[start..]);
        match component_key(first_component(rest_a)).cmp(&component_key(first_component(rest_b))) {
            // The same component: the bytes differ right after it, where one path ends (had
            // both a `/` there, the component would be part of the common prefix). The path
            // that ends is the directory, which sorts first.
            Ordering::Equal => rest_a.len().cmp(&rest_b.len()),
            unequal => unequal,
        }
    }
}

/// `a` of `a/b/c`.
fn first_component(path: &str) -> &str {
    path.split_once('/').map_or(path, |(c, _)| c)
}

/// Within a directory the opaque whiteout `.wh..wh..opq` sorts first and other `.wh.` entries
/// next: the OCI image spec (layer.md, "Whiteouts") asks generators to put whiteout files
/// before their siblings. Other names keep byte order.
fn component_key(component: &str) -> (u8, &str) {
    if component == ".wh..wh..opq" {
        (0, component)
    } else if component.starts_with(".wh.") {
        (1, component)
    } else {
        (2, component)
    }
}

impl PartialOrd for LayerPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for LayerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LayerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    /// A regular file of `size` bytes; its content is passed to [`LayerWriter::append`].
    File {
        size: u64,
    },
    Symlink {
        target: String,
    },
    /// A hard link to an earlier entry of the same layer.
    Hardlink {
        target: LayerPath,
    },
}

/// One layer entry's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: LayerPath,
    pub kind: EntryKind,
    /// Permission bits plus setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
}

/// A device node or fifo: an entry with neither content nor link target (the overlay differ
/// emits these; see [`LayerWriter::append_node`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
}

/// A device node or fifo entry's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub path: LayerPath,
    pub node: Node,
    /// Permission bits plus setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch.
    pub mtime: u64,
}

/// One extended attribute, written as a PAX `SCHILY.xattr.<name>` record (the convention GNU
/// tar, Go's `archive/tar`, containerd and Docker read back).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Xattr {
    pub name: String,
    pub value: Vec<u8>,
}

/// Digests and sizes of a finished layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    pub diff_id: DiffId,
    pub digest: BlobDigest,
    /// Size of the blob (compressed bytes).
    pub size: u64,
    /// Size of the tar stream.
    pub uncompressed_size: u64,
}

/// A regular file's content for [`LayerWriter::append_file`]: the writer opens `path` only if
/// it needs the bytes. `identity` must come from an `lstat` of that file taken before it is
/// read (see [`FileIdentity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    pub path: PathBuf,
    pub identity: FileIdentity,
}

/// An offered entry whose content the encoder has not asked for (yet).
struct Held {
    path: LayerPath,
    headers: Vec<u8>,
    data_len: u64,
    source: Option<FileSource>,
}

/// Streams sorted entries into a compressed layer written to `W`.
///
/// With a previous blob ([`EncodeOptions::with_previous`]), files given by
/// [`append_file`](Self::append_file) are not read at all while the members they fall in are
/// unchanged (same headers and file identities at the same positions as in the previous blob);
/// the output is the same bytes either way.
pub struct LayerWriter<W: Write> {
    encoder: LayerEncoder<W>,
    previous: Option<LayerPath>,
    buffer: Vec<u8>,
    /// Offered entries the encoder holds, oldest first.
    held: VecDeque<Held>,
}

impl<W: Write> LayerWriter<W> {
    /// A writer with the default [`EncodeOptions`] (all cores, no previous blob).
    pub fn new(out: W, compression: Compression) -> Self {
        Self::with_options(out, compression, EncodeOptions::default())
    }

    /// A writer with explicit options: thread count, and a previous blob to reuse members from.
    pub fn with_options(out: W, compression: Compression, options: EncodeOptions) -> Self {
        Self {
            encoder: LayerEncoder::with_options(out, compression, options),
            previous: None,
            buffer: Vec::new(),
            held: VecDeque::new(),
        }
    }

    /// Append one entry; `content` must be given for files and yield exactly `size` bytes.
    ///
    /// A file whose content is shorter than declared is padded with zeros and refused, a longer
    /// one is refused after its declared bytes: either way the stream stays well formed, and
    /// the caller decides whether to go on.
    pub fn append(
        &mut self,
        entry: &Entry,
        content: Option<&mut dyn Read>,
    ) -> Result<(), LayerError> {
        self.append_with_xattrs(entry, &[], content)
    }

    /// Like [`append`](Self::append), with extended attributes written as PAX records in the
    /// order given (callers sort them by name, for determinism).
    pub fn append_with_xattrs(
        &mut self,
        entry: &Entry,
        xattrs: &[Xattr],
        content: Option<&mut dyn Read>,
    ) -> Result<(), LayerError> {
        self.check_order(&entry.path)?;
        let data_len = match (&entry.kind, &content) {
            (EntryKind::File { size }, _) if *size > 0 && content.is_none() => {
                return Err(LayerError::SizeChanged {
                    path: entry.path.to_string(),
                    declared: *size,
                    actual: 0,
                });
            }
            (EntryKind::File { size }, _) => *size,
            _ => 0,
        };
        let headers = header::headers(entry, None, xattrs)?;
        // Only files have content; a reader given with anything else is not read.
        let content = content.filter(|_| matches!(entry.kind, EntryKind::File { .. }));
        match content {
            // No content: the headers are the whole entry, so it can be offered.
            None if self.encoder.offering() => self.offer(&entry.path, headers, 0, None)?,
            None => {
                self.start(&entry.path, &headers, 0, None)?;
                self.end(&entry.path)?;
            }
            Some(reader) => {
                // A reader cannot be held for later: stop offering and write what was held.
                if self.encoder.offering() {
                    let pending = self.encoder.stop_offering();
                    self.replay(pending, 0)?;
                }
                self.start(&entry.path, &headers, data_len, None)?;
                self.write_content(&entry.path, data_len, 0, reader)?;
            }
        }
        self.previous = Some(entry.path.clone());
        Ok(())
    }

    /// Append a regular file whose content is read from `source.path` only if needed (see the
    /// type docs); otherwise like [`append_with_xattrs`](Self::append_with_xattrs).
    pub fn append_file(
        &mut self,
        entry: &Entry,
        xattrs: &[Xattr],
        source: FileSource,
    ) -> Result<(), LayerError> {
        self.check_order(&entry.path)?;
        let EntryKind::File { size } = entry.kind else {
            return Err(LayerError::NotAFile(entry.path.to_string()));
        };
        let headers = header::headers(entry, None, xattrs)?;
        if self.encoder.offering() {
            self.offer(&entry.path, headers, size, Some(source))?;
        } else {
            self.write_file(&entry.path, &headers, size, &source, 0)?;
        }
        self.previous = Some(entry.path.clone());
        Ok(())
    }

    /// Append a device node or fifo, with extended attributes as in
    /// [`append_with_xattrs`](Self::append_with_xattrs).
    pub fn append_node(&mut self, node: &NodeEntry, xattrs: &[Xattr]) -> Result<(), LayerError> {
        // The header is an empty file's with the node's type and device numbers.
        let carrier = Entry {
            path: node.path.clone(),
            kind: EntryKind::File { size: 0 },
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            mtime: node.mtime,
        };
        self.check_order(&carrier.path)?;
        let headers = header::headers(&carrier, Some(node.node), xattrs)?;
        if self.encoder.offering() {
            self.offer(&carrier.path, headers, 0, None)?;
        } else {
            self.start(&carrier.path, &headers, 0, None)?;
            self.end(&carrier.path)?;
        }
        self.previous = Some(carrier.path);
        Ok(())
    }

    fn check_order(&self, path: &LayerPath) -> Result<(), LayerError> {
        match &self.previous {
            Some(prev) if *prev >= *path => Err(LayerError::OutOfOrder {
                path: path.to_string(),
                previous: prev.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn start(
        &mut self,
        path: &LayerPath,
        headers: &[u8],
        data_len: u64,
        identity: Option<&FileIdentity>,
    ) -> Result<(), LayerError> {
        self.encoder
            .start_entry_identified(path.as_str(), headers, data_len, identity)
            .map_err(|source| compress_error(path, source))
    }

    fn end(&mut self, path: &LayerPath) -> Result<(), LayerError> {
        self.encoder
            .end_entry()
            .map_err(|source| compress_error(path, source))
    }

    /// Offer an entry to the encoder, keeping what it holds and writing what it gives back.
    fn offer(
        &mut self,
        path: &LayerPath,
        headers: Vec<u8>,
        data_len: u64,
        source: Option<FileSource>,
    ) -> Result<(), LayerError> {
        let identity = source.as_ref().map(|s| s.identity);
        let offer = self
            .encoder
            .offer_entry(path.as_str(), &headers, data_len, identity.as_ref())
            .map_err(|e| compress_error(path, e))?;
        self.held.push_back(Held {
            path: path.clone(),
            headers,
            data_len,
            source,
        });
        match offer {
            Offer::Held { pending } => {
                let settled = self.held.len().saturating_sub(pending);
                self.held.drain(..settled);
                Ok(())
            }
            Offer::Replay { pending, from } => self.replay(pending, from),
        }
    }

    /// Write the last `pending` held entries normally (the first from `from` bytes of data).
    /// A file that changed size is written padded and reported after the others are written,
    /// so the stream stays well formed; any other failure stops at once.
    fn replay(&mut self, pending: usize, from: u64) -> Result<(), LayerError> {
        let settled = self.held.len().saturating_sub(pending);
        self.held.drain(..settled);
        let held: Vec<Held> = self.held.drain(..).collect();
        let mut changed = None;
        for (i, h) in held.into_iter().enumerate() {
            let from = if i == 0 { from } else { 0 };
            let result = match &h.source {
                Some(source) => self.write_file(&h.path, &h.headers, h.data_len, source, from),
                None => self
                    .start(&h.path, &h.headers, h.data_len, None)
                    .and_then(|()| self.end(&h.path)),
            };
            match result {
                Err(e @ LayerError::SizeChanged { .. }) => {
                    changed.get_or_insert(e);
                }
                other => other?,
            }
        }
        changed.map_or(Ok(()), Err)
    }

    /// Write a file entry (from `from` bytes of data on, for a resumed large file) with the
    /// content read from its source.
    fn write_file(
        &mut self,
        path: &LayerPath,
        headers: &[u8],
        size: u64,
        source: &FileSource,
        from: u64,
    ) -> Result<(), LayerError> {
        let io_error = |source| LayerError::Io {
            path: path.to_string(),
            source,
        };
        let mut file = fs_err::File::open(&source.path).map_err(io_error)?;
        if from > 0 {
            file.seek(SeekFrom::Start(from)).map_err(io_error)?;
            self.encoder
                .resume_entry(path.as_str(), headers, size, from, Some(&source.identity))
                .map_err(|e| compress_error(path, e))?;
        } else {
            self.start(path, headers, size, Some(&source.identity))?;
        }
        self.write_content(path, size, from, &mut file)
    }

    /// Copy the rest of an open file entry's content (`size` bytes in all, `from` already
    /// written) and end the entry, refusing a file that is shorter or longer than declared.
    fn write_content(
        &mut self,
        path: &LayerPath,
        size: u64,
        from: u64,
        reader: &mut dyn Read,
    ) -> Result<(), LayerError> {
        let want = size - from;
        let copied = self.copy_content(path, reader, want)?;
        if copied < want {
            // Keep the stream well formed, then refuse: the file shrank while being read.
            self.zero_fill(want - copied)
                .map_err(|e| compress_error(path, e))?;
            self.end(path)?;
            return Err(LayerError::SizeChanged {
                path: path.to_string(),
                declared: size,
                actual: from + copied,
            });
        }
        let mut probe = [0u8; 1];
        let extra = read_some(reader, &mut probe).map_err(|source| LayerError::Io {
            path: path.to_string(),
            source,
        })?;
        self.end(path)?;
        if extra != 0 {
            return Err(LayerError::SizeChanged {
                path: path.to_string(),
                declared: size,
                actual: from + copied + extra as u64,
            });
        }
        Ok(())
    }

    /// Copy up to `size` bytes of `reader` into the open entry; returns how many there were.
    fn copy_content(
        &mut self,
        path: &LayerPath,
        reader: &mut dyn Read,
        size: u64,
    ) -> Result<u64, LayerError> {
        if self.buffer.is_empty() {
            self.buffer = vec![0u8; COPY_BUFFER];
        }
        let mut copied = 0u64;
        while copied < size {
            let want = (size - copied).min(self.buffer.len() as u64) as usize;
            let n =
                read_some(reader, &mut self.buffer[..want]).map_err(|source| LayerError::Io {
                    path: path.to_string(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            self.encoder
                .write_data(&self.buffer[..n])
                .map_err(|source| compress_error(path, source))?;
            copied += n as u64;
        }
        Ok(copied)
    }

    fn zero_fill(&mut self, mut left: u64) -> Result<(), CompressError> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while left > 0 {
            let n = left.min(ZEROS.len() as u64) as usize;
            self.encoder.write_data(&ZEROS[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Finish the tar stream and the compression; returns the output and the layer's digests.
    pub fn finish(self) -> Result<(W, LayerInfo), LayerError> {
        let (out, encoded) = self.finish_encoded()?;
        Ok((out, LayerInfo::from(&encoded)))
    }

    /// Like [`finish`](Self::finish), also returning the member index to keep with the blob
    /// (for incremental re-export) and encoding statistics.
    pub fn finish_encoded(mut self) -> Result<(W, EncodedLayer), LayerError> {
        if self.encoder.offering() {
            match self.encoder.offer_end().map_err(LayerError::Finish)? {
                Offer::Held { .. } => self.held.clear(),
                Offer::Replay { pending, from } => self.replay(pending, from)?,
            }
        }
        self.encoder.finish().map_err(LayerError::Finish)
    }
}

fn compress_error(path: &LayerPath, source: CompressError) -> LayerError {
    LayerError::Compress {
        path: path.to_string(),
        source,
    }
}

impl From<&EncodedLayer> for LayerInfo {
    fn from(e: &EncodedLayer) -> Self {
        LayerInfo {
            diff_id: e.diff_id,
            digest: e.digest,
            size: e.size,
            uncompressed_size: e.uncompressed_size,
        }
    }
}

/// `read`, retrying on `Interrupted`.
fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: LayerPath::new(path).unwrap(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    fn write(compression: Compression) -> (Vec<u8>, LayerInfo) {
        let mut w = LayerWriter::new(Vec::new(), compression);
        w.append(&entry("a", EntryKind::Directory), None).unwrap();
        let mut content: &[u8] = b"hello";
        w.append(
            &entry("a/f", EntryKind::File { size: 5 }),
            Some(&mut content),
        )
        .unwrap();
        w.append(
            &entry("a/l", EntryKind::Symlink { target: "f".into() }),
            None,
        )
        .unwrap();
        let long = format!("a/{}", "x".repeat(200));
        let mut empty: &[u8] = b"";
        w.append(&entry(&long, EntryKind::File { size: 0 }), Some(&mut empty))
            .unwrap();
        w.append(&entry("a-b", EntryKind::Directory), None).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn orders_components_not_bytes() {
        let mut paths: Vec<LayerPath> = ["a-b", "a/b", "a", "a/b/c", "a.b"]
            .iter()
            .map(|p| LayerPath::new(p).unwrap())
            .collect();
        paths.sort();
        let got: Vec<&str> = paths.iter().map(LayerPath::as_str).collect();
        assert_eq!(got, ["a", "a/b", "a/b/c", "a-b", "a.b"]);
    }

    /// The order compares from the first differing component on; it must agree with comparing
    /// every component's key, for paths that share prefixes in all the awkward ways.
    #[test]
    fn order_agrees_with_comparing_every_component() {
        let parts = [
            "a",
            "b",
            "a-b",
            "a.b",
            "ab",
            ".wh.a",
            ".wh..wh..opq",
            "-",
            "é",
            "a b",
        ];
        let mut paths = Vec::new();
        for x in parts {
            paths.push(x.to_owned());
            for y in parts {
                paths.push(format!("{x}/{y}"));
                for z in ["a", ".wh.b", "b-c"] {
                    paths.push(format!("{x}/{y}/{z}"));
                }
            }
        }
        let reference = |a: &str, b: &str| {
            a.split('/')
                .map(component_key)
                .cmp(b.split('/').map(component_key))
        };
        for a in &paths {
            let la = LayerPath::new(a).unwrap();
            for b in &paths {
                let lb = LayerPath::new(b).unwrap();
                assert_eq!(la.cmp(&lb), reference(a, b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn whiteouts_sort_before_their_siblings() {
        let mut paths: Vec<LayerPath> = ["d/-x", "d/.a", "d/.wh.b", "d/.wh..wh..opq", "d", "c"]
            .iter()
            .map(|p| LayerPath::new(p).unwrap())
            .collect();
        paths.sort();
        let got: Vec<&str> = paths.iter().map(LayerPath::as_str).collect();
        assert_eq!(got, ["c", "d", "d/.wh..wh..opq", "d/.wh.b", "d/-x", "d/.a"]);
    }

    #[test]
    fn nodes_and_xattrs_read_back() {
        let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed);
        let cap = Xattr {
            name: "security.capability".into(),
            value: vec![1, 0, 0, 2, 0xff],
        };
        w.append_with_xattrs(
            &entry("a", EntryKind::Directory),
            std::slice::from_ref(&cap),
            None,
        )
        .unwrap();
        let node = |path: &str, node| NodeEntry {
            path: LayerPath::new(path).unwrap(),
            node,
            mode: 0o640,
            uid: 1,
            gid: 2,
            mtime: 3,
        };
        w.append_node(&node("b", Node::BlockDevice { major: 7, minor: 9 }), &[])
            .unwrap();
        w.append_node(&node("c", Node::CharDevice { major: 1, minor: 3 }), &[])
            .unwrap();
        w.append_node(&node("f", Node::Fifo), &[]).unwrap();
        assert!(matches!(
            w.append_node(&node("e", Node::Fifo), &[]),
            Err(LayerError::OutOfOrder { .. })
        ));
        let (plain, _) = w.finish().unwrap();
        let mut archive = tar::Archive::new(&plain[..]);
        let mut got = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let xattrs: Vec<(String, Vec<u8>)> = e
                .pax_extensions()
                .unwrap()
                .into_iter()
                .flatten()
                .map(|x| x.unwrap())
                .map(|x| (x.key().unwrap().to_owned(), x.value_bytes().to_vec()))
                .collect();
            let h = e.header();
            got.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.device_major().ok().flatten(),
                h.device_minor().ok().flatten(),
                xattrs,
            ));
        }
        assert_eq!(
            got[0].4,
            [("SCHILY.xattr.security.capability".into(), cap.value)]
        );
        assert_eq!(got[1].1, tar::EntryType::Block);
        assert_eq!((got[1].2, got[1].3), (Some(7), Some(9)));
        assert_eq!(got[2].1, tar::EntryType::Char);
        assert_eq!((got[2].2, got[2].3), (Some(1), Some(3)));
        assert_eq!(got[3].1, tar::EntryType::Fifo);
    }

    #[test]
    fn refuses_unclean_paths() {
        for bad in ["", "/a", "a//b", "a/./b", "../a", "a/.."] {
            assert!(LayerPath::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn same_entries_same_digests_and_digests_match_bytes() {
        let (bytes1, info1) = write(Compression::Gzip);
        let (bytes2, info2) = write(Compression::Gzip);
        assert_eq!(bytes1, bytes2);
        assert_eq!(info1, info2);
        assert_eq!(info1.digest.0, Digest::of(&bytes1));
        assert_eq!(info1.size, bytes1.len() as u64);
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&bytes1[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(info1.diff_id.0, Digest::of(&tar_bytes));
        let (plain, plain_info) = write(Compression::Uncompressed);
        assert_eq!(plain, tar_bytes);
        assert_eq!(plain_info.diff_id, info1.diff_id);
    }

    #[test]
    fn tar_reads_back_with_long_names_and_numeric_ids() {
        let (_, _) = write(Compression::Uncompressed);
        let (plain, _) = write(Compression::Uncompressed);
        let mut archive = tar::Archive::new(&plain[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "a/");
        assert_eq!(names[1], "a/f");
        assert_eq!(names[3], format!("a/{}", "x".repeat(200)));
        assert_eq!(names[4], "a-b/");
    }

    #[test]
    fn refuses_out_of_order_and_changed_sizes() {
        let mut w = LayerWriter::new(Vec::new(), Compression::Uncompressed);
        w.append(&entry("b", EntryKind::Directory), None).unwrap();
        assert!(matches!(
            w.append(&entry("a", EntryKind::Directory), None),
            Err(LayerError::OutOfOrder { .. })
        ));
        let mut short: &[u8] = b"abc";
        assert!(matches!(
            w.append(&entry("c", EntryKind::File { size: 5 }), Some(&mut short)),
            Err(LayerError::SizeChanged { .. })
        ));
        let mut long: &[u8] = b"abcdef";
        assert!(matches!(
            w.append(&entry("d", EntryKind::File { size: 5 }), Some(&mut long)),
            Err(LayerError::SizeChanged { .. })
        ));
    }
}
