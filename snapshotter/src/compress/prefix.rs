//! Re-export without reading: while a layer's entries, offered with the identity of their
//! content, form members whose keys equal the previous blob's members at the same positions, the
//! encoder copies those members' compressed bytes, takes the DiffID and blob digest states from
//! the previous index, and never asks for the entries' content.
//!
//! The members are found with the boundary rule on lengths alone (the rule needs each entry's
//! path and tar size, never its bytes). At the first member whose key differs (or that has no
//! previous member, or whose previous bytes fail their CRC), the encoder stops offering and
//! hands back the entries it held: the caller writes them normally, and the rest of the layer
//! goes the ordinary way (which still reuses compressed bytes by digest). Because the reused
//! members are exactly those a from-scratch export would produce (same tar bytes at the same
//! positions), the blob, DiffID and index are byte-identical to it (tested).

use std::io::Write;

use super::CompressError;
use super::chunker::{
    END_OF_ARCHIVE, ends_member, entry_tar_bytes, is_large, large_pieces, path_fires,
    piece_tar_bytes,
};
use super::encoder::LayerEncoder;
use super::identity::{FileIdentity, Ident, KeyBuilder, Piece};
use crate::digest::Digest;

/// What became of an offered entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Held: its content is not needed now, and may never be. The last `pending` offered
    /// entries (this one included, if `pending > 0`) are held; earlier ones are settled (their
    /// members were taken from the previous blob).
    Held { pending: usize },
    /// The encoder stopped offering. Write the last `pending` offered entries (this one
    /// included) with [`LayerEncoder::start_entry_identified`], data and
    /// [`LayerEncoder::end_entry`], in order, then go on writing normally. When `from > 0` the
    /// first of them is a large file whose members up to `from` bytes of data were already
    /// taken from the previous blob: re-open it with [`LayerEncoder::resume_entry`] and write
    /// its data from `from` on.
    Replay { pending: usize, from: u64 },
}

/// The open member of offered entries.
pub(super) struct Prefix {
    /// The previous blob's member the open member must equal.
    cursor: usize,
    open_len: u64,
    key: KeyBuilder,
    pending: usize,
}

impl Prefix {
    pub(super) fn new() -> Self {
        Self {
            cursor: 0,
            open_len: 0,
            key: KeyBuilder::new(),
            pending: 0,
        }
    }

    pub(super) fn pending(&self) -> usize {
        self.pending
    }
}

impl<W: Write> LayerEncoder<W> {
    /// Whether entries may be offered ([`offer_entry`](Self::offer_entry)) rather than written.
    pub fn offering(&self) -> bool {
        self.prefix.is_some()
    }

    /// Offer an entry without its content: `identity` stands for the content of a file
    /// (`None` for entries without data). See [`Offer`] for what the caller does next. An entry
    /// whose content has no trusted identity ends the offering at once (`Replay`).
    pub fn offer_entry(
        &mut self,
        path: &str,
        headers: &[u8],
        data_len: u64,
        identity: Option<&FileIdentity>,
    ) -> Result<Offer, CompressError> {
        if self.prefix.is_none() {
            return Err(CompressError::NotOffering);
        }
        if headers.is_empty() || !headers.len().is_multiple_of(512) {
            return Err(CompressError::HeaderBlocks {
                path: path.to_owned(),
                len: headers.len(),
            });
        }
        let ident = Ident::resolve(data_len, identity, self.started);
        if ident == Ident::Unknown {
            return Ok(self.stop(1, 0));
        }
        let headers_digest = Digest::of(headers);
        if is_large(data_len) {
            // The open member ends before a large file, which gets members of its own.
            if self.open_len() > 0 && !self.close_member()? {
                return Ok(self.stop(1, 0));
            }
            return self.offer_large(&headers_digest, headers.len(), data_len, &ident);
        }
        let tar_bytes = entry_tar_bytes(headers.len(), data_len);
        let piece = Piece {
            from: 0,
            to: data_len,
            headers: true,
            padding: true,
        };
        let prefix = self.prefix.as_mut().ok_or(CompressError::NotOffering)?;
        prefix.pending += 1;
        prefix.key.piece(&headers_digest, &ident, piece);
        prefix.open_len += tar_bytes;
        if ends_member(prefix.open_len, path_fires(path, tar_bytes)) && !self.close_member()? {
            return Ok(self.stop(0, 0));
        }
        Ok(Offer::Held {
            pending: self.prefix.as_ref().map_or(0, |p| p.pending),
        })
    }

