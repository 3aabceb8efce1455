//! Snapshots: the filesystem trees that builds and containers run on, in containerd's vocabulary,
//! with an overlayfs driver and a copying driver behind one [`Snapshotter`] trait.
//!
//! # Vocabulary
//!
//! - An **active** snapshot is writable and addressed by an [`ActiveKey`]. It is created by
//!   [`Snapshotter::prepare`] on top of an optional committed parent.
//! - A **view** is a read-only active snapshot ([`Snapshotter::view`]); it cannot be committed.
//! - A **committed** snapshot is immutable and addressed by a [`CommittedName`]. It is created by
//!   [`Snapshotter::commit`], which consumes the [`ActiveSnapshot`] (type-state: the key stops
//!   being usable the moment it becomes a name). Only committed snapshots can be parents.
//! - Keys and names share one namespace. A snapshot with children cannot be removed.
//!
//! # Lifecycle
//!
//! ```no_run
//! use std::path::Path;
//! use snapshotter::snapshot::{self, ActiveKey, CommittedName, Snapshotter};
//! use snapshotter::{ChainId, DiffId, Digest};
//!
//! # fn main() -> Result<(), snapshotter::snapshot::SnapshotError> {
//! // Overlay where the store's filesystem can mount it, else copying (`None` = automatic).
//! let sn = snapshot::open(Path::new("/var/lib/kiln/snapshots"), None)?;
//!
//! // 1. A pulled base layer: prepare without parent, apply the layer tar into the directory
//! //    that collects writes, commit under the layer stack's ChainID.
//! let diff_id = DiffId(Digest::of(b"layer tar"));
//! let chain = ChainId::of_stack(&[diff_id]).expect("one layer");
//! let base = match sn.committed_for_chain(&chain)? {
//!     Some(existing) => existing, // another image already pulled this stack: share it
//!     None => {
//!         let extract = sn.prepare(ActiveKey::new("extract-1")?, None)?;
//!         let _apply_into = extract.mounts().upperdir();
//!         extract.commit(&sn, CommittedName::for_chain(&chain))?
//!     }
//! };
//!
//! // 2. A RUN step on top: mount, run, unmount (the guard borrows the snapshot, so it cannot
//! //    be committed while mounted), then read the changes and commit.
//! let step = sn.prepare(ActiveKey::new("build-7")?, Some(&base))?;
//! {
//!     let rootfs = step.mounts().mount_at(Path::new("/run/kiln/rootfs"))?;
//!     // ... sandbox runs the command in rootfs.target() ...
//!     rootfs.unmount()?;
//! }
//! let _changes = step.changes(); // overlay: the upperdir; copy: both full trees
//! let layer = sn.commit(CommittedName::new("build-7")?, step)?;
//!
//! // 3. Inspect and clean up.
//! let view = sn.view(ActiveKey::new("inspect-7")?, Some(&layer))?;
//! let _usage = sn.usage((&layer).into())?; // bytes and inodes
//! let _all = sn.walk()?;
//! sn.remove(view.key().into())?;
//! sn.remove((&layer).into())?; // refused while `layer` has children
//! # Ok(())
//! # }
//! ```
//!
//! # ChainIDs
//!
//! A committed snapshot that holds a pulled layer stack is named by the stack's ChainID
//! ([`CommittedName::for_chain`], the text `sha256:<hex>`); the `sha256:` prefix is reserved for
//! such names. Two images that share base layers therefore share their snapshots:
//! [`Snapshotter::committed_for_chain`] finds an existing one before anything is applied. Build
//! steps may use the same scheme once their layer's DiffID is known, or names of their own.
//!
//! # Crash safety
//!
//! Metadata is one record per snapshot, replaced atomically; a snapshot is marked as being
//! prepared before long work; records of dead processes and directories without a record are
//! swept when a store is opened. A snapshot's files are fsynced before its record says
//! committed. Details and the on-disk layout: `meta.rs`.
//!
//! Not responsible for: layer tar diff/apply (`diff`, `apply`), compression, images, or the mount
//! namespace a rootfs is used in (the sandbox).

mod copy;
mod durable;
mod error;
mod id;
mod local;
mod meta;
mod mountpoint;
mod mounts;
mod overlay;
mod tree;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use error::{IdKind, KernelLog, MountStep, Result, SnapshotError};
pub use id::{ActiveKey, CommittedName, MAX_ID_LEN, SnapshotName, SnapshotRef};
pub use local::LocalSnapshotter;
pub use mountpoint::{SweepReport, TempMountpoint, mountpoint_in, sweep_stale_mounts};
pub use mounts::{
    Access, BindMount, MountGuard, Mounts, OverlayApi, OverlayMount, UpperDir, overlay_api, unmount,
};
pub use overlay::MAX_LAYERS as OVERLAY_MAX_LAYERS;

use crate::digest::ChainId;

/// Open (creating if needed) the snapshot store under `root` with `driver`, or with the driver
/// chosen by probing when `None`: overlay if an overlay can be mounted on the store's
/// filesystem, else copy. Each driver keeps its own subdirectory (`root/overlay`, `root/copy`),
/// because their snapshots are not interchangeable.
pub fn open(root: &Path, driver: Option<StorageDriver>) -> Result<LocalSnapshotter> {
    LocalSnapshotter::open(root, driver)
}

/// The storage driver (`--storage-driver overlay|copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageDriver {
    /// Committed snapshots are overlayfs lower layers; an active snapshot is an upperdir.
    Overlay,
    /// Every snapshot is a full copy of its parent's tree (reflinked where possible); no mounts
    /// beyond a bind. For filesystems or environments where overlayfs cannot be used.
    Copy,
}

impl StorageDriver {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Overlay => "overlay",
            Self::Copy => "copy",
        }
    }
}

