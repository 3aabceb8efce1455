//! [`LayerEncoder`]: takes a tar stream entry by entry, cuts it into members, compresses members
//! on a bounded pool, and writes them in order while hashing the tar (DiffID) and the output
//! (blob digest).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::Arc;

use super::chunker::Chunker;
use super::codec::MemberCodec;
use super::pool::{Member, Pool, Reply, encode_member};
use super::{CompressError, Compression, FORMAT_VERSION, MemberIndex, MemberRecord, PreviousBlob};
use crate::digest::{BlobDigest, DiffId, DigestWriter};

/// How a layer is encoded (the bytes never depend on these options).
#[derive(Debug)]
pub struct EncodeOptions {
    /// Compression threads; `0` or `1` compresses on the caller's thread. Defaults to the
    /// available parallelism.
    pub threads: usize,
    /// A previous blob whose members may be reused; ignored unless it has the same compression.
    pub previous: Option<PreviousBlob>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            previous: None,
        }
    }
}

impl EncodeOptions {
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    pub fn with_previous(mut self, previous: PreviousBlob) -> Self {
        self.previous = Some(previous);
        self
    }
}

/// What happened while encoding (for progress, benchmarks and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeStats {
    /// Members written.
    pub members: u64,
    /// Members whose compressed bytes were taken from the previous blob.
    pub reused_members: u64,
    /// Tar bytes held by reused members.
    pub reused_tar_bytes: u64,
    /// Most members queued or being compressed at once (at most `2 × threads`).
    pub peak_in_flight: usize,
    /// Most tar bytes held by queued members at once (the open member excluded).
    pub peak_in_flight_bytes: u64,
}

/// A finished layer: its digests, sizes, member index and statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedLayer {
    pub diff_id: DiffId,
    pub digest: BlobDigest,
    /// Size of the blob.
    pub size: u64,
    /// Size of the tar stream.
    pub uncompressed_size: u64,
    /// The member index to keep with the blob (`None` for uncompressed layers).
    pub index: Option<MemberIndex>,
    pub stats: EncodeStats,
}

/// Encodes a tar stream, given entry by entry, into a layer blob written to `W`.
///
/// For each entry: [`start_entry`](Self::start_entry) with its header blocks and data length,
/// [`write_data`](Self::write_data) with exactly that many bytes, then
/// [`end_entry`](Self::end_entry) (which adds the padding). [`finish`](Self::finish) adds the
/// end-of-archive blocks. The caller owns tar header encoding; see [`crate::layer::LayerWriter`].
pub struct LayerEncoder<W: Write> {
    chunker: Chunker,
    sink: Sink<W>,
}

struct Sink<W: Write> {
    compression: Compression,
    out: W,
    blob: DigestWriter<io::Sink>,
    threads: usize,
    window: usize,
    pool: Option<Pool>,
    pending: VecDeque<(Reply, u64)>,
    in_flight_bytes: u64,
    previous: Option<Arc<PreviousBlob>>,
    inline: Option<MemberCodec>,
    finishing: bool,
    records: Vec<MemberRecord>,
    spare_outputs: Vec<Vec<u8>>,
    returned_inputs: Vec<Vec<u8>>,
    stats: EncodeStats,
}

impl<W: Write> LayerEncoder<W> {
    /// An encoder with the default options.
    pub fn new(out: W, compression: Compression) -> Self {
        Self::with_options(out, compression, EncodeOptions::default())
    }

    pub fn with_options(out: W, compression: Compression, options: EncodeOptions) -> Self {
        let threads = options.threads.max(1);
        let previous = options
            .previous
            .filter(|p| p.compression() == compression && compression != Compression::Uncompressed)
            .map(Arc::new);
        Self {
            chunker: Chunker::new(),
            sink: Sink {
                compression,
                out,
                blob: DigestWriter::new(io::sink()),
                threads,
                window: 2 * threads,
                pool: None,
                pending: VecDeque::new(),
                in_flight_bytes: 0,
                previous,
                inline: None,
                finishing: false,
                records: Vec::new(),
                spare_outputs: Vec::new(),
                returned_inputs: Vec::new(),
                stats: EncodeStats::default(),
            },
        }
    }

    fn recycle(&mut self) {
        for buf in self.sink.returned_inputs.drain(..) {
            self.chunker.recycle(buf);
        }
    }

    /// Begin an entry: `headers` are its tar header blocks (a PAX extended header first, if
    /// any; whole 512-byte blocks), `path` its path in the layer (used by the boundary rule).
    pub fn start_entry(
        &mut self,
        path: &str,
        headers: &[u8],
        data_len: u64,
    ) -> Result<(), CompressError> {
        let sink = &mut self.sink;
        let result = self
            .chunker
            .start_entry(path, headers, data_len, &mut |m| sink.accept(m));
        self.recycle();
        result
    }

    /// Data of the open entry, in order.
    pub fn write_data(&mut self, data: &[u8]) -> Result<(), CompressError> {
        let sink = &mut self.sink;
        let result = self.chunker.data(data, &mut |m| sink.accept(m));
        self.recycle();
        result
    }

