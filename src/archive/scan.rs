//! The streaming side of a load: decompress the archive if it is compressed, then copy every
//! regular file of the tar into a staged (invisible) blob of the content store, hashing it as it
//! passes and, for a gzip or zstd file, hashing its decompressed bytes too (the DiffID, should it
//! turn out to be a layer). Files named by digest (`blobs/sha256/<hex>`, `<hex>.json`) are checked
//! against their name at once. Symbolic and hard links (`docker save` 20.10 links a repeated
//! layer to its first copy) are recorded and followed on lookup.
//!
//! Memory stays bounded whatever the archive size: one copy buffer, and per file only its
//! staged blob's path, digest and size.

use std::collections::HashMap;
use std::io::{self, Cursor, Read, Write};

use snapshotter::{Digest, DigestWriter};

use super::ArchiveError;
use crate::store::{StagedBlob, Store};

/// Copy buffer size.
const BUFFER: usize = 256 * 1024;
/// How many links are followed before a lookup gives up (a loop).
const MAX_LINK_HOPS: usize = 16;

pub use super::compression::Compression;

/// One staged file of the archive.
#[derive(Debug)]
pub struct StagedFile {
    /// `None` once published.
    pub blob: Option<StagedBlob>,
    pub digest: Digest,
    pub size: u64,
    /// The first path it was seen at.
    pub path: String,
    pub compression: Compression,
    /// The digest of the decompressed bytes (gzip/zstd), or why they could not be decompressed.
    /// For an uncompressed file, its digest.
    pub uncompressed: Result<Digest, String>,
}

/// Everything the tar held, staged.
#[derive(Debug, Default)]
pub struct Scanned {
    pub files: Vec<StagedFile>,
    by_path: HashMap<String, usize>,
    by_digest: HashMap<Digest, usize>,
    links: HashMap<String, String>,
}

impl Scanned {
    /// The file at `path` (normalized; links followed).
    pub fn at(&self, path: &str) -> Option<usize> {
        let mut p = normalize(path)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(&i) = self.by_path.get(&p) {
                return Some(i);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }

    /// The file with content `digest`, wherever it is.
    pub fn with_digest(&self, digest: &Digest) -> Option<usize> {
        self.by_digest.get(digest).copied()
    }

    /// Whether the archive has a file (or link) at `path`.
    pub fn has(&self, path: &str) -> bool {
        self.at(path).is_some()
    }

    /// Read a small file (a JSON document) into memory, refusing more than `limit` bytes.
    pub fn read_small(
        &self,
        i: usize,
        what: &'static str,
        limit: u64,
    ) -> Result<Vec<u8>, ArchiveError> {
        let f = &self.files[i];
        if f.size > limit {
            return Err(ArchiveError::TooLarge {
                path: f.path.clone(),
                what,
                limit,
            });
        }
        let blob = f.blob.as_ref().expect("read before publishing");
        let mut bytes = Vec::with_capacity(f.size as usize);
        blob.open()?
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(ArchiveError::Read)?;
        Ok(bytes)
    }
}

/// Stage every file of the (possibly compressed) tar `input`.
pub fn scan(store: &Store, input: impl Read) -> Result<Scanned, ArchiveError> {
    let tar_stream = decompress(input)?;
    let mut archive = tar::Archive::new(tar_stream);
    let mut scanned = Scanned::default();
    let mut buf = vec![0u8; BUFFER];
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let raw_path = entry.path().map_err(ArchiveError::Read)?;
        let Some(path) = raw_path.to_str().and_then(normalize) else {
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let file = stage(store, &mut entry, &path, &mut buf)?;
                check_name(&path, &file.digest)?;
                if let Some(&i) = scanned.by_digest.get(&file.digest) {
                    // The same bytes again: keep one staged copy.
                    scanned.by_path.insert(path, i);
                } else {
                    let i = scanned.files.len();
                    scanned.by_digest.insert(file.digest, i);
                    scanned.by_path.insert(path, i);
                    scanned.files.push(file);
                }
            }
            tar::EntryType::Symlink => {
                if let Some(target) = entry.link_name().map_err(ArchiveError::Read)?
                    && let Some(target) = target.to_str()
                {
                    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                    let joined = if target.starts_with('/') {
                        target.to_owned()
                    } else {
                        format!("{parent}/{target}")
                    };
                    if let Some(t) = normalize(&joined) {
                        scanned.links.insert(path, t);
                    }
                }
            }
            tar::EntryType::Link => {
                if let Some(target) = entry.link_name().map_err(ArchiveError::Read)?
                    && let Some(t) = target.to_str().and_then(normalize)
                {
                    scanned.links.insert(path, t);
                }
            }
            _ => {}
        }
    }
    Ok(scanned)
}

