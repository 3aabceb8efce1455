//! Image archives: `docker-archive` (Docker's `docker save` format: `manifest.json`, the legacy
//! `repositories` file, configs and layer tars) and `oci-archive` (an OCI image layout in a tar).
//!
//! * [`write`] writes either from the store (`kiln save`, and `kiln build --output type=docker|oci`
//!   through `solver::output::archive`), several images and names in one archive;
//! * [`load`] reads either into the store (`kiln load`): archives written by `docker save` (20.10's
//!   legacy layout and 25+'s OCI layout with `manifest.json`), `podman save` and `skopeo copy` in
//!   both formats, and kiln's own; the archive itself may be gzip, bzip2, xz or zstd compressed.
//!   Every blob's digest and every layer's DiffID is checked while the tar streams, and nothing
//!   becomes visible in the store (no blob, no tag) unless the whole archive checks out.
//!
//! Not responsible for: where the bytes come from or go (files, stdin, stdout: the caller passes
//! a reader or writer), unpacking layers into snapshots (the CLI does that after a load, as for a
//! pull), or choosing which images to save (the CLI resolves names).

pub mod compression;
pub mod docker;
pub mod load;
mod scan;
pub mod write;

use std::path::PathBuf;

use snapshotter::Digest;

use crate::store::StoreError;

pub use load::{Loaded, LoadedImage, load};
pub use write::{ArchivedManifest, SaveImage, WriteOptions, write_archive};

/// `index.json` annotation with the full image name (containerd's `images.AnnotationImageName`).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// `index.json` annotation with the tag (OCI image spec `org.opencontainers.image.ref.name`).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Which archive flavour to write (or which one was read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout (`oci-layout`, `index.json`, `blobs/`).
    Oci,
    /// Docker's format: `manifest.json` (kiln also writes the OCI layout beside it, as Docker
    /// 25+ and BuildKit do).
    Docker,
}

impl ArchiveFormat {
    /// The name `--format` and skopeo's transports use: `oci-archive`, `docker-archive`.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveFormat::Oci => "oci-archive",
            ArchiveFormat::Docker => "docker-archive",
        }
    }
}

/// Errors of writing and reading archives.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading the archive")]
    Read(#[source] std::io::Error),
    #[error("writing the archive")]
    Write(#[source] std::io::Error),
    #[error(
        "the archive is not an image archive: it has neither manifest.json (docker-archive) nor index.json (oci-archive)"
    )]
    NotAnImageArchive,
    #[error(
        "the archive is a legacy Docker v1 archive (a `repositories` file only), which kiln cannot load"
    )]
    LegacyV1,
    #[error("{path} in the archive is not valid JSON for {what}")]
    BadJson {
        path: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} in the archive is larger than {limit} bytes, too large for {what}")]
    TooLarge {
        path: String,
        what: &'static str,
        limit: u64,
    },
    #[error("{path} is referenced by {referrer} but is not in the archive")]
    Missing { path: String, referrer: String },
    #[error("blob {digest} is referenced by {referrer} but is not in the archive")]
    MissingBlob { digest: Digest, referrer: String },
    #[error("{path} in the archive is corrupt: its content hashes to {actual}")]
    CorruptEntry { path: String, actual: Digest },
    #[error("blob {digest} in the archive has {actual} bytes, but {referrer} says {expected}")]
    SizeMismatch {
        digest: Digest,
        referrer: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "layer {index} of {image} ({path}) does not match the image config: its DiffID is {actual}, the config says {expected}"
    )]
    DiffIdMismatch {
        image: String,
        index: usize,
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {index} of {image} ({path}) is not a valid {compression} stream: {reason}")]
    BadCompression {
        image: String,
        index: usize,
        path: String,
        compression: &'static str,
        reason: String,
    },
    #[error("{image} has {layers} layers but its config lists {diff_ids} DiffIDs")]
    LayerCount {
        image: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("invalid image name `{name}` in the archive: {reason}")]
    BadName { name: String, reason: String },
    #[error("{what} has media type `{media_type}`, which kiln cannot load")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("{what} has no image for {platform}")]
    NoPlatform { what: String, platform: String },
    #[error("the archive holds no image")]
    Empty,
    #[error("{} is not valid UTF-8", .0.display())]
    NonUtf8Path(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
}