    /// End the open entry (after exactly its declared number of data bytes).
    pub fn end_entry(&mut self) -> Result<(), CompressError> {
        let sink = &mut self.sink;
        let result = self.chunker.end_entry(&mut |m| sink.accept(m));
        self.recycle();
        result
    }

    /// Tar bytes of the open member (not yet handed to compression).
    pub fn open_member_len(&self) -> usize {
        self.chunker.open_member_len()
    }

    /// End the archive, wait for every member, and return the output and the layer's digests.
    pub fn finish(self) -> Result<(W, EncodedLayer), CompressError> {
        let LayerEncoder { chunker, mut sink } = self;
        sink.finishing = true;
        let (diff_id, uncompressed_size) = chunker.finish(&mut |m| sink.accept(m))?;
        while !sink.pending.is_empty() {
            sink.write_oldest()?;
        }
        drop(sink.pool.take());
        sink.out.flush().map_err(CompressError::Write)?;
        let diff_id = DiffId(diff_id);
        let (_, blob_digest, size) = sink.blob.finish();
        let (digest, index) = match sink.compression {
            Compression::Uncompressed => (BlobDigest(diff_id.0), None),
            compression => {
                let digest = BlobDigest(blob_digest);
                let index = MemberIndex {
                    format: FORMAT_VERSION,
                    compression,
                    level: compression.level(),
                    blob: digest,
                    diff_id,
                    members: sink.records,
                };
                (digest, Some(index))
            }
        };
        let size = if sink.compression == Compression::Uncompressed {
            uncompressed_size
        } else {
            size
        };
        Ok((
            sink.out,
            EncodedLayer {
                diff_id,
                digest,
                size,
                uncompressed_size,
                index,
                stats: sink.stats,
            },
        ))
    }
}

impl<W: Write> Sink<W> {
    /// Take one member's tar bytes from the chunker.
    fn accept(&mut self, input: Vec<u8>) -> Result<(), CompressError> {
        if self.compression == Compression::Uncompressed {
            // The tar bytes are the blob: no members, and the DiffID is the blob digest.
            self.out.write_all(&input).map_err(CompressError::Write)?;
            self.stats.members += 1;
            self.returned_inputs.push(input);
            return Ok(());
        }
        let output = self.spare_outputs.pop().unwrap_or_default();
        let inline = self.threads == 1 || (self.pool.is_none() && self.finishing);
        if inline {
            let codec = match &mut self.inline {
                Some(codec) => codec,
                slot => slot.insert(MemberCodec::new(self.compression).map_err(|source| {
                    CompressError::Encode {
                        compression: self.compression,
                        tar_bytes: input.len(),
                        source,
                    }
                })?),
            };
            let member = encode_member(
                codec,
                self.compression,
                self.previous.as_deref(),
                input,
                output,
            )?;
            return self.write_member(member);
        }
        // Write whatever is already done, then make room in the window.
        while let Some((front, _)) = self.pending.front() {
            match front.try_recv() {
                Ok(result) => self.write_result(result)?,
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    return Err(CompressError::WorkerLost);
                }
            }
        }
        while self.pending.len() >= self.window {
            self.write_oldest()?;
        }
        let pool = match &mut self.pool {
            Some(pool) => pool,
            slot => slot.insert(Pool::new(
                self.threads,
                self.compression,
                self.previous.clone(),
            )?),
        };
        let tar_bytes = input.len() as u64;
        let reply = pool.submit(input, output)?;
        self.pending.push_back((reply, tar_bytes));
        self.in_flight_bytes += tar_bytes;
        self.stats.peak_in_flight = self.stats.peak_in_flight.max(self.pending.len());
        self.stats.peak_in_flight_bytes = self.stats.peak_in_flight_bytes.max(self.in_flight_bytes);
        Ok(())
    }

    /// Wait for the oldest queued member and write it.
    fn write_oldest(&mut self) -> Result<(), CompressError> {
        let Some((front, _)) = self.pending.front() else {
            return Ok(());
        };
        let result = front.recv().map_err(|_| CompressError::WorkerLost)?;
        self.write_result(result)
    }

    fn write_result(&mut self, result: Result<Member, CompressError>) -> Result<(), CompressError> {
        if let Some((_, tar_bytes)) = self.pending.pop_front() {
            self.in_flight_bytes -= tar_bytes;
        }
        self.write_member(result?)
    }

    fn write_member(&mut self, member: Member) -> Result<(), CompressError> {
        self.out
            .write_all(&member.output)
            .map_err(CompressError::Write)?;
        let offset = self.blob.written();
        // Writing to a sink cannot fail.
        let _ = self.blob.write_all(&member.output);
        let tar_size = member.input.len() as u64;
        self.records.push(MemberRecord {
            tar_digest: member.tar_digest,
            tar_size,
            offset,
            size: member.output.len() as u64,
            crc32: member.crc32,
        });
        self.stats.members += 1;
        if member.reused {
            self.stats.reused_members += 1;
            self.stats.reused_tar_bytes += tar_size;
        }
        self.returned_inputs.push(member.input);
        if self.spare_outputs.len() < 2 {
            self.spare_outputs.push(member.output);
        }
        Ok(())
    }
}
