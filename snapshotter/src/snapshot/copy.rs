//! The copy driver (containerd's "native" snapshotter): every active snapshot is a full copy of
//! its parent's tree, so nothing but a bind mount is ever needed. For filesystems where overlayfs
//! cannot be an upper layer, and environments that cannot mount overlays.
//!
//! - prepare copies the parent's `fs/` into the new `fs/` (`tree::copy_tree`: reflink, else
//!   `copy_file_range`, preserving modes, owners, xattrs, hard links, devices and times).
//! - a view needs no copy: committed trees are immutable, so it is a read-only bind of the
//!   parent's `fs/` (or of its own empty `fs/` without parent).
//! - the differ compares the new tree against the parent's ([`Changes::FullTree`]).
//!
//! Not responsible for: metadata, or the copy mechanics themselves (`tree.rs`).

use super::error::{Result, SnapshotError};
use super::meta::{Layout, Record};
use super::mounts::{Access, BindMount, Mounts};
use super::{Changes, Kind, tree};

/// Create the tree of a new active snapshot or view.
pub(crate) fn materialize(layout: &Layout, record: &Record) -> Result<()> {
    let fs = layout.fs_dir(record.id);
    fs_err::create_dir_all(&fs).map_err(SnapshotError::fs("create snapshot directory"))?;
    match (record.kind, record.parent) {
        (Kind::Active, Some(parent)) => tree::copy_tree(&layout.fs_dir(parent), &fs),
        _ => Ok(()),
    }
}

pub(crate) fn mounts(layout: &Layout, record: &Record) -> Mounts {
    match (record.kind, record.parent) {
        (Kind::Active, _) => Mounts::Bind(BindMount {
            source: layout.fs_dir(record.id),
            access: Access::ReadWrite,
        }),
        (_, Some(parent)) => Mounts::Bind(BindMount {
            source: layout.fs_dir(parent),
            access: Access::ReadOnly,
        }),
        (_, None) => Mounts::Bind(BindMount {
            source: layout.fs_dir(record.id),
            access: Access::ReadOnly,
        }),
    }
}

pub(crate) fn changes(layout: &Layout, record: &Record) -> Changes {
    Changes::FullTree {
        tree: layout.fs_dir(record.id),
        parent: record.parent.map(|parent| layout.fs_dir(parent)),
    }
}
