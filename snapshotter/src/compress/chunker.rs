//! Where members begin and end: the boundary rule of the member format (see the module docs of
//! [`crate::compress`] for the rule in prose), applied to a tar stream given entry by entry.
//!
//! The `Chunker` also builds each member's key (`identity.rs`) from the entries it holds. The
//! same rule, on lengths alone, lets a re-export find the members of entries it has not read
//! (`entry_tar_bytes`, `ends_member`, `large_pieces`).

use std::mem;

use sha2::{Digest as _, Sha256};

use super::CompressError;
use super::identity::{Ident, KeyBuilder, Piece};
use crate::digest::Digest;

/// File data is cut every `SPLIT` bytes from the start of the data of a file larger than this.
pub const SPLIT: u64 = 4 << 20;
/// No content-defined boundary before a member holds this many tar bytes.
pub const MIN_MEMBER: u64 = 256 << 10;
/// An entry of `s` tar bytes fires with probability `s / AVG_SPAN`.
pub const AVG_SPAN: u64 = 1 << 20;
/// A member ends after the entry that brings it to at least this many tar bytes.
pub const MAX_MEMBER: u64 = 4 << 20;

/// Domain separation for the path hash (bump with the format version).
const PATH_DOMAIN: &[u8] = b"kiln.layer.member.v1\0";
const BLOCK: u64 = 512;
/// The end-of-archive blocks.
pub(crate) const END_OF_ARCHIVE: u64 = 2 * BLOCK;

/// Whether an entry at `path` of `entry_tar_bytes` (headers + padded data) may end a member.
pub fn path_fires(path: &str, entry_tar_bytes: u64) -> bool {
    let mut hasher = Sha256::new();
    hasher.update(PATH_DOMAIN);
    hasher.update(path.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first) % AVG_SPAN < entry_tar_bytes
}

/// Whether an entry with `data_len` bytes of data is a large file (isolated and split).
pub fn is_large(data_len: u64) -> bool {
    data_len > SPLIT
}

fn padding(data_len: u64) -> u64 {
    (BLOCK - data_len % BLOCK) % BLOCK
}

/// Tar bytes of an entry: its header blocks, data and padding.
pub(crate) fn entry_tar_bytes(headers_len: usize, data_len: u64) -> u64 {
    headers_len as u64 + data_len + padding(data_len)
}

/// Whether a member holding `len` tar bytes ends after a small entry that fires or not.
pub(crate) fn ends_member(len: u64, fires: bool) -> bool {
    len >= MAX_MEMBER || (len >= MIN_MEMBER && fires)
}

/// The members a large file's entry is cut into (each also isolated from its neighbours).
pub(crate) fn large_pieces(data_len: u64) -> impl Iterator<Item = Piece> {
    let count = data_len.div_ceil(SPLIT);
    (0..count).map(move |i| Piece {
        from: i * SPLIT,
        to: ((i + 1) * SPLIT).min(data_len),
        headers: i == 0,
        padding: i + 1 == count,
    })
}

/// Tar bytes of one piece of an entry.
pub(crate) fn piece_tar_bytes(piece: &Piece, headers_len: usize, data_len: u64) -> u64 {
    let headers = if piece.headers { headers_len as u64 } else { 0 };
    let padding = if piece.padding { padding(data_len) } else { 0 };
    headers + (piece.to - piece.from) + padding
}

struct OpenEntry {
    path: String,
    headers: Digest,
    ident: Ident,
    data_len: u64,
    written: u64,
    /// Where the data held by the open member starts (large files).
    piece_from: u64,
    large: bool,
    fires: bool,
}

/// A finished member's tar bytes and key.
pub(crate) struct Cut {
    pub(crate) bytes: Vec<u8>,
    pub(crate) key: Option<Digest>,
}

/// Receives each finished member, in order.
pub(crate) type Emit<'a> = &'a mut dyn FnMut(Cut) -> Result<(), CompressError>;

/// Cuts a tar stream, given as entries, into members.
pub(crate) struct Chunker {
    member: Vec<u8>,
    spare: Vec<Vec<u8>>,
    open: Option<OpenEntry>,
    key: KeyBuilder,
}

impl Chunker {
    pub(crate) fn new() -> Self {
        Self {
            member: Vec::new(),
            spare: Vec::new(),
            open: None,
            key: KeyBuilder::new(),
        }
    }

    /// Bytes of the open member so far.
    pub(crate) fn open_member_len(&self) -> usize {
        self.member.len()
    }

    /// Whether an entry is open.
    pub(crate) fn entry_open(&self) -> bool {
        self.open.is_some()
    }

    /// Give back a member buffer for reuse (keeps allocations flat across members).
    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.spare.len() < 2 {
            buf.clear();
            self.spare.push(buf);
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.member.extend_from_slice(bytes);
    }