    /// A large file: every one of its members must match, checked by key before any is taken.
    fn offer_large(
        &mut self,
        headers: &Digest,
        headers_len: usize,
        data_len: u64,
        ident: &Ident,
    ) -> Result<Offer, CompressError> {
        let cursor = self.prefix.as_ref().map_or(0, |p| p.cursor);
        let pieces: Vec<Piece> = large_pieces(data_len).collect();
        let all_match = pieces.iter().enumerate().all(|(i, piece)| {
            let mut key = KeyBuilder::new();
            key.piece(headers, ident, *piece);
            self.matches(
                cursor + i,
                key.take(),
                piece_tar_bytes(piece, headers_len, data_len),
            )
        });
        if !all_match {
            return Ok(self.stop(1, 0));
        }
        for (i, piece) in pieces.iter().enumerate() {
            if !self.sink.reuse_record(cursor + i)? {
                // Damaged previous bytes: the file is written from this piece on.
                return Ok(self.stop(1, piece.from));
            }
            if let Some(prefix) = &mut self.prefix {
                prefix.cursor += 1;
            }
        }
        Ok(Offer::Held { pending: 0 })
    }

    /// Call after the last entry while offering: the end-of-archive blocks join the open
    /// member, which must equal the previous blob's last one. `Held` (always with `pending: 0`)
    /// means the whole layer came from the previous blob; `Replay` as for an entry (then
    /// [`finish`](Self::finish) writes the end of the archive).
    pub fn offer_end(&mut self) -> Result<Offer, CompressError> {
        let last = self.sink.previous.as_ref().map_or(0, |p| p.members());
        let Some(prefix) = &mut self.prefix else {
            return Ok(Offer::Held { pending: 0 });
        };
        prefix.key.end_of_archive();
        prefix.open_len += END_OF_ARCHIVE;
        if prefix.cursor + 1 == last && self.close_member()? {
            self.prefix = None;
            self.ended = true;
            return Ok(Offer::Held { pending: 0 });
        }
        Ok(self.stop(0, 0))
    }

    /// Stop offering; returns how many offered entries are held, to be written (replayed)
    /// before anything else.
    pub fn stop_offering(&mut self) -> usize {
        match self.stop(0, 0) {
            Offer::Replay { pending, .. } | Offer::Held { pending } => pending,
        }
    }

    fn stop(&mut self, extra: usize, from: u64) -> Offer {
        let pending = self.prefix.take().map_or(0, |p| p.pending) + extra;
        Offer::Replay { pending, from }
    }

    fn open_len(&self) -> u64 {
        self.prefix.as_ref().map_or(0, |p| p.open_len)
    }

    /// Whether the previous blob's `k`-th member has this key and size (and the hash states
    /// that let the digests go on after it).
    fn matches(&self, k: usize, key: Option<Digest>, tar_size: u64) -> bool {
        let Some(record) = self.sink.previous.as_ref().and_then(|p| p.record(k)) else {
            return false;
        };
        key.is_some()
            && record.key == key
            && record.tar_size == tar_size
            && record.tar_state.is_some()
            && record.blob_state.is_some()
    }

    /// End the open member of offered entries: take the previous blob's member if it matches.
    fn close_member(&mut self) -> Result<bool, CompressError> {
        let Some(prefix) = &mut self.prefix else {
            return Ok(false);
        };
        let (cursor, len) = (prefix.cursor, prefix.open_len);
        // Keep the builder intact on a mismatch only for symmetry; a mismatch ends offering.
        let key = prefix.key.take();
        if !self.matches(cursor, key, len) || !self.sink.reuse_record(cursor)? {
            return Ok(false);
        }
        if let Some(prefix) = &mut self.prefix {
            prefix.cursor += 1;
            prefix.open_len = 0;
            prefix.pending = 0;
        }
        Ok(true)
    }
}
