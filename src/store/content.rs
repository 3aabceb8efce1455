//! The content store: immutable blobs addressed by digest at `blobs/sha256/<hex>`.
//!
//! A blob is written to a temp file under `ingest/`, hashed and counted as it streams, fsynced,
//! checked against the expected digest and size, renamed into place, and the directory fsynced
//! (containerd's `content/local/writer.go` does the same). A blob is therefore never visible
//! half-written or with content that does not match its name. Ingest files left by a killed
//! process are swept when the store opens.
//!
//! Not responsible for: knowing what a blob means (manifests, layers), or when it may be deleted.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use snapshotter::{Digest, DigestWriter};

use super::layout::Layout;
use super::{Result, StoreError};

/// What a committed blob must be, when the caller knows it (e.g. from a descriptor).
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub digest: Digest,
    pub size: Option<u64>,
}

/// A committed blob's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

/// The content store of one store root.
#[derive(Debug, Clone)]
pub struct ContentStore {
    layout: Layout,
}

impl ContentStore {
    /// Open (creating directories as needed) and sweep ingest files of dead processes.
    pub fn open(layout: &Layout) -> Result<Self> {
        fs_err::create_dir_all(layout.blobs_dir())?;
        fs_err::create_dir_all(layout.ingest_dir())?;
        let store = Self {
            layout: layout.clone(),
        };
        store.sweep_ingest()?;
        Ok(store)
    }

