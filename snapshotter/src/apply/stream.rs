//! The byte side of an apply: detect the blob's compression from its magic bytes, decompress,
//! and hash both the compressed bytes (blob digest) and the tar stream (DiffID) as they flow, with
//! a byte budget that bounds what the tar parser may buffer for one entry's metadata. Each side
//! is hashed only when asked: an uncompressed blob's tar stream is the blob itself, and a blob
//! the caller vouches for is not hashed at all.
//!
//! Not responsible for: parsing tar entries or touching the filesystem.

use std::cell::Cell;
use std::io::{self, BufReader, Chain, Cursor, Read};
use std::rc::Rc;
use std::sync::mpsc;

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

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

type Raw<R> = Chain<Cursor<Vec<u8>>, Hashing<R>>;

/// Reads the first bytes of the blob (through the blob-digest reader, hashing when `hash`) to
/// detect its format.
pub(super) fn sniff<R: Read>(blob: R, hash: bool) -> io::Result<(Magic, Raw<R>)> {
    let mut raw = Hashing::new(blob, hash);
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
    /// blob and of its digest) and return the blob digest (when hashed) and size.
    pub(super) fn finish(self) -> io::Result<(Option<Digest>, u64)> {
        let chain = match self {
            Self::Gzip(d) => d.into_inner().into_inner(),
            Self::Zstd(d) => d.finish().into_inner(),
            Self::Plain(p) => p,
        };
        let (_, mut raw) = chain.into_inner();
        io::copy(&mut raw, &mut io::sink())?;
        let (_, digest, size) = raw.finish();
        Ok((digest, size))
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

/// What the decompressing side reports once the blob is consumed:
/// `(diff_id, uncompressed size, blob digest, blob size)`; a digest is `None` when its side was
/// not hashed.
pub(super) type StreamDigests = (Option<Digest>, u64, Option<Digest>, u64);

/// Decompressed tar bytes are handed over in chunks of this size.
const CHUNK: usize = 256 * 1024;
/// Chunks decompressed ahead of the tar parser, at most (bounds memory to `DEPTH × CHUNK`).
const DEPTH: usize = 8;

/// Run `consume` on the tar stream of `decoder`, decompressed and (when `hash_tar`) hashed on a
/// helper thread.
///
/// Decompression and both SHA-256s (blob digest, DiffID) take about a third of an apply's CPU
/// time and the filesystem calls the rest; on two cores they overlap, as `tar -xzf` overlaps
/// with its `gzip` child. The helper runs at most [`DEPTH`] chunks ahead and stops as soon as
/// the consumer drops the [`Pipe`] (an error, a limit), so a decompression bomb costs no more
/// than it did inline. The consumer must read the stream to its end on success (the bytes
/// after the end-of-archive blocks are part of the DiffID): [`Budgeted::drain`] does.
///
/// Returns what `consume` returned and, when it succeeded, the digests.
pub(super) fn pipelined<R, T, E>(
    decoder: Decoder<R>,
    hash_tar: bool,
    consume: impl FnOnce(Pipe) -> Result<T, E>,
) -> Result<(T, io::Result<StreamDigests>), E>
where
    R: Read + Send,
{
    std::thread::scope(|scope| {
        let (chunks, received) = mpsc::sync_channel(DEPTH);
        let (recycle, recycled) = mpsc::channel();
        let producer = std::thread::Builder::new()
            .name("kiln-apply-inflate".to_owned())
            .spawn_scoped(scope, move || {
                produce(decoder, hash_tar, &chunks, &recycled)
            });
        let producer = match producer {
            Ok(handle) => handle,
            // No thread: the consumer still gets the stream, as an error on its first read.
            Err(e) => {
                let (failed, received) = mpsc::sync_channel(1);
                let _ = failed.send(Err(e));
                drop(failed);
                let value = consume(Pipe::new(received, recycle))?;
                return Ok((
                    value,
                    Err(io::Error::other("the decompression thread did not start")),
                ));
            }
        };
        let value = consume(Pipe::new(received, recycle));
        // On error the pipe is gone: the producer's next send fails and it returns.
        let digests = producer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((value?, digests))
    })
}

/// The helper thread: decompress, hash, send chunks; at the end drain the blob and return the
/// digests. A read error is sent to the consumer (it reports it with its stream offset).
fn produce<R: Read>(
    decoder: Decoder<R>,
    hash_tar: bool,
    chunks: &mpsc::SyncSender<io::Result<Vec<u8>>>,
    recycled: &mpsc::Receiver<Vec<u8>>,
) -> io::Result<StreamDigests> {
    let mut tar = Hashing::new(decoder, hash_tar);
    loop {
        let mut buf = recycled.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        // Fill the chunk (gzip members and small reads would otherwise send tiny chunks).
        while filled < CHUNK {
            match tar.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let kind = e.kind();
                    if filled > 0 {
                        buf.truncate(filled);
                        let _ = chunks.send(Ok(buf));
                    }
                    let _ = chunks.send(Err(e));
                    return Err(io::Error::new(kind, "reading the layer stream failed"));
                }
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        if chunks.send(Ok(buf)).is_err() {
            return Err(io::Error::other("the tar reader stopped"));
        }
    }
    let (decoder, diff_id, uncompressed) = tar.finish();
    let (digest, compressed) = decoder.finish()?;
    Ok((diff_id, uncompressed, digest, compressed))
}

/// The consumer's end of [`pipelined`]: a `Read` over the chunks, giving buffers back.
pub(super) struct Pipe {
    chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    recycle: mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    failed: bool,
}

impl Pipe {
    fn new(chunks: mpsc::Receiver<io::Result<Vec<u8>>>, recycle: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            chunks,
            recycle,
            current: Vec::new(),
            pos: 0,
            failed: false,
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.current.len() {
            if self.failed {
                return Err(io::Error::other("the layer stream failed earlier"));
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    let done = std::mem::replace(&mut self.current, chunk);
                    // The producer may be gone (end of stream): then the buffer is just freed.
                    let _ = self.recycle.send(done);
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.failed = true;
                    return Err(e);
                }
                // The producer finished and dropped its sender: end of the stream.
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The uncompressed tar stream, bounded by a [`Budget`].
pub(super) struct Budgeted<R: Read> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Budgeted<R> {
    pub(super) fn new(inner: R, budget: Rc<Budget>) -> Self {
        Self { inner, budget }
    }

    /// Read the tar stream to its end (padding after the end-of-archive blocks is part of the
    /// DiffID), still under the total budget.
    pub(super) fn drain(&mut self) -> io::Result<()> {
        self.budget.set_phase(Phase::Content);
        io::copy(self, &mut io::sink())?;
        Ok(())
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

/// Like [`crate::DigestReader`], but gives the inner reader back (the decoder must be drained
/// after the tar stream has been hashed) and hashes only when asked (it always counts).
pub(super) struct Hashing<R> {
    inner: R,
    hasher: Option<Sha256>,
    count: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R, hash: bool) -> Self {
        Self {
            inner,
            hasher: hash.then(Sha256::new),
            count: 0,
        }
    }

    fn finish(self) -> (R, Option<Digest>, u64) {
        let digest = self.hasher.map(|h| {
            let hex = hex::encode(h.finalize());
            Digest::from_hex(&hex).expect("sha256 output is 64 lowercase hex digits")
        });
        (self.inner, digest, self.count)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
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
        let (_, raw) = sniff(&[7u8; 100][..], true).unwrap();
        let decoder = Decoder::new(BlobCompression::Uncompressed, raw).unwrap();
        let budget = Budget::new(10, 1000);
        let (read, digests) = pipelined(decoder, true, |pipe| {
            let mut r = Budgeted::new(pipe, budget.clone());
            let mut buf = [0u8; 64];
            r.read_exact(&mut buf[..10])?;
            assert!(r.read(&mut buf).is_err());
            assert_eq!(budget.exceeded(), Some(super::super::Limit::EntryMetadata));
            budget.set_phase(Phase::Content);
            r.read_exact(&mut buf)?;
            r.drain()?;
            Ok::<_, io::Error>(budget.total())
        })
        .unwrap();
        let (diff_id, size, digest, compressed) = digests.unwrap();
        assert_eq!(read, 100);
        assert_eq!(size, 100);
        assert_eq!(compressed, 100);
        assert_eq!(diff_id, Some(Digest::of(&[7u8; 100])));
        assert_eq!(digest, diff_id);
    }

    #[test]
    fn total_budget_allows_exactly_the_limit() {
        let budget = Budget::new(u64::MAX, 50);
        budget.set_phase(Phase::Content);
        let mut r = Budgeted::new(&[1u8; 50][..], budget.clone());
        assert_eq!(io::copy(&mut r, &mut io::sink()).unwrap(), 50);

        let budget = Budget::new(u64::MAX, 50);
        budget.set_phase(Phase::Content);
        let mut r = Budgeted::new(&[1u8; 51][..], budget.clone());
        assert!(io::copy(&mut r, &mut io::sink()).is_err());
        assert_eq!(
            budget.exceeded(),
            Some(super::super::Limit::UncompressedSize)
        );
    }

    #[test]
    fn pipeline_hashes_everything_and_stops_when_the_reader_does() {
        // Several chunks of gzip'd bytes: the digests cover the whole stream, read or not.
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &data).unwrap();
        let blob = gz.finish().unwrap();
        let (_, raw) = sniff(&blob[..], true).unwrap();
        let decoder = Decoder::new(BlobCompression::Gzip, raw).unwrap();
        let (got, digests) = pipelined(decoder, true, |mut pipe| {
            let mut all = Vec::new();
            pipe.read_to_end(&mut all).map(|_| all)
        })
        .unwrap();
        assert_eq!(got, data);
        let (diff_id, size, digest, compressed) = digests.unwrap();
        assert_eq!(
            (diff_id, size),
            (Some(Digest::of(&data)), data.len() as u64)
        );
        assert_eq!(
            (digest, compressed),
            (Some(Digest::of(&blob)), blob.len() as u64)
        );

        // A reader that gives up after one read: the producer stops instead of decompressing
        // the rest, and the consumer's error is what comes back.
        let (_, raw) = sniff(&blob[..], true).unwrap();
        let decoder = Decoder::new(BlobCompression::Gzip, raw).unwrap();
        let result = pipelined(decoder, true, |mut pipe| {
            let mut one = [0u8; 10];
            pipe.read_exact(&mut one)?;
            Err::<(), _>(io::Error::other("stop"))
        });
        assert_eq!(result.unwrap_err().to_string(), "stop");

        // A corrupt stream: the consumer sees the decoder's error.
        let mut bad = blob.clone();
        let mid = bad.len() / 2;
        bad[mid..mid + 64].fill(0xff);
        let (_, raw) = sniff(&bad[..], true).unwrap();
        let decoder = Decoder::new(BlobCompression::Gzip, raw).unwrap();
        let result = pipelined(decoder, true, |mut pipe| pipe.read_to_end(&mut Vec::new()));
        assert!(result.is_err());
    }
}
