//! The byte side of an apply: detect the blob's compression from its magic bytes, decompress,
//! and hash both the compressed bytes (blob digest) and the tar stream (DiffID) as they flow, with
//! a byte budget that bounds what the tar parser may buffer for one entry's metadata.
//!
//! Not responsible for: parsing tar entries or touching the filesystem.

use std::cell::Cell;
use std::io::{self, BufReader, Chain, Cursor, Read};
use std::rc::Rc;

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, DigestReader};

/// How a layer blob was compressed, as detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobCompression {
    Gzip,
    Zstd,
    Uncompressed,
}

/// What the magic bytes say, including formats we recognise only to refuse them by name.
pub(super) enum Magic {
    Supported(BlobCompression),
    Unsupported(&'static str),
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";
const MAGIC_LEN: usize = 6;

/// The largest zstd window accepted (2^27 = 128 MiB, zstd's own default for decoding): it bounds
/// the decoder's memory whatever the frame header asks for.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

pub(super) fn detect(prefix: &[u8]) -> Magic {
    if prefix.starts_with(GZIP_MAGIC) {
        Magic::Supported(BlobCompression::Gzip)
    } else if prefix.starts_with(ZSTD_MAGIC) {
        Magic::Supported(BlobCompression::Zstd)
    } else if prefix.starts_with(XZ_MAGIC) {
        Magic::Unsupported("xz")
    } else if prefix.starts_with(BZIP2_MAGIC) {
        Magic::Unsupported("bzip2")
    } else {
        // Anything else is handed to the tar parser, which refuses what is not a tar stream.
        Magic::Supported(BlobCompression::Uncompressed)
    }
}

type Raw<R> = Chain<Cursor<Vec<u8>>, DigestReader<R>>;

/// Reads the first bytes of the blob (through the blob-digest reader) to detect its format.
pub(super) fn sniff<R: Read>(blob: R) -> io::Result<(Magic, Raw<R>)> {
    let mut raw = DigestReader::new(blob);
    let mut prefix = vec![0u8; MAGIC_LEN];
    let mut filled = 0;
    while filled < MAGIC_LEN {
        match raw.read(&mut prefix[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    prefix.truncate(filled);
    Ok((detect(&prefix), Cursor::new(prefix).chain(raw)))
}

/// The decompressing reader over the raw blob.
pub(super) enum Decoder<R: Read> {
    Gzip(Box<MultiGzDecoder<BufReader<Raw<R>>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<Raw<R>>>>),
    Plain(Raw<R>),
}

impl<R: Read> Decoder<R> {
    pub(super) fn new(compression: BlobCompression, raw: Raw<R>) -> io::Result<Self> {
        Ok(match compression {
            BlobCompression::Gzip => Self::Gzip(Box::new(MultiGzDecoder::new(BufReader::new(raw)))),
            BlobCompression::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::new(raw)?;
                decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Self::Zstd(Box::new(decoder))
            }
            BlobCompression::Uncompressed => Self::Plain(raw),
        })
    }

    /// Drain the compressed side to its end (bytes after the last frame are still part of the
    /// blob and of its digest) and return the blob digest and size.
    pub(super) fn finish(self) -> io::Result<(Digest, u64)> {
        let chain = match self {
            Self::Gzip(d) => d.into_inner().into_inner(),
            Self::Zstd(d) => d.finish().into_inner(),
            Self::Plain(p) => p,
        };
        let (_, mut raw) = chain.into_inner();
        io::copy(&mut raw, &mut io::sink())?;
        Ok(raw.finish())
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(d) => d.read(buf),
            Self::Zstd(d) => d.read(buf),
            Self::Plain(p) => p.read(buf),
        }
    }
}

/// Which side of an entry the tar parser is reading: while it looks for the next header (and
/// buffers PAX records and GNU long names in memory) its reads are bounded by a small budget;
/// while we copy an entry's content they are not (content goes to disk, not memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Header,
    Content,
}

/// Shared between the [`Budgeted`] reader (owned by the tar parser) and the unpack loop.
#[derive(Debug)]
pub(super) struct Budget {
    phase: Cell<Phase>,
    header_bytes: Cell<u64>,
    total: Cell<u64>,
    max_header_bytes: u64,
    max_total: u64,
    exceeded: Cell<Option<super::Limit>>,
}

impl Budget {
    pub(super) fn new(max_header_bytes: u64, max_total: u64) -> Rc<Self> {
        Rc::new(Self {
            phase: Cell::new(Phase::Header),
            header_bytes: Cell::new(0),
            total: Cell::new(0),
            max_header_bytes,
            max_total,
            exceeded: Cell::new(None),
        })
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        self.phase.set(phase);
        self.header_bytes.set(0);
    }

    /// Uncompressed bytes read so far.
    pub(super) fn total(&self) -> u64 {
        self.total.get()
    }

    /// The limit that made a read fail, if that is why it failed.
    pub(super) fn exceeded(&self) -> Option<super::Limit> {
        self.exceeded.get()
    }
}

/// The uncompressed tar stream: hashed (DiffID) and bounded by a [`Budget`].
pub(super) struct Budgeted<R: Read> {
    inner: Hashing<Decoder<R>>,
    budget: Rc<Budget>,
}

impl<R: Read> Budgeted<R> {
    pub(super) fn new(decoder: Decoder<R>, budget: Rc<Budget>) -> Self {
        Self {
            inner: Hashing::new(decoder),
            budget,
        }
    }

    /// Read the tar stream to its end (padding after the end-of-archive blocks is part of the
    /// DiffID), then the blob; returns `(diff_id, uncompressed size, blob digest, blob size)`.
    pub(super) fn finish(mut self) -> io::Result<(Digest, u64, Digest, u64)> {
        self.budget.set_phase(Phase::Content);
        io::copy(&mut self, &mut io::sink())?;
        let (decoder, diff_id, uncompressed) = self.inner.finish();
        let (digest, compressed) = decoder.finish()?;
        Ok((diff_id, uncompressed, digest, compressed))
    }
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let budget = &self.budget;
        let mut want = buf.len() as u64;
        if budget.phase.get() == Phase::Header {
            let left = budget
                .max_header_bytes
                .saturating_sub(budget.header_bytes.get());
            if left == 0 && !buf.is_empty() {
                budget.exceeded.set(Some(super::Limit::EntryMetadata));
                return Err(io::Error::other("entry metadata exceeds the limit"));
            }
            want = want.min(left);
        }
        let left_total = budget.max_total.saturating_sub(budget.total.get());
        if left_total == 0 && !buf.is_empty() {
            // Allow reading exactly up to the limit; one byte more is refused below.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            budget.exceeded.set(Some(super::Limit::UncompressedSize));
            return Err(io::Error::other("uncompressed size exceeds the limit"));
        }
        want = want.min(left_total);
        let n = self.inner.read(&mut buf[..want as usize])?;
        budget.total.set(budget.total.get() + n as u64);
        if budget.phase.get() == Phase::Header {
            budget
                .header_bytes
                .set(budget.header_bytes.get() + n as u64);
        }
        Ok(n)
    }
}

/// Like [`DigestReader`], but gives the inner reader back (the decoder must be drained after the
/// tar stream has been hashed).
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn finish(self) -> (R, Digest, u64) {
        let hex = hex::encode(self.hasher.finalize());
        let digest = Digest::from_hex(&hex).expect("sha256 output is 64 lowercase hex digits");
        (self.inner, digest, self.count)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic() {
        assert!(matches!(
            detect(&[0x1f, 0x8b, 8, 0]),
            Magic::Supported(BlobCompression::Gzip)
        ));
        assert!(matches!(
            detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Magic::Supported(BlobCompression::Zstd)
        ));
        assert!(matches!(detect(XZ_MAGIC), Magic::Unsupported("xz")));
        assert!(matches!(detect(b"BZh91AY"), Magic::Unsupported("bzip2")));
        assert!(matches!(
            detect(b"etc/"),
            Magic::Supported(BlobCompression::Uncompressed)
        ));
        assert!(matches!(
            detect(b""),
            Magic::Supported(BlobCompression::Uncompressed)
        ));
    }

    #[test]
    fn header_budget_bounds_reads_until_content_phase() {
        let (_, raw) = sniff(&[7u8; 100][..]).unwrap();
        let decoder = Decoder::new(BlobCompression::Uncompressed, raw).unwrap();
        let budget = Budget::new(10, 1000);
        let mut r = Budgeted::new(decoder, budget.clone());
        let mut buf = [0u8; 64];
        r.read_exact(&mut buf[..10]).unwrap();
        assert!(r.read(&mut buf).is_err());
        assert_eq!(budget.exceeded(), Some(super::super::Limit::EntryMetadata));
        budget.set_phase(Phase::Content);
        r.read_exact(&mut buf).unwrap();
        let (diff_id, size, digest, compressed) = r.finish().unwrap();
        assert_eq!(size, 100);
        assert_eq!(compressed, 100);
        assert_eq!(diff_id, Digest::of(&[7u8; 100]));
        assert_eq!(digest, diff_id);
    }

    #[test]
    fn total_budget_allows_exactly_the_limit() {
        let (_, raw) = sniff(&[1u8; 50][..]).unwrap();
        let decoder = Decoder::new(BlobCompression::Uncompressed, raw).unwrap();
        let budget = Budget::new(u64::MAX, 50);
        budget.set_phase(Phase::Content);
        let mut r = Budgeted::new(decoder, budget.clone());
        assert_eq!(io::copy(&mut r, &mut io::sink()).unwrap(), 50);

        let (_, raw) = sniff(&[1u8; 51][..]).unwrap();
        let decoder = Decoder::new(BlobCompression::Uncompressed, raw).unwrap();
        let budget = Budget::new(u64::MAX, 50);
        budget.set_phase(Phase::Content);
        let mut r = Budgeted::new(decoder, budget.clone());
        assert!(io::copy(&mut r, &mut io::sink()).is_err());
        assert_eq!(
            budget.exceeded(),
            Some(super::super::Limit::UncompressedSize)
        );
    }
}
