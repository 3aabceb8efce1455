//! The member index of a compressed blob, and a previous blob opened for reuse.
//!
//! A [`MemberIndex`] lists, for every member of a blob, the digest and size of the tar bytes it
//! holds and where its compressed bytes sit in the blob. The engine keeps it next to the blob (a
//! small JSON sidecar in the store, keyed by the blob digest) and hands it back, with the blob,
//! when the same step's layer is exported again. Because a member's compressed bytes depend only
//! on its tar bytes (same [`FORMAT_VERSION`] and compression), a member of the new layer whose
//! tar bytes have the same digest can take the old compressed bytes as they are.
//!
//! The index is trusted like the rest of the store's metadata (it must come from kiln's own store,
//! next to the blob it describes). The compressed bytes it points at are checked: each reused
//! member is read and its CRC-32 compared with the recorded one, and a member that is missing,
//! short or altered is compressed again instead, so a damaged previous blob costs time, never
//! correctness. CRC-32 (not SHA-256) because it guards against accidental damage at ~20 GB/s,
//! where a second SHA-256 pass over every reused byte would cost a fifth of a re-export; the
//! matching of tar bytes, which must resist crafted build contexts, uses SHA-256.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sha::Midstate;
use super::{CompressError, Compression, FORMAT_VERSION};
use crate::digest::{BlobDigest, DiffId, Digest};

/// Where one member's bytes are, and what they hold.
///
/// The last three fields serve re-export and are absent from indexes written before them
/// (such an index still serves the reuse of compressed bytes): `key` lets a re-export skip
/// reading the member's files (`identity.rs`), and the two midstates let it resume the
/// DiffID and the blob digest after the member instead of hashing everything up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Digest of the tar bytes the member holds.
    pub tar_digest: Digest,
    /// Number of tar bytes the member holds.
    pub tar_size: u64,
    /// Offset of the member's compressed bytes in the blob.
    pub offset: u64,
    /// Number of compressed bytes.
    pub size: u64,
    /// CRC-32 (ISO-HDLC, as gzip's) of the compressed bytes, checked when they are reused.
    pub crc32: u32,
    /// The member key (`None` when some content it holds had no trusted file identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Digest>,
    /// SHA-256 state of the tar stream (DiffID) after this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar_state: Option<Midstate>,
    /// SHA-256 state of the blob (blob digest) after this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob_state: Option<Midstate>,
}

/// The members of one compressed layer blob, in blob order.
///
/// Serialized (serde) as
/// `{"format":1,"compression":"gzip","level":6,"blob":"sha256:…","diff_id":"sha256:…",
/// "members":[{"tar_digest":"sha256:…","tar_size":…,"offset":…,"size":…,"crc32":…,
/// "key":"sha256:…","tar_state":{…},"blob_state":{…}}]}` (a [`Midstate`] is
/// `{"len":…,"state":"<hex>","tail":"<hex>"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberIndex {
    /// The member format version ([`FORMAT_VERSION`]) the blob was written with.
    pub format: u32,
    pub compression: Compression,
    /// The pinned level the blob was written with (informational; implied by `format`).
    pub level: i32,
    /// The blob this index describes.
    pub blob: BlobDigest,
    /// The DiffID of the layer.
    pub diff_id: DiffId,
    pub members: Vec<MemberRecord>,
}

impl MemberIndex {
    /// Size of the blob the index describes.
    pub fn blob_size(&self) -> u64 {
        self.members.last().map_or(0, |m| m.offset + m.size)
    }

    /// Size of the layer's tar stream.
    pub fn tar_size(&self) -> u64 {
        self.members.iter().map(|m| m.tar_size).sum()
    }

