//! Writing OCI layers: a deterministic tar stream, compressed, with the DiffID (of the tar) and
//! the blob digest (of the compressed bytes) computed in the same pass (DESIGN.md decision 6).
//!
//! Determinism: the writer refuses entries that are not in canonical order (see [`LayerPath`]),
//! writes numeric uid/gid only (no user or group names), and takes every mtime from the caller,
//! so the same entries give the same bytes on any machine. Compression is gzip through `flate2`
//! with the `zlib-rs` backend at [`GZIP_LEVEL`]: both are pinned because the compressed bytes,
//! and so the blob digest, depend on them.
//!
//! Not responsible for: choosing what goes into a layer (the caller walks a context or a
//! snapshot), or reading layers (apply lands with the snapshotter).

use std::cmp::Ordering;
use std::fmt;
use std::io::{self, Read, Write};

use flate2::write::GzEncoder;

use crate::digest::{BlobDigest, DiffId, DigestWriter};

/// The pinned gzip level (with the `zlib-rs` backend of `flate2`). Changing it changes every
/// layer digest kiln produces.
pub const GZIP_LEVEL: u32 = 6;

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Uncompressed,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Uncompressed => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

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
    Finish(#[source] io::Error),
    #[error("layer entry `{path}` is out of order (after `{previous}`); entries must be sorted")]
    OutOfOrder { path: String, previous: String },
    #[error("layer entry path `{0}` is not a clean relative path")]
    BadPath(String),
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
        self.0.split('/').cmp(other.0.split('/'))
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

enum Sink<W: Write> {
    Gzip(Box<GzEncoder<DigestWriter<W>>>),
    Plain(DigestWriter<W>),
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Gzip(g) => g.write(buf),
            Sink::Plain(p) => p.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Gzip(g) => g.flush(),
            Sink::Plain(p) => p.flush(),
        }
    }
}

/// Streams sorted entries into a compressed layer written to `W`.
pub struct LayerWriter<W: Write> {
    tar: tar::Builder<DigestWriter<Sink<W>>>,
    previous: Option<LayerPath>,
}

impl<W: Write> LayerWriter<W> {
    pub fn new(out: W, compression: Compression) -> Self {
        let blob = DigestWriter::new(out);
        let sink = match compression {
            Compression::Gzip => Sink::Gzip(Box::new(GzEncoder::new(
                blob,
                flate2::Compression::new(GZIP_LEVEL),
            ))),
            Compression::Uncompressed => Sink::Plain(blob),
        };
        let mut tar = tar::Builder::new(DigestWriter::new(sink));
        tar.mode(tar::HeaderMode::Deterministic);
        Self {
            tar,
            previous: None,
        }
    }

    /// Append one entry; `content` must be given for files and yield exactly `size` bytes.
    pub fn append(
        &mut self,
        entry: &Entry,
        content: Option<&mut dyn Read>,
    ) -> Result<(), LayerError> {
        if let Some(prev) = &self.previous
            && *prev >= entry.path
        {
            return Err(LayerError::OutOfOrder {
                path: entry.path.to_string(),
                previous: prev.to_string(),
            });
        }
        let io_err = |source| LayerError::Io {
            path: entry.path.to_string(),
            source,
        };
        let mut header = tar::Header::new_ustar();
        header.set_mode(entry.mode & 0o7777);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mtime(entry.mtime);
        let mut name = entry.path.as_str().to_owned();
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        match &entry.kind {
            EntryKind::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                name.push('/');
            }
            EntryKind::File { size } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(*size);
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                if header.set_link_name(target).is_err() {
                    pax.push(("linkpath", target.as_bytes().to_vec()));
                }
            }
            EntryKind::Hardlink { target } => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                if header.set_link_name(target.as_str()).is_err() {
                    pax.push(("linkpath", target.as_str().as_bytes().to_vec()));
                }
            }
        }
        if header.set_path(&name).is_err() {
            // Too long for ustar: a PAX `path` record carries the full name (POSIX.1-2001).
            pax.push(("path", name.as_bytes().to_vec()));
            let short: String = name
                .chars()
                .rev()
                .take(90)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            header
                .set_path(short.trim_start_matches('/'))
                .map_err(io_err)?;
        }
        for (key, value) in [("uid", entry.uid), ("gid", entry.gid)] {
            if value > 0o7777777 {
                pax.push((key, value.to_string().into_bytes()));
            }
        }
        if !pax.is_empty() {
            self.tar
                .append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice())))
                .map_err(io_err)?;
        }
        header.set_cksum();
        match (&entry.kind, content) {
            (EntryKind::File { size }, Some(reader)) => {
                let mut counted = CountingReader {
                    inner: reader,
                    count: 0,
                };
                self.tar
                    .append(&header, (&mut counted).take(*size))
                    .map_err(io_err)?;
                // Both a short read (tar pads it silently) and extra bytes mean the file changed.
                let mut probe = [0u8; 1];
                let extra = counted.inner.read(&mut probe).map_err(io_err)?;
                if counted.count != *size || extra != 0 {
                    return Err(LayerError::SizeChanged {
                        path: entry.path.to_string(),
                        declared: *size,
                        actual: counted.count + extra as u64,
                    });
                }
            }
            (EntryKind::File { size }, None) if *size > 0 => {
                return Err(LayerError::SizeChanged {
                    path: entry.path.to_string(),
                    declared: *size,
                    actual: 0,
                });
            }
            _ => self.tar.append(&header, io::empty()).map_err(io_err)?,
        }
        self.previous = Some(entry.path.clone());
        Ok(())
    }

    /// Finish the tar stream and the compression; returns the output and the layer's digests.
    pub fn finish(self) -> Result<(W, LayerInfo), LayerError> {
        let tar_digest = self.tar.into_inner().map_err(LayerError::Finish)?;
        let (sink, diff_id, uncompressed_size) = tar_digest.finish();
        let blob = match sink {
            Sink::Gzip(g) => g.finish().map_err(LayerError::Finish)?,
            Sink::Plain(p) => p,
        };
        let (out, digest, size) = blob.finish();
        Ok((
            out,
            LayerInfo {
                diff_id: DiffId(diff_id),
                digest: BlobDigest(digest),
                size,
                uncompressed_size,
            },
        ))
    }
}

struct CountingReader<'a> {
    inner: &'a mut dyn Read,
    count: u64,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
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
