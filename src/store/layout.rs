//! Where everything lives under the store root. Every store path is made here and nowhere else
//! (STYLE.md habit 3), so the on-disk layout can be read in one place:
//!
//! ```text
//! <root>/
//!   blobs/sha256/<hex>       content, as in an OCI image layout (readable by standard tools)
//!   ingest/                  temp files of blobs being written (same filesystem as blobs/)
//!   refs.json                image references: normalized name:tag → manifest digest
//!   locks/<name>.lock        flock files; taken in a fixed order (content → images)
//!   snapshots/               the snapshotter's root (`snapshotter::snapshot::open`): unpacked
//!                            layer stacks named by ChainID, and the active snapshots of steps
//!   cache/mounts/<id>/       RUN --mount=type=cache directories
//!   cache/build/             the build cache (see `cache`): keys/, steps/, stat/, sources/
//!   layers/                  member indexes of written layers (incremental re-export)
//!   mnt/                     mountpoints of the rootfs of running steps (one temp dir each)
//! ```
//!
//! Not responsible for: creating or locking anything (see `content` and `refs`).

use std::path::{Path, PathBuf};

use snapshotter::Digest;

/// The store root and the paths under it.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

/// Named lock files, listed in the order they must be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockName {
    /// Guards deletion of blobs against concurrent readers that are about to reference them.
    Content,
    /// Guards `refs.json`.
    Images,
}

impl LockName {
    fn file_name(self) -> &'static str {
        match self {
            LockName::Content => "content.lock",
            LockName::Images => "images.lock",
        }
    }
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    pub fn refs_file(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    /// The snapshotter's root; opened only by commands that need a filesystem.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// Parent of the temporary mountpoints of steps' root filesystems: inside the store, so
    /// every mount a kiln process makes is under its own store root.
    pub fn mounts_dir(&self) -> PathBuf {
        self.root.join("mnt")
    }

    /// Member indexes of the layer blobs kiln wrote, and which step made which (incremental
    /// re-export, `solver::reuse`).
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// RUN `--mount=type=cache` directories, one per cache id (`kiln builder prune` clears them).
    pub fn cache_mounts_dir(&self) -> PathBuf {
        self.root.join("cache").join("mounts")
    }

    /// The build cache (`cache`): step records by key, stat caches of contexts, source listings.
    pub fn build_cache_dir(&self) -> PathBuf {
        self.root.join("cache").join("build")
    }

    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    pub fn lock(&self, name: LockName) -> PathBuf {
        self.locks_dir().join(name.file_name())
    }
}
