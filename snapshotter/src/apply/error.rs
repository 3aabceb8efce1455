//! [`ApplyError`]: why a layer apply failed, naming the layer, the entry and (for verification
//! failures) both digests. Any error means the target was left exactly as it was.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::digest::{BlobDigest, DiffId};

/// Module-local result.
pub type Result<T, E = ApplyError> = std::result::Result<T, E>;

/// How errors name the layer being applied: by its expected blob digest, else its expected DiffID,
/// and always the directory it was being applied to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerName {
    pub digest: Option<BlobDigest>,
    pub diff_id: Option<DiffId>,
    pub target: PathBuf,
}

impl fmt::Display for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.digest, &self.diff_id) {
            (Some(digest), _) => write!(f, "layer {digest}")?,
            (None, Some(diff_id)) => write!(f, "layer with DiffID {diff_id}")?,
            (None, None) => f.write_str("layer")?,
        }
        write!(f, " (into `{}`)", self.target.display())
    }
}

/// Why a path taken from the layer (an entry name, a hardlink target or a whiteout) was refused
/// before touching the filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafePathReason {
    /// A `..` component: refused outright rather than resolved (containerd refuses the same
    /// "breakout" names in `pkg/archive/tar.go`).
    ParentComponent,
    /// The name is empty once `/` and `.` components are removed, for an entry that needs a name.
    Empty,
    /// Longer than `PATH_MAX` (4096 bytes).
    TooLong,
    /// A whiteout whose hidden name is empty, `.` or `..` (it would name its own or the parent
    /// directory instead of an entry inside its directory).
    WhiteoutOutsideDirectory,
    /// A hardlink that names itself.
    SelfLink,
}

impl fmt::Display for UnsafePathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ParentComponent => "it has a `..` component",
            Self::Empty => "it is empty",
            Self::TooLong => "it is longer than 4096 bytes",
            Self::WhiteoutOutsideDirectory => "the whiteout refers outside its directory",
            Self::SelfLink => "the hardlink names itself",
        })
    }
}

/// A bound from [`super::Limits`] that the layer exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Entries,
    UncompressedSize,
    /// Bytes of tar metadata (headers, PAX records, GNU long names) for one entry.
    EntryMetadata,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Entries => "number of entries",
            Self::UncompressedSize => "uncompressed size",
            Self::EntryMetadata => "metadata bytes of one entry",
        })
    }
}

/// Why applying a layer failed. The target is unchanged whenever one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{layer}: DiffID mismatch: expected {expected}, the tar stream has {actual}")]
    DiffIdMismatch {
        layer: Box<LayerName>,
        expected: DiffId,
        actual: DiffId,
    },
    #[error("{layer}: blob digest mismatch: expected {expected}, the blob has {actual}")]
    DigestMismatch {
        layer: Box<LayerName>,
        expected: BlobDigest,
        actual: BlobDigest,
    },
    #[error("{layer}: blob is {format}, which is not a supported layer compression")]
    UnsupportedCompression {
        layer: Box<LayerName>,
        format: &'static str,
    },
    #[error("{layer}: reading the layer stream (after {uncompressed_offset} uncompressed bytes)")]
    Read {
        layer: Box<LayerName>,
        uncompressed_offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("{layer}: the {limit} exceeds the limit of {max}")]
    LimitExceeded {
        layer: Box<LayerName>,
        limit: Limit,
        max: u64,
    },
    #[error("{layer}: refusing path `{path}`: {reason}")]
    UnsafePath {
        layer: Box<LayerName>,
        path: String,
        reason: UnsafePathReason,
    },
    #[error("{layer}: path `{path}` does not resolve inside the root")]
    Resolve {
        layer: Box<LayerName>,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{layer}: hardlink `{path}` -> `{target}` cannot be created")]
    Hardlink {
        layer: Box<LayerName>,
        path: String,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("{layer}: entry `{path}` has unsupported tar type `{type_flag}`")]
    UnsupportedEntry {
        layer: Box<LayerName>,
        path: String,
        type_flag: char,
    },
    #[error("{layer}: entry `{path}` has an invalid header field `{field}`")]
    BadHeader {
        layer: Box<LayerName>,
        path: String,
        field: &'static str,
    },
    #[error("{layer}: entry `{path}` needs {what}, which requires root")]
    NotPrivileged {
        layer: Box<LayerName>,
        path: String,
        what: &'static str,
    },
    #[error("{layer}: {op} `{path}`")]
    Fs {
        layer: Box<LayerName>,
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{layer}: {op} `{}`", path.display())]
    Target {
        layer: Box<LayerName>,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ApplyError {
    /// The layer this error is about.
    pub fn layer(&self) -> &LayerName {
        match self {
            Self::DiffIdMismatch { layer, .. }
            | Self::DigestMismatch { layer, .. }
            | Self::UnsupportedCompression { layer, .. }
            | Self::Read { layer, .. }
            | Self::LimitExceeded { layer, .. }
            | Self::UnsafePath { layer, .. }
            | Self::Resolve { layer, .. }
            | Self::Hardlink { layer, .. }
            | Self::UnsupportedEntry { layer, .. }
            | Self::BadHeader { layer, .. }
            | Self::NotPrivileged { layer, .. }
            | Self::Fs { layer, .. }
            | Self::Target { layer, .. } => layer,
        }
    }
}
