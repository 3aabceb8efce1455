//! kiln's snapshotter crate: digest types, and the layer writer that turns a set of filesystem
//! entries into a deterministic, compressed OCI layer.
//!
//! Not responsible for: Dockerfiles, registries or images (see DESIGN.md).

pub mod apply;
pub mod compress;
pub mod diff;
pub mod digest;
pub mod layer;
pub mod snapshot;

pub use digest::{BlobDigest, ChainId, DiffId, Digest, DigestError, DigestReader, DigestWriter};
