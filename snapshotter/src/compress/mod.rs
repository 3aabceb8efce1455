//! Layer compression: a tar stream in, an OCI layer blob out, with the DiffID (of the tar), the
//! blob digest (of the compressed bytes) and a member index computed in the same pass.
//!
//! Responsible for: the member format below, compressing members on a bounded worker pool while
//! writing them strictly in order, and reusing the compressed bytes of unchanged members from a
//! previous blob. Not responsible for: producing tar entries (that is [`crate::layer`]), or
//! storing blobs and member indexes (the engine's content store does that).
//!
//! # Member format (version [`FORMAT_VERSION`])
//!
//! A compressed layer is a concatenation of independently compressed *members*: gzip members
//! (RFC 1952 §2.2 allows any number of members in one file; every gzip reader, `pigz` output
//! included, decodes them as one stream) or zstd frames (RFC 8878 §3.1: a zstd stream is a
//! sequence of frames). Each member holds a contiguous run of the tar stream, and where the runs
//! are cut depends **only on the entries a member holds**, never on thread count, timing or
//! buffer sizes. The rule ([`chunker`]):
//!
//! 1. A *large* file (more than [`SPLIT`] bytes of data) is isolated: a member ends before its
//!    headers, then one member ends after every [`SPLIT`] bytes of its data (counted from the
//!    start of its data), and one after its padding. An unchanged large file therefore always
//!    yields the same members, wherever it sits in the layer.
//! 2. Every other entry (headers, data, padding: `s` tar bytes) is appended to the open member.
//!    After it, the member ends when it holds at least [`MAX_MEMBER`] bytes, or when it holds at
//!    least [`MIN_MEMBER`] bytes and the entry's path *fires*: the first 8 bytes (big-endian) of
//!    `sha256("kiln.layer.member.v1\0" ‖ path)` modulo [`AVG_SPAN`] are less than `s`. A path
//!    fires with probability `s / AVG_SPAN`, so a member holds about `MIN_MEMBER + AVG_SPAN` tar
//!    bytes whatever the entry sizes.
//! 3. The end-of-archive blocks (1024 zero bytes) go into the last member; a member is never
//!    empty.
//!
//! Whether an entry fires depends on that entry alone. The minimum and maximum make a boundary
//! depend on the previous boundary too, but only locally: after an edit, both streams choose
//! among the same candidate boundaries, and once they pick the same one (normally the first or
//! second candidate past the edit) every later boundary is identical. So a small change leaves
//! all members but one or two byte-identical, which is what incremental re-export reuses.
//!
//! Gzip members are raw deflate from `flate2`'s `zlib-rs` backend at [`GZIP_LEVEL`], with a
//! fixed 10-byte header (no name, mtime 0, XFL per level, OS byte 255 "unknown") and the RFC 1952
//! trailer. Zstd members are frames from the vendored libzstd at [`ZSTD_LEVEL`] with the content
//! size and an XXH64 checksum, no dictionary ID. The backend versions are pinned in
//! `snapshotter/Cargo.toml` (zlib-rs 0.6.8, libzstd 1.5.7 via zstd-sys 2.0.16) and guarded by a
//! golden-digest test: when a backend or any rule above changes the bytes, bump
//! [`FORMAT_VERSION`] so that indexes of older blobs are no longer used for reuse.
//!
//! # Invariants
//!
//! - The blob is a pure function of the tar stream, the [`Compression`] and [`FORMAT_VERSION`]:
//!   any thread count, and reuse or not, give the same bytes (tested).
//! - Members are written in tar order; the DiffID is hashed over the tar bytes in order on the
//!   caller's thread, the blob digest over the output in order, in the same pass. A re-export
//!   resumes both from SHA-256 states saved in the previous index ([`Midstate`]) instead of
//!   hashing the members that equal the previous blob's from the start: the result is the
//!   same digest of the same bytes.
//! - A re-export reads no file of the members at the start of the layer whose keys (entry
//!   headers and file identities, `identity.rs`) equal the previous members' keys at the same
//!   positions; it takes their compressed bytes (CRC-checked) and hash states instead. The
//!   first differing member ends that, and the rest is read and hashed, reusing compressed
//!   bytes by tar digest as before. Whatever the path taken, the blob, DiffID and index are
//!   those of an export from scratch (tests in `tests/reexport.rs`), except that member keys
//!   also depend on when files last changed (a file changed within [`RACY_MARGIN`] of an
//!   export gets no key in it).
//! - Working memory is bounded by the in-flight window: at most `threads + 1` members are being
//!   compressed or waiting to be written, each under `MAX_MEMBER + SPLIT` tar bytes (plus their
//!   headers), whatever the layer size. The index grows by one small record per member.

pub mod chunker;
mod codec;
mod encoder;
mod error;
mod identity;
mod index;
mod pool;
mod prefix;
mod sha;

use serde::{Deserialize, Serialize};

pub use chunker::{AVG_SPAN, MAX_MEMBER, MIN_MEMBER, SPLIT};
pub use encoder::{EncodeOptions, EncodeStats, EncodedLayer, LayerEncoder};
pub use error::CompressError;
pub use identity::{FileIdentity, RACY_MARGIN};
pub use index::{MemberIndex, MemberRecord, PreviousBlob};
pub use prefix::Offer;
pub use sha::Midstate;

/// Version of the member format (boundary rule, member headers, backends and levels). Part of
/// every [`MemberIndex`]; an index of another version is never used for reuse.
pub const FORMAT_VERSION: u32 = 1;

/// The pinned gzip level (with the `zlib-rs` backend of `flate2`). Changing it changes every
/// gzip layer digest kiln produces.
pub const GZIP_LEVEL: u32 = 6;

/// The pinned zstd level (libzstd 1.5.7, vendored by `zstd-sys`). Changing it changes every
/// zstd layer digest kiln produces.
pub const ZSTD_LEVEL: i32 = 3;

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
    Uncompressed,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::Uncompressed => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// The pinned level of this compression (0 for uncompressed).
    pub fn level(self) -> i32 {
        match self {
            Compression::Gzip => GZIP_LEVEL as i32,
            Compression::Zstd => ZSTD_LEVEL,
            Compression::Uncompressed => 0,
        }
    }
}