    fn push_zeros(&mut self, n: u64) {
        const ZEROS: [u8; 1024] = [0; 1024];
        let mut left = n as usize;
        while left > 0 {
            let take = left.min(ZEROS.len());
            self.push(&ZEROS[..take]);
            left -= take;
        }
    }

    fn cut(&mut self, emit: Emit<'_>) -> Result<(), CompressError> {
        if self.member.is_empty() {
            return Ok(());
        }
        let next = self.spare.pop().unwrap_or_default();
        let bytes = mem::replace(&mut self.member, next);
        let key = self.key.take();
        emit(Cut { bytes, key })
    }

    /// Begin an entry: `headers` are its tar header blocks (PAX extension header first, if
    /// any), `data_len` the number of data bytes that [`Chunker::data`] will be given, `ident`
    /// what stands for them in the member key.
    pub(crate) fn start_entry(
        &mut self,
        path: &str,
        headers: &[u8],
        data_len: u64,
        ident: Ident,
        emit: Emit<'_>,
    ) -> Result<(), CompressError> {
        if let Some(open) = &self.open {
            return Err(CompressError::EntryOpen {
                path: path.to_owned(),
                open: open.path.clone(),
            });
        }
        if headers.is_empty() || !(headers.len() as u64).is_multiple_of(BLOCK) {
            return Err(CompressError::HeaderBlocks {
                path: path.to_owned(),
                len: headers.len(),
            });
        }
        let large = is_large(data_len);
        if large {
            self.cut(emit)?;
        }
        let fires = !large && path_fires(path, entry_tar_bytes(headers.len(), data_len));
        self.push(headers);
        self.open = Some(OpenEntry {
            path: path.to_owned(),
            headers: Digest::of(headers),
            ident,
            data_len,
            written: 0,
            piece_from: 0,
            large,
            fires,
        });
        Ok(())
    }

    /// Re-open a large file's entry at `from` bytes of its data, a multiple of [`SPLIT`]: the
    /// members before that point are already written (a re-export reused them), so the next
    /// member starts there. `headers` are the entry's header blocks (for the member key only).
    pub(crate) fn resume_large(
        &mut self,
        path: &str,
        headers: &[u8],
        data_len: u64,
        from: u64,
        ident: Ident,
    ) -> Result<(), CompressError> {
        if self.open.is_some()
            || !self.member.is_empty()
            || !is_large(data_len)
            || from == 0
            || from >= data_len
            || !from.is_multiple_of(SPLIT)
        {
            return Err(CompressError::NoOpenEntry(
                "resuming a large file at a point that is not a member boundary",
            ));
        }
        self.open = Some(OpenEntry {
            path: path.to_owned(),
            headers: Digest::of(headers),
            ident,
            data_len,
            written: from,
            piece_from: from,
            large: true,
            fires: false,
        });
        Ok(())
    }

    /// Data of the open entry, in order, in pieces of any size.
    pub(crate) fn data(&mut self, mut bytes: &[u8], emit: Emit<'_>) -> Result<(), CompressError> {
        let Some(open) = &self.open else {
            return Err(CompressError::NoOpenEntry("writing entry data"));
        };
        if open.written + bytes.len() as u64 > open.data_len {
            return Err(CompressError::DataLength {
                path: open.path.clone(),
                declared: open.data_len,
                given: open.written + bytes.len() as u64,
            });
        }
        if !open.large {
            self.push(bytes);
            if let Some(open) = &mut self.open {
                open.written += bytes.len() as u64;
            }
            return Ok(());
        }
        while !bytes.is_empty() {
            let (written, data_len) = match &self.open {
                Some(open) => (open.written, open.data_len),
                None => return Err(CompressError::NoOpenEntry("writing entry data")),
            };
            let room = SPLIT - written % SPLIT;
            let take = room.min(bytes.len() as u64) as usize;
            let (now, rest) = bytes.split_at(take);
            self.push(now);
            bytes = rest;
            let written = written + take as u64;
            if let Some(open) = &mut self.open {
                open.written = written;
            }
            if written.is_multiple_of(SPLIT) && written < data_len {
                if let Some(open) = &mut self.open {
                    let piece = Piece {
                        from: open.piece_from,
                        to: written,
                        headers: open.piece_from == 0,
                        padding: false,
                    };
                    self.key.piece(&open.headers, &open.ident, piece);
                    open.piece_from = written;
                }
                self.cut(emit)?;
            }
        }
        Ok(())
    }

