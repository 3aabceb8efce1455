//! [`LayerEncoder`]: takes a tar stream entry by entry, cuts it into members, compresses members
//! on a bounded pool, and writes them in order while hashing the tar (DiffID) and the output
//! (blob digest).
//!
//! With a previous blob, a re-export avoids work three ways, each proven not to change a byte:
//! - the compressed bytes of a member whose tar bytes have the same digest are taken from the
//!   previous blob (CRC-checked) instead of compressing again;
//! - while every member so far equals the previous blob's member at the same position, the
//!   DiffID and blob digest are not hashed: their SHA-256 states are taken from the previous
//!   index after each member ([`super::sha`]), and hashing resumes from there at the first
//!   member that differs;
//! - entries offered with their [`FileIdentity`] are not even read while their members' keys
//!   equal the previous members' keys at the same position (`prefix.rs`).

use std::collections::VecDeque;
use std::io::Write;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::SystemTime;

use super::chunker::{Chunker, Cut};
use super::codec::MemberCodec;
use super::identity::{FileIdentity, Ident};
use super::pool::{Member, Pool, Reply, encode_member};
use super::prefix::Prefix;
use super::sha::Hasher;
use super::{CompressError, Compression, FORMAT_VERSION, MemberIndex, MemberRecord, PreviousBlob};
use crate::digest::{BlobDigest, DiffId};

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
    /// Tar bytes of members taken from the previous blob without reading their entries'
    /// content (their keys matched).
    pub unread_tar_bytes: u64,
    /// Tar bytes the DiffID was not hashed over: the members before the first change, whose
    /// SHA-256 state came from the previous index.
    pub resumed_tar_bytes: u64,
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
///
/// With a previous blob the encoder starts out *offering*: entries may be given to
/// [`offer_entry`](Self::offer_entry) without their content instead (see there).
pub struct LayerEncoder<W: Write> {
    pub(super) chunker: Chunker,
    pub(super) sink: Sink<W>,
    /// While offering: the members of offered entries not read yet.
    pub(super) prefix: Option<Prefix>,
    /// When the encoder was made: identities changed since shortly before are not trusted.
    pub(super) started: SystemTime,
    /// The end-of-archive blocks went out in a reused last member.
    pub(super) ended: bool,
}

pub(super) struct Sink<W: Write> {
    compression: Compression,
    out: W,
    /// The DiffID, over the tar bytes of the members written so far.
    tar: Hasher,
    /// The blob digest, over the bytes written so far.
    blob: Hasher,
    /// Every member so far equals the previous blob's member at the same position.
    chain: bool,
    threads: usize,
    window: usize,
    pool: Option<Pool>,
    pending: VecDeque<(Reply, u64)>,
    in_flight_bytes: u64,
    pub(super) previous: Option<Arc<PreviousBlob>>,
    inline: Option<MemberCodec>,
    finishing: bool,
    records: Vec<MemberRecord>,
    spare_outputs: Vec<Vec<u8>>,
    returned_inputs: Vec<Vec<u8>>,
    pub(super) stats: EncodeStats,
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
        let prefix = previous
            .as_ref()
            .filter(|p| p.members() > 0)
            .map(|_| Prefix::new());
        Self {
            chunker: Chunker::new(),
            sink: Sink {
                compression,
                out,
                tar: Hasher::new(),
                blob: Hasher::new(),
                chain: previous.is_some(),
                threads,
                // One member more than there are workers keeps them all busy while the front
                // one is written; each extra member costs up to two member buffers of memory.
                window: threads + 1,
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
            prefix,
            started: SystemTime::now(),
            ended: false,
        }
    }

    fn recycle(&mut self) {
        for buf in self.sink.returned_inputs.drain(..) {
            self.chunker.recycle(buf);
        }
    }

    /// Leave the offering state before an entry is written normally.
    fn stop_offering_for(&mut self, action: &'static str) -> Result<(), CompressError> {
        match self.prefix.take() {
            Some(prefix) if prefix.pending() > 0 => {
                let pending = prefix.pending();
                self.prefix = Some(prefix);
                Err(CompressError::EntriesHeld { pending, action })
            }
            _ => Ok(()),
        }
    }

    /// Begin an entry: `headers` are its tar header blocks (a PAX extended header first, if
    /// any; whole 512-byte blocks), `path` its path in the layer (used by the boundary rule).
    /// Its content has no identity: the members it lands in get no key.
    pub fn start_entry(
        &mut self,
        path: &str,
        headers: &[u8],
        data_len: u64,
    ) -> Result<(), CompressError> {
        self.start_entry_identified(path, headers, data_len, None)
    }

    /// Like [`start_entry`](Self::start_entry), for content whose [`FileIdentity`] is known:
    /// the members it lands in get a key, so that a later re-export can skip reading them.
    pub fn start_entry_identified(
        &mut self,
        path: &str,
        headers: &[u8],
        data_len: u64,
        identity: Option<&FileIdentity>,
    ) -> Result<(), CompressError> {
        self.stop_offering_for("writing an entry")?;
        let ident = Ident::resolve(data_len, identity, self.started);
        let sink = &mut self.sink;
        let result = self
            .chunker
            .start_entry(path, headers, data_len, ident, &mut |m| sink.accept(m));
        self.recycle();
        result
    }