impl fmt::Display for StorageDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StorageDriver {
    type Err = SnapshotError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "overlay" | "overlayfs" => Ok(Self::Overlay),
            "copy" | "native" => Ok(Self::Copy),
            _ => Err(SnapshotError::UnknownDriver {
                value: s.to_owned(),
            }),
        }
    }
}

/// What a snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Active,
    View,
    Committed,
}

/// A snapshot's metadata, as `stat` and `walk` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: SnapshotName,
    pub kind: Kind,
    pub parent: Option<CommittedName>,
    pub created: SystemTime,
}

/// Disk usage, counted like `du`: bytes of allocated blocks and distinct inodes (hard links once).
/// Overlay: the snapshot's own layer only. Copy: its full tree (before reflink sharing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub size: u64,
    pub inodes: u64,
}

/// Where the differ finds an active snapshot's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Overlay: exactly the changes, with overlayfs whiteouts and opaque markers; read it
    /// without walking the rest of the tree.
    Upper(PathBuf),
    /// Copy: the full new tree, to compare against the parent's full tree (`None`: no parent,
    /// everything is new).
    FullTree {
        tree: PathBuf,
        parent: Option<PathBuf>,
    },
}

/// A writable snapshot being built: returned by [`Snapshotter::prepare`], consumed by
/// [`Snapshotter::commit`]. Not `Clone`: one handle per prepare.
///
/// Dropping it does not remove anything: the snapshot stays on disk under its key (owned by this
/// process, so swept after the process is gone unless persisted).
#[derive(Debug, PartialEq, Eq)]
pub struct ActiveSnapshot {
    key: ActiveKey,
    parent: Option<CommittedName>,
    mounts: Mounts,
    changes: Changes,
}

impl ActiveSnapshot {
    pub fn key(&self) -> &ActiveKey {
        &self.key
    }

    pub fn parent(&self) -> Option<&CommittedName> {
        self.parent.as_ref()
    }

    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// `sn.commit(name, self)`, for the reading order `active.commit(&sn, name)`.
    pub fn commit<S: Snapshotter + ?Sized>(
        self,
        sn: &S,
        name: CommittedName,
    ) -> Result<CommittedName> {
        sn.commit(name, self)
    }
}

/// A read-only view of a committed snapshot (or of an empty tree). Has no `commit`.
#[derive(Debug, PartialEq, Eq)]
pub struct ViewSnapshot {
    key: ActiveKey,
    parent: Option<CommittedName>,
    mounts: Mounts,
}

impl ViewSnapshot {
    pub fn key(&self) -> &ActiveKey {
        &self.key
    }

    pub fn parent(&self) -> Option<&CommittedName> {
        self.parent.as_ref()
    }

    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }
}

/// A snapshot store (containerd's `snapshots.Snapshotter`, synchronous and typed).
///
/// Every method is a transaction on the store's metadata, safe to call from several threads and
/// processes at once. Errors name the snapshot they are about.
pub trait Snapshotter: Send + Sync {
    /// The driver behind this store.
    fn driver(&self) -> StorageDriver;

    /// Create an active snapshot `key` whose tree starts as `parent`'s (empty without parent).
    /// Fails if `key` is taken, or `parent` is not a committed snapshot.
    fn prepare(&self, key: ActiveKey, parent: Option<&CommittedName>) -> Result<ActiveSnapshot>;

    /// Create a read-only view `key` of `parent` (an empty tree without parent).
    fn view(&self, key: ActiveKey, parent: Option<&CommittedName>) -> Result<ViewSnapshot>;

    /// Turn `active` into the committed snapshot `name` (its key is gone afterwards). Unmount it
    /// first. On error the active snapshot stays under its key: `resume` or `remove` it.
    fn commit(&self, name: CommittedName, active: ActiveSnapshot) -> Result<CommittedName>;

    /// A handle on an existing active snapshot (e.g. one persisted by an earlier process).
    fn resume(&self, key: &ActiveKey) -> Result<ActiveSnapshot>;

    /// Detach an active snapshot or view from the process that prepared it, so that it survives
    /// that process (a detached container's rootfs). It is then only removed explicitly.
    fn persist(&self, key: &ActiveKey) -> Result<()>;

    /// How to mount the active snapshot or view `key`.
    fn mounts(&self, key: &ActiveKey) -> Result<Mounts>;

    /// Metadata of any snapshot.
    fn stat(&self, snapshot: SnapshotRef<'_>) -> Result<Info>;

    /// Disk usage: measured at commit for committed snapshots, now for active ones.
    fn usage(&self, snapshot: SnapshotRef<'_>) -> Result<Usage>;

    /// Every snapshot, ordered by key/name.
    fn walk(&self) -> Result<Vec<Info>>;

    /// Remove a snapshot. Refused while other snapshots (active, views or committed) have it as
    /// parent. Metadata goes first, so a crash leaves at worst an orphan directory for the sweep.
    fn remove(&self, snapshot: SnapshotRef<'_>) -> Result<()>;

    /// The committed snapshot holding the layer stack `chain`, if there is one.
    fn committed_for_chain(&self, chain: &ChainId) -> Result<Option<CommittedName>> {
        let name = CommittedName::for_chain(chain);
        match self.stat(SnapshotRef::Committed(&name)) {
            Ok(info) if info.kind == Kind::Committed => Ok(Some(name)),
            Ok(_) | Err(SnapshotError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_driver_round_trips() {
        for driver in [StorageDriver::Overlay, StorageDriver::Copy] {
            assert_eq!(driver.to_string().parse::<StorageDriver>().unwrap(), driver);
        }
        assert!(matches!(
            "zfs".parse::<StorageDriver>(),
            Err(SnapshotError::UnknownDriver { .. })
        ));
    }
}
