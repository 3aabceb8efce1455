//! Errors of layer compression.

use std::io;
use std::path::PathBuf;

use super::Compression;

/// Why compressing a layer, or opening a previous blob for reuse, failed.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("writing the compressed layer")]
    Write(#[source] io::Error),
    #[error("compressing a {compression:?} member of {tar_bytes} tar bytes")]
    Encode {
        compression: Compression,
        tar_bytes: usize,
        #[source]
        source: io::Error,
    },
    #[error("starting compression worker thread")]
    Spawn(#[source] io::Error),
    #[error("a compression worker stopped before returning its member")]
    WorkerLost,
    #[error("entry `{path}` was given {given} data bytes but declared {declared}")]
    DataLength {
        path: String,
        declared: u64,
        given: u64,
    },
    #[error("{0} called while no entry is open")]
    NoOpenEntry(&'static str),
    #[error("entry `{path}` started before entry `{open}` was finished")]
    EntryOpen { path: String, open: String },
    #[error("entry `{path}` has {len} header bytes; headers must be whole 512-byte blocks")]
    HeaderBlocks { path: String, len: usize },
    #[error("opening previous blob {path}")]
    OpenPrevious {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "member index has format {found}, this kiln writes format {expected}; it cannot be reused"
    )]
    IndexFormat { found: u32, expected: u32 },
    #[error("member index is inconsistent: {0}")]
    IndexInconsistent(&'static str),
    #[error("previous blob has {actual} bytes but its member index describes {indexed}")]
    PreviousSize { indexed: u64, actual: u64 },
    #[error("an entry was offered for reuse while the encoder was not offering")]
    NotOffering,
    #[error("{pending} offered entries must be written (replayed) before {action}")]
    EntriesHeld {
        pending: usize,
        action: &'static str,
    },
}