/// The tar stream of `input`, decompressed when its magic bytes say it is compressed (as
/// `docker load` accepts gzip, bzip2, xz and zstd archives).
fn decompress<'a>(mut input: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ArchiveError> {
    let mut magic = Vec::with_capacity(6);
    while magic.len() < 6 {
        let mut b = [0u8; 6];
        let want = 6 - magic.len();
        match input.read(&mut b[..want]) {
            Ok(0) => break,
            Ok(n) => magic.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::Read(e)),
        }
    }
    let compression = Compression::detect(&magic);
    let stream = Cursor::new(magic).chain(input);
    Ok(Box::new(
        compression.decoder(stream).map_err(ArchiveError::Read)?,
    ))
}

/// Hashes the decompressed bytes of a compressed file as its compressed bytes are written.
enum DiffHasher {
    Plain,
    Gzip(Box<flate2::write::MultiGzDecoder<DigestWriter<io::Sink>>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, DigestWriter<io::Sink>>>),
    Failed(String),
}

impl DiffHasher {
    fn new(compression: Compression) -> Self {
        match compression {
            Compression::Gzip => DiffHasher::Gzip(Box::new(flate2::write::MultiGzDecoder::new(
                DigestWriter::new(io::sink()),
            ))),
            Compression::Zstd => {
                match zstd::stream::write::Decoder::new(DigestWriter::new(io::sink())) {
                    Ok(d) => DiffHasher::Zstd(Box::new(d)),
                    Err(e) => DiffHasher::Failed(e.to_string()),
                }
            }
            // Layers are gzip, zstd or plain tars; anything else is hashed as it is.
            _ => DiffHasher::Plain,
        }
    }

    fn write(&mut self, data: &[u8]) {
        let r = match self {
            DiffHasher::Gzip(d) => d.write_all(data),
            DiffHasher::Zstd(d) => d.write_all(data),
            DiffHasher::Plain | DiffHasher::Failed(_) => return,
        };
        if let Err(e) = r {
            *self = DiffHasher::Failed(e.to_string());
        }
    }

    /// The DiffID (`None` for a plain file: its digest is its DiffID).
    fn finish(self) -> Option<Result<Digest, String>> {
        match self {
            DiffHasher::Plain => None,
            DiffHasher::Failed(e) => Some(Err(e)),
            DiffHasher::Gzip(d) => {
                Some(d.finish().map(|w| w.finish().1).map_err(|e| e.to_string()))
            }
            DiffHasher::Zstd(mut d) => Some(
                d.flush()
                    .map(|()| d.into_inner().finish().1)
                    .map_err(|e| e.to_string()),
            ),
        }
    }
}

/// Copy one tar entry into a staged blob, hashing it (and its decompressed bytes) as it goes.
fn stage(
    store: &Store,
    entry: &mut impl Read,
    path: &str,
    buf: &mut [u8],
) -> Result<StagedFile, ArchiveError> {
    let mut writer = store.content().writer()?;
    let write_err = |e: io::Error| {
        ArchiveError::Store(crate::store::StoreError::Io(io::Error::new(
            e.kind(),
            format!("staging {path} from the archive: {e}"),
        )))
    };
    // The first bytes decide the compression; gather enough of them (a pipe may give less).
    let mut head = Vec::with_capacity(6);
    let mut eof = false;
    while head.len() < 6 {
        match entry.read(&mut buf[..6 - head.len()]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::Read(e)),
        }
    }
    let compression = Compression::detect(&head);
    let mut diff = DiffHasher::new(compression);
    writer.write_all(&head).map_err(write_err)?;
    diff.write(&head);
    if !eof {
        loop {
            let n = match entry.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ArchiveError::Read(e)),
            };
            writer.write_all(&buf[..n]).map_err(write_err)?;
            diff.write(&buf[..n]);
        }
    }
    let blob = writer.stage()?;
    let info = blob.info();
    Ok(StagedFile {
        blob: Some(blob),
        digest: info.digest,
        size: info.size,
        path: path.to_owned(),
        compression,
        uncompressed: diff.finish().unwrap_or(Ok(info.digest)),
    })
}