    /// Whether the blob is present.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.layout.blob(digest).is_file()
    }

    /// Size of a present blob.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let path = self.layout.blob(digest);
        match fs_err::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobNotFound(*digest)),
            Err(e) => Err(e.into()),
        }
    }

    /// Path of a present blob (for streaming readers that need a `File`).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.layout.blob(digest)
    }

    /// Open a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<fs_err::File> {
        let path = self.layout.blob(digest);
        match fs_err::File::open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::BlobNotFound(*digest)),
            Err(e) => Err(e.into()),
        }
    }

    /// Read a whole blob, verifying its digest (used for small JSON blobs).
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?.read_to_end(&mut bytes)?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(StoreError::Corrupt {
                digest: *digest,
                actual,
            });
        }
        Ok(bytes)
    }

    /// Write a whole in-memory blob (nothing is written when it is there already: a blob's
    /// name is its content's digest).
    pub fn put(&self, bytes: &[u8]) -> Result<BlobInfo> {
        let digest = Digest::of(bytes);
        if self.contains(&digest) {
            return Ok(BlobInfo {
                digest,
                size: bytes.len() as u64,
            });
        }
        let mut writer = self.writer()?;
        writer.write_all(bytes)?;
        writer.commit(None)
    }

    /// Start writing a blob; it is hashed as it streams and checked when committed.
    pub fn writer(&self) -> Result<BlobWriter> {
        self.writer_with(|out| Sink::Hashing(DigestWriter::new(out)))
    }

    /// Start writing a blob whose digest the caller computes over exactly the bytes it writes
    /// (a layer encoder, which hashes its output in the same pass as it compresses it, and
    /// takes the digest states of members it copies from a blob of this store): nothing is
    /// hashed again here. [`BlobWriter::commit`] then needs the digest and size, and checks
    /// the size.
    pub fn writer_vouched(&self) -> Result<BlobWriter> {
        self.writer_with(|out| Sink::Vouched { out, written: 0 })
    }

    fn writer_with(&self, sink: impl FnOnce(BufWriter<File>) -> Sink) -> Result<BlobWriter> {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .suffix(".ingest")
            .tempfile_in(self.layout.ingest_dir())
            .map_err(|e| {
                StoreError::Io(io::Error::new(
                    e.kind(),
                    format!(
                        "creating ingest file in {}: {e}",
                        self.layout.ingest_dir().display()
                    ),
                ))
            })?;
        let (file, path) = tmp.keep().map_err(|e| StoreError::Io(e.error))?;
        Ok(BlobWriter {
            inner: Some(sink(BufWriter::with_capacity(256 * 1024, file))),
            tmp_path: path,
            layout: self.layout.clone(),
        })
    }

    /// Remove a blob (and the member index kept for re-exporting it, see `solver::reuse`).
    /// Missing blobs are not an error.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        let index = self
            .layout
            .layers_dir()
            .join("indexes")
            .join(format!("{}.json", digest.hex()));
        let _ = fs_err::remove_file(index);
        match fs_err::remove_file(self.layout.blob(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn sweep_ingest(&self) -> Result<()> {
        for entry in fs_err::read_dir(self.layout.ingest_dir())? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if !process_alive(pid) {
                // A writer that died mid-ingest: its temp file never became a blob.
                let _ = fs_err::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

fn process_alive(pid: i32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Where a blob's bytes go: its temp file, hashed on the way or not.
enum Sink {
    Hashing(DigestWriter<BufWriter<File>>),
    /// The writer's caller vouches for the digest ([`ContentStore::writer_vouched`]).
    Vouched {
        out: BufWriter<File>,
        written: u64,
    },
}

impl Sink {
    fn written(&self) -> u64 {
        match self {
            Sink::Hashing(w) => w.written(),
            Sink::Vouched { written, .. } => *written,
        }
    }

    /// The buffered file, the digest (when hashed here) and the size.
    fn finish(self) -> (BufWriter<File>, Option<Digest>, u64) {
        match self {
            Sink::Hashing(w) => {
                let (out, digest, size) = w.finish();
                (out, Some(digest), size)
            }
            Sink::Vouched { out, written } => (out, None, written),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Hashing(w) => w.write(buf),
            Sink::Vouched { out, written } => {
                let n = out.write(buf)?;
                *written += n as u64;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Hashing(w) => w.flush(),
            Sink::Vouched { out, .. } => out.flush(),
        }
    }
}

/// A blob being written. Dropping it without [`BlobWriter::commit`] removes the temp file.
pub struct BlobWriter {
    inner: Option<Sink>,
    tmp_path: PathBuf,
    layout: Layout,
}

/// The error of a vouched blob committed without the digest its writer vouches for.
fn unvouched() -> StoreError {
    StoreError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        "a blob written unhashed needs the digest and size its writer computed",
    ))
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, Sink::written)
    }

    /// Finish writing without publishing: the bytes are flushed and fsynced to a temp file whose
    /// digest and size are then known. The blob becomes visible only through
    /// [`StagedBlob::publish`]; dropping the [`StagedBlob`] removes the temp file. For imports
    /// that must verify many blobs against each other before any of them may be stored.
    pub fn stage(mut self) -> Result<StagedBlob> {
        let inner = self.inner.take().expect("stage consumes the writer");
        let staged = (|| {
            let (buf, digest, size) = inner.finish();
            let digest = digest.ok_or_else(unvouched)?;
            let file = buf
                .into_inner()
                .map_err(|e| StoreError::Io(e.into_error()))?;
            file.sync_all()?;
            Ok(BlobInfo { digest, size })
        })();
        match staged {
            Ok(info) => Ok(StagedBlob {
                info,
                tmp_path: Some(std::mem::take(&mut self.tmp_path)),
                layout: self.layout.clone(),
            }),
            Err(e) => {
                let _ = fs_err::remove_file(&self.tmp_path);
                Err(e)
            }
        }
    }

    /// Verify and publish the blob. With `expected`, a digest or size mismatch is an error and
    /// nothing becomes visible (the temp file is removed on every error path).
    pub fn commit(mut self, expected: Option<Expected>) -> Result<BlobInfo> {
        let inner = self.inner.take().expect("commit consumes the writer");
        let result = self.publish(inner, expected);
        if result.is_err() {
            let _ = fs_err::remove_file(&self.tmp_path);
        }
        result
    }

    fn publish(&self, inner: Sink, expected: Option<Expected>) -> Result<BlobInfo> {
        let (buf, hashed, size) = inner.finish();
        let digest = match (hashed, expected) {
            (Some(d), _) => d,
            (
                None,
                Some(Expected {
                    digest,
                    size: Some(_),
                }),
            ) => digest,
            (None, _) => return Err(unvouched()),
        };
        let file = buf
            .into_inner()
            .map_err(|e| StoreError::Io(e.into_error()))?;
        if let Some(exp) = expected {
            if exp.digest != digest {
                return Err(StoreError::DigestMismatch {
                    expected: exp.digest,
                    actual: digest,
                });
            }
            if let Some(want) = exp.size
                && want != size
            {
                return Err(StoreError::SizeMismatch {
                    digest,
                    expected: want,
                    actual: size,
                });
            }
        }
        file.sync_all().map_err(|e| {
            StoreError::Io(io::Error::new(
                e.kind(),
                format!("fsync {}: {e}", self.tmp_path.display()),
            ))
        })?;
        drop(file);
        let dest = self.layout.blob(&digest);
        if dest.exists() {
            // Content-addressed: an existing blob with this name already has these bytes.
            let _ = fs_err::remove_file(&self.tmp_path);
        } else {
            fs_err::rename(&self.tmp_path, &dest)?;
            sync_dir(&self.layout.blobs_dir())?;
        }
        Ok(BlobInfo { digest, size })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.as_mut().expect("writer is live").write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().expect("writer is live").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.inner.is_some() {
            let _ = fs_err::remove_file(&self.tmp_path);
        }
    }
}

/// A blob written and fsynced to a temp file under `ingest/`, not yet visible in the store (see
/// [`BlobWriter::stage`]). Dropped unpublished, its temp file is removed.
#[derive(Debug)]
pub struct StagedBlob {
    info: BlobInfo,
    tmp_path: Option<PathBuf>,
    layout: Layout,
}

impl StagedBlob {
    /// Digest and size of the staged bytes.
    pub fn info(&self) -> BlobInfo {
        self.info
    }

    /// Open the staged bytes for reading (e.g. to parse a small JSON document before deciding).
    pub fn open(&self) -> Result<fs_err::File> {
        let path = self.tmp_path.as_ref().expect("staged blob is live");
        Ok(fs_err::File::open(path)?)
    }

    /// Make the blob visible under its digest (a blob already present is kept as it is).
    pub fn publish(mut self) -> Result<BlobInfo> {
        let tmp = self.tmp_path.take().expect("staged blob is live");
        let dest = self.layout.blob(&self.info.digest);
        if dest.exists() {
            let _ = fs_err::remove_file(&tmp);
        } else if let Err(e) = fs_err::rename(&tmp, &dest) {
            let _ = fs_err::remove_file(&tmp);
            return Err(e.into());
        } else {
            sync_dir(&self.layout.blobs_dir())?;
        }
        Ok(self.info)
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp_path {
            let _ = fs_err::remove_file(tmp);
        }
    }
}

/// fsync a directory so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let d = fs_err::File::open(dir)?;
    d.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&Layout::new(dir.path())).unwrap();
        (dir, store)
    }

    #[test]
    fn a_vouched_blob_needs_its_digest_and_size_and_is_not_hashed_again() {
        let (_d, s) = store();
        let digest = Digest::of(b"layer");
        let mut w = s.writer_vouched().unwrap();
        w.write_all(b"layer").unwrap();
        assert!(w.commit(None).is_err());
        let mut w = s.writer_vouched().unwrap();
        w.write_all(b"layer").unwrap();
        let wrong_size = w.commit(Some(Expected {
            digest,
            size: Some(4),
        }));
        assert!(matches!(wrong_size, Err(StoreError::SizeMismatch { .. })));
        assert!(!s.contains(&digest));
        let mut w = s.writer_vouched().unwrap();
        w.write_all(b"layer").unwrap();
        let info = w
            .commit(Some(Expected {
                digest,
                size: Some(5),
            }))
            .unwrap();
        assert_eq!(info, BlobInfo { digest, size: 5 });
        assert_eq!(s.read(&digest).unwrap(), b"layer");
        let mut w = s.writer_vouched().unwrap();
        w.write_all(b"x").unwrap();
        assert!(
            w.stage().is_err(),
            "a vouched blob has no digest to stage under"
        );
        assert_eq!(fs_err::read_dir(s.layout.ingest_dir()).unwrap().count(), 0);
    }

    #[test]
    fn put_then_read_round_trips() {
        let (_d, s) = store();
        let info = s.put(b"hello").unwrap();
        assert_eq!(info.digest, Digest::of(b"hello"));
        assert_eq!(info.size, 5);
        assert!(s.contains(&info.digest));
        assert_eq!(s.read(&info.digest).unwrap(), b"hello");
    }

    #[test]
    fn mismatched_digest_leaves_nothing() {
        let (d, s) = store();
        let mut w = s.writer().unwrap();
        w.write_all(b"actual").unwrap();
        let wrong = Digest::of(b"expected");
        let err = w
            .commit(Some(Expected {
                digest: wrong,
                size: None,
            }))
            .unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(!s.contains(&wrong));
        assert!(!s.contains(&Digest::of(b"actual")));
        assert_eq!(
            fs_err::read_dir(d.path().join("ingest")).unwrap().count(),
            0
        );
    }

    #[test]
    fn mismatched_size_leaves_nothing() {
        let (_d, s) = store();
        let mut w = s.writer().unwrap();
        w.write_all(b"abc").unwrap();
        let err = w
            .commit(Some(Expected {
                digest: Digest::of(b"abc"),
                size: Some(4),
            }))
            .unwrap_err();
        assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
        assert!(!s.contains(&Digest::of(b"abc")));
    }

    #[test]
    fn dropped_writer_removes_its_temp_file() {
        let (d, s) = store();
        let mut w = s.writer().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(
            fs_err::read_dir(d.path().join("ingest")).unwrap().count(),
            0
        );
    }

    #[test]
    fn staged_blob_is_invisible_until_published() {
        let (d, s) = store();
        let mut w = s.writer().unwrap();
        w.write_all(b"staged").unwrap();
        let staged = w.stage().unwrap();
        assert_eq!(staged.info().digest, Digest::of(b"staged"));
        assert!(!s.contains(&staged.info().digest));
        let mut back = Vec::new();
        staged.open().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, b"staged");
        let info = staged.publish().unwrap();
        assert_eq!(s.read(&info.digest).unwrap(), b"staged");

        let mut w = s.writer().unwrap();
        w.write_all(b"dropped").unwrap();
        drop(w.stage().unwrap());
        assert!(!s.contains(&Digest::of(b"dropped")));
        assert_eq!(
            fs_err::read_dir(d.path().join("ingest")).unwrap().count(),
            0
        );
    }

    #[test]
    fn stale_ingest_of_dead_process_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        fs_err::create_dir_all(layout.ingest_dir()).unwrap();
        // PIDs are below 2^22 on Linux, so this one cannot be alive.
        let stale = layout.ingest_dir().join("99999999-abc.ingest");
        fs_err::write(&stale, b"x").unwrap();
        ContentStore::open(&layout).unwrap();
        assert!(!stale.exists());
    }

    #[test]
    fn corrupt_blob_is_detected_on_read() {
        let (d, s) = store();
        let info = s.put(b"good").unwrap();
        fs_err::write(
            d.path().join("blobs/sha256").join(info.digest.hex()),
            b"evil",
        )
        .unwrap();
        assert!(matches!(
            s.read(&info.digest),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