    /// Re-open a large file's entry at `from` bytes of its data, after
    /// [`Offer::Replay`](super::Offer::Replay) asked for it: write its data from `from` on,
    /// then [`end_entry`](Self::end_entry).
    pub fn resume_entry(
        &mut self,
        path: &str,
        headers: &[u8],
        data_len: u64,
        from: u64,
        identity: Option<&FileIdentity>,
    ) -> Result<(), CompressError> {
        self.stop_offering_for("resuming an entry")?;
        let ident = Ident::resolve(data_len, identity, self.started);
        self.chunker
            .resume_large(path, headers, data_len, from, ident)
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
    ///
    /// While offering, call [`offer_end`](Self::offer_end) first.
    pub fn finish(mut self) -> Result<(W, EncodedLayer), CompressError> {
        self.stop_offering_for("finishing the layer")?;
        let LayerEncoder {
            chunker,
            mut sink,
            ended,
            ..
        } = self;
        sink.finishing = true;
        if !ended {
            chunker.finish(&mut |m| sink.accept(m))?;
        } else if chunker.entry_open() || chunker.open_member_len() > 0 {
            return Err(CompressError::EntryOpen {
                path: "<end of archive>".to_owned(),
                open: "<an entry after the end of the archive>".to_owned(),
            });
        }
        while !sink.pending.is_empty() {
            sink.write_oldest()?;
        }
        drop(sink.pool.take());
        sink.out.flush().map_err(CompressError::Write)?;
        let uncompressed_size = sink.tar.len();
        let diff_id = DiffId(sink.tar.finish());
        let size = sink.blob.len();
        let blob_digest = sink.blob.finish();
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
    fn accept(&mut self, cut: Cut) -> Result<(), CompressError> {
        let Cut { bytes: input, key } = cut;
        if self.compression == Compression::Uncompressed {
            // The tar bytes are the blob: no members, and the DiffID is the blob digest.
            self.out.write_all(&input).map_err(CompressError::Write)?;
            self.tar.update(&input);
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
                key,
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
        let reply = pool.submit(input, output, key)?;
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

    /// The previous blob's record at this member's position, if this member and every one
    /// before it equal the previous blob's: then the hash states after it are the recorded ones.
    fn chained(
        &self,
        tar_digest: &crate::Digest,
        tar_size: u64,
        size: u64,
        crc32: u32,
    ) -> Option<MemberRecord> {
        if !self.chain {
            return None;
        }
        let record = *self.previous.as_ref()?.record(self.records.len())?;
        let same = record.tar_digest == *tar_digest
            && record.tar_size == tar_size
            && record.size == size
            && record.crc32 == crc32
            && record.offset == self.blob.len()
            && record.tar_state?.len == self.tar.len() + tar_size
            && record.blob_state?.len == self.blob.len() + size;
        same.then_some(record)
    }

    fn write_member(&mut self, member: Member) -> Result<(), CompressError> {
        self.out
            .write_all(&member.output)
            .map_err(CompressError::Write)?;
        let offset = self.blob.len();
        let tar_size = member.input.len() as u64;
        let size = member.output.len() as u64;
        match self.chained(&member.tar_digest, tar_size, size, member.crc32) {
            Some(MemberRecord {
                tar_state: Some(tar_state),
                blob_state: Some(blob_state),
                ..
            }) => {
                self.tar = Hasher::resume(&tar_state);
                self.blob = Hasher::resume(&blob_state);
                self.stats.resumed_tar_bytes += tar_size;
            }
            _ => {
                self.chain = false;
                self.tar.update(&member.input);
                self.blob.update(&member.output);
            }
        }
        self.records.push(MemberRecord {
            tar_digest: member.tar_digest,
            tar_size,
            offset,
            size,
            crc32: member.crc32,
            key: member.key,
            tar_state: Some(self.tar.midstate()),
            blob_state: Some(self.blob.midstate()),
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

    /// Write the previous blob's `k`-th member as this layer's next member without its tar
    /// bytes (a re-export whose entries' keys matched): `false`, with nothing written, when the
    /// member is not the next one of an unbroken chain or its bytes fail their CRC check.
    pub(super) fn reuse_record(&mut self, k: usize) -> Result<bool, CompressError> {
        let Some(previous) = self.previous.clone() else {
            return Ok(false);
        };
        let Some(record) = previous.record(k).copied() else {
            return Ok(false);
        };
        let (Some(tar_state), Some(blob_state)) = (record.tar_state, record.blob_state) else {
            return Ok(false);
        };
        if !self.chain
            || k != self.records.len()
            || record.offset != self.blob.len()
            || tar_state.len != self.tar.len() + record.tar_size
            || blob_state.len != self.blob.len() + record.size
        {
            return Ok(false);
        }
        let mut output = self.spare_outputs.pop().unwrap_or_default();
        if previous.fetch_record(k, &mut output).is_none() {
            self.spare_outputs.push(output);
            return Ok(false);
        }
        self.out.write_all(&output).map_err(CompressError::Write)?;
        self.tar = Hasher::resume(&tar_state);
        self.blob = Hasher::resume(&blob_state);
        self.records.push(record);
        self.stats.members += 1;
        self.stats.reused_members += 1;
        self.stats.reused_tar_bytes += record.tar_size;
        self.stats.unread_tar_bytes += record.tar_size;
        self.stats.resumed_tar_bytes += record.tar_size;
        if self.spare_outputs.len() < 2 {
            self.spare_outputs.push(output);
        }
        Ok(true)
    }
}