    /// End the open entry: pad its data to a whole block and apply the boundary rule.
    pub(crate) fn end_entry(&mut self, emit: Emit<'_>) -> Result<(), CompressError> {
        let Some(open) = self.open.take() else {
            return Err(CompressError::NoOpenEntry("ending an entry"));
        };
        if open.written != open.data_len {
            return Err(CompressError::DataLength {
                path: open.path,
                declared: open.data_len,
                given: open.written,
            });
        }
        self.push_zeros(padding(open.data_len));
        let piece = Piece {
            from: open.piece_from,
            to: open.data_len,
            headers: open.piece_from == 0,
            padding: true,
        };
        self.key.piece(&open.headers, &open.ident, piece);
        let len = self.member.len() as u64;
        if open.large || ends_member(len, open.fires) {
            self.cut(emit)?;
        }
        Ok(())
    }

    /// Write the end-of-archive blocks and emit the last member.
    pub(crate) fn finish(mut self, emit: Emit<'_>) -> Result<(), CompressError> {
        if let Some(open) = &self.open {
            return Err(CompressError::EntryOpen {
                path: "<end of archive>".to_owned(),
                open: open.path.clone(),
            });
        }
        self.push_zeros(END_OF_ARCHIVE);
        self.key.end_of_archive();
        self.cut(emit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members (as lengths) for entries given as (path, data length).
    fn members(entries: &[(&str, u64)]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut emit = |m: Cut| {
            out.push(m.bytes);
            Ok(())
        };
        let mut c = Chunker::new();
        for (path, len) in entries {
            c.start_entry(path, &[1u8; 512], *len, Ident::Unknown, &mut emit)
                .unwrap();
            let data = vec![7u8; *len as usize];
            for piece in data.chunks(100_000) {
                c.data(piece, &mut emit).unwrap();
            }
            c.end_entry(&mut emit).unwrap();
        }
        c.finish(&mut emit).unwrap();
        out
    }

    #[test]
    fn large_files_are_isolated_and_split_from_their_start() {
        let split = SPLIT;
        let got = members(&[("a", 10), ("big", 2 * split + 5), ("z", 3)]);
        let lens: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(
            lens,
            [
                512 + 512,
                (512 + split) as usize,
                split as usize,
                512,
                512 + 512 + 1024
            ]
        );
        // Exactly a multiple of SPLIT: no empty member.
        let got = members(&[("big", 2 * split)]);
        let lens: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(lens, [(512 + split) as usize, split as usize, 1024]);
    }

    #[test]
    fn members_stay_within_bounds_and_cover_the_stream() {
        let entries: Vec<(String, u64)> = (0..3000)
            .map(|i| (format!("dir/file{i:05}"), (i * 37 % 9000) as u64))
            .collect();
        let refs: Vec<(&str, u64)> = entries.iter().map(|(p, l)| (p.as_str(), *l)).collect();
        let got = members(&refs);
        assert!(got.len() > 3, "{} members", got.len());
        for m in &got[..got.len() - 1] {
            assert!(m.len() as u64 >= MIN_MEMBER, "{}", m.len());
            assert!((m.len() as u64) < MAX_MEMBER + 10_000, "{}", m.len());
        }
    }

    #[test]
    fn an_edit_changes_only_nearby_members() {
        let mut entries: Vec<(String, u64)> = (0..4000)
            .map(|i| (format!("d/f{i:05}"), 1000 + (i * 131 % 8000) as u64))
            .collect();
        let before = {
            let refs: Vec<(&str, u64)> = entries.iter().map(|(p, l)| (p.as_str(), *l)).collect();
            members(&refs)
        };
        entries[1500].1 += 3000;
        let after = {
            let refs: Vec<(&str, u64)> = entries.iter().map(|(p, l)| (p.as_str(), *l)).collect();
            members(&refs)
        };
        let old: std::collections::HashSet<&Vec<u8>> = before.iter().collect();
        let changed = after.iter().filter(|m| !old.contains(m)).count();
        assert!(before.len() > 10);
        assert!(changed <= 2, "{changed} of {} members changed", after.len());
    }

    #[test]
    fn refuses_misuse() {
        let mut emit = |_m: Cut| Ok(());
        let mut c = Chunker::new();
        assert!(matches!(
            c.start_entry("a", &[0u8; 100], 0, Ident::NoContent, &mut emit),
            Err(CompressError::HeaderBlocks { .. })
        ));
        c.start_entry("a", &[0u8; 512], 2, Ident::Unknown, &mut emit)
            .unwrap();
        assert!(matches!(
            c.start_entry("b", &[0u8; 512], 0, Ident::NoContent, &mut emit),
            Err(CompressError::EntryOpen { .. })
        ));
        assert!(matches!(
            c.data(b"abc", &mut emit),
            Err(CompressError::DataLength { .. })
        ));
        c.data(b"a", &mut emit).unwrap();
        assert!(matches!(
            c.end_entry(&mut emit),
            Err(CompressError::DataLength { .. })
        ));
    }
}