/// Files named by their digest must have that digest: `blobs/sha256/<hex>` (an OCI layout) and
/// `<hex>.json` (a docker-archive's config).
fn check_name(path: &str, actual: &Digest) -> Result<(), ArchiveError> {
    let named = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json").filter(|p| !p.contains('/')));
    if let Some(hex) = named
        && let Ok(expected) = Digest::from_hex(hex)
        && expected != *actual
    {
        return Err(ArchiveError::CorruptEntry {
            path: path.to_owned(),
            actual: *actual,
        });
    }
    Ok(())
}

/// An archive path in canonical form: no leading `./` or `/`, no `.` or empty components, `..`
/// applied; `None` for a path that leaves the archive root or is empty.
pub fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(
            normalize("./blobs/sha256/ab").as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(
            normalize("/manifest.json").as_deref(),
            Some("manifest.json")
        );
        assert_eq!(normalize("a/../b/./c").as_deref(), Some("b/c"));
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("./"), None);
    }

    #[test]
    fn names_that_are_digests_are_checked() {
        let d = Digest::of(b"x");
        let other = Digest::of(b"y");
        check_name(&format!("blobs/sha256/{}", d.hex()), &d).unwrap();
        check_name(&format!("{}.json", d.hex()), &d).unwrap();
        check_name("abc/layer.tar", &d).unwrap();
        check_name("manifest.json", &d).unwrap();
        assert!(matches!(
            check_name(&format!("blobs/sha256/{}", other.hex()), &d),
            Err(ArchiveError::CorruptEntry { .. })
        ));
        assert!(matches!(
            check_name(&format!("{}.json", other.hex()), &d),
            Err(ArchiveError::CorruptEntry { .. })
        ));
    }

    fn tar_of(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, *data).unwrap();
        }
        for (p, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, p, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn scan_stages_files_hashes_diff_ids_and_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = b"pretend this is a tar".repeat(1000);
        let gz = gzip(&layer);
        let zst = zstd::encode_all(&layer[..], 3).unwrap();
        let tar = tar_of(
            &[
                ("a/layer.tar", &layer),
                ("b.tar.gz", &gz),
                ("c.tar.zst", &zst),
                ("./dup", &layer),
            ],
            &[("d/layer.tar", "../a/layer.tar")],
        );
        // The archive itself gzipped, as `docker load` accepts it.
        let scanned = scan(&store, &gzip(&tar)[..]).unwrap();
        let plain = scanned.at("a/layer.tar").unwrap();
        assert_eq!(scanned.files[plain].digest, Digest::of(&layer));
        assert_eq!(scanned.files[plain].uncompressed, Ok(Digest::of(&layer)));
        assert_eq!(scanned.at("dup"), Some(plain));
        assert_eq!(scanned.at("d/layer.tar"), Some(plain));
        let g = &scanned.files[scanned.at("b.tar.gz").unwrap()];
        assert_eq!(g.compression, Compression::Gzip);
        assert_eq!(g.digest, Digest::of(&gz));
        assert_eq!(g.uncompressed, Ok(Digest::of(&layer)));
        let z = &scanned.files[scanned.at("c.tar.zst").unwrap()];
        assert_eq!(z.compression, Compression::Zstd);
        assert_eq!(z.uncompressed, Ok(Digest::of(&layer)));
        assert_eq!(scanned.files.len(), 3);
        // Nothing is visible in the store; dropping the scan removes the staged files.
        assert!(!store.content().contains(&Digest::of(&layer)));
        drop(scanned);
        assert_eq!(
            fs_err::read_dir(dir.path().join("ingest")).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_corrupt_gzip_file_has_no_diff_id_and_a_misnamed_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut gz = gzip(&b"layer".repeat(1000));
        let mid = gz.len() / 2;
        gz[mid] ^= 0xff;
        let scanned = scan(&store, &tar_of(&[("l.tar", &gz)], &[])[..]).unwrap();
        let f = &scanned.files[scanned.at("l.tar").unwrap()];
        assert!(f.uncompressed != Ok(Digest::of(&b"layer".repeat(1000))));
        drop(scanned);

        let wrong = format!("blobs/sha256/{}", Digest::of(b"other").hex());
        let err = scan(&store, &tar_of(&[(&wrong, b"content")], &[])[..]).unwrap_err();
        assert!(matches!(err, ArchiveError::CorruptEntry { .. }), "{err}");
        assert_eq!(
            fs_err::read_dir(dir.path().join("ingest")).unwrap().count(),
            0
        );
    }
}