    /// Check that the index is of this format and its members tile the blob.
    pub fn validate(&self) -> Result<(), CompressError> {
        if self.format != FORMAT_VERSION {
            return Err(CompressError::IndexFormat {
                found: self.format,
                expected: FORMAT_VERSION,
            });
        }
        if self.compression == Compression::Uncompressed {
            return Err(CompressError::IndexInconsistent(
                "uncompressed layers have no members to reuse",
            ));
        }
        let mut offset = 0;
        for m in &self.members {
            if m.offset != offset {
                return Err(CompressError::IndexInconsistent(
                    "member offsets do not follow each other",
                ));
            }
            if m.size == 0 || m.tar_size == 0 {
                return Err(CompressError::IndexInconsistent("empty member"));
            }
            offset += m.size;
        }
        Ok(())
    }
}

/// A previous blob and its member index, opened for reuse by [`super::LayerEncoder`].
///
/// Reads use positioned I/O (`pread`), so compression workers fetch and check reused members in
/// parallel without sharing a file cursor.
#[derive(Debug)]
pub struct PreviousBlob {
    file: File,
    path: Option<PathBuf>,
    compression: Compression,
    by_content: HashMap<(Digest, u64), MemberRecord>,
    members: Vec<MemberRecord>,
}

impl PreviousBlob {
    /// Open the blob at `path` described by `index`.
    pub fn open(path: impl AsRef<Path>, index: &MemberIndex) -> Result<Self, CompressError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| CompressError::OpenPrevious {
            path: path.to_owned(),
            source,
        })?;
        let mut blob = Self::from_file(file, index)?;
        blob.path = Some(path.to_owned());
        Ok(blob)
    }

    /// Use an already open blob described by `index`.
    pub fn from_file(file: File, index: &MemberIndex) -> Result<Self, CompressError> {
        index.validate()?;
        let actual = file
            .metadata()
            .map_err(|source| CompressError::OpenPrevious {
                path: PathBuf::from("<previous blob>"),
                source,
            })?
            .len();
        if actual != index.blob_size() {
            return Err(CompressError::PreviousSize {
                indexed: index.blob_size(),
                actual,
            });
        }
        let by_content = index
            .members
            .iter()
            .map(|m| ((m.tar_digest, m.tar_size), *m))
            .collect();
        Ok(Self {
            file,
            path: None,
            compression: index.compression,
            by_content,
            members: index.members.clone(),
        })
    }

    /// The compression of the previous blob; only a layer of the same compression reuses it.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The path the blob was opened from, if it was opened by path.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The `k`-th member of the previous blob.
    pub(crate) fn record(&self, k: usize) -> Option<&MemberRecord> {
        self.members.get(k)
    }

    /// Number of members of the previous blob.
    pub(crate) fn members(&self) -> usize {
        self.members.len()
    }

    /// The compressed bytes of a member holding exactly the tar bytes `tar_digest`/`tar_size`,
    /// read into `out` and checked against their recorded CRC-32 (returned). `None` when there
    /// is no such member or its bytes cannot be read or do not match.
    pub(crate) fn fetch(
        &self,
        tar_digest: &Digest,
        tar_size: u64,
        out: &mut Vec<u8>,
    ) -> Option<u32> {
        let record = self.by_content.get(&(*tar_digest, tar_size))?;
        Self::read_checked(&self.file, record, out)
    }

    /// The compressed bytes of the `k`-th member, checked like [`Self::fetch`]'s.
    pub(crate) fn fetch_record(&self, k: usize, out: &mut Vec<u8>) -> Option<u32> {
        Self::read_checked(&self.file, self.members.get(k)?, out)
    }

    fn read_checked(file: &File, record: &MemberRecord, out: &mut Vec<u8>) -> Option<u32> {
        let len = usize::try_from(record.size).ok()?;
        out.clear();
        out.resize(len, 0);
        file.read_exact_at(out, record.offset).ok()?;
        let crc = crc32(out);
        (crc == record.crc32).then_some(crc)
    }
}

/// CRC-32 of `bytes` (the gzip polynomial, through `flate2`'s SIMD implementation).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}
