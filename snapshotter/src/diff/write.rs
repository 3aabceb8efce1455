//! Appending sorted [`Change`]s to a [`LayerWriter`], reading file contents from the upperdir.

use std::io::{BufReader, Read, Write};

use super::{Change, ChangeKind, DiffError, DiffSummary, Result};
use crate::layer::{Entry, EntryKind, FileIdentity, FileSource, LayerPath, LayerWriter, NodeEntry};

/// `vouched`: the content identity of a regular file, when the caller has one (see
/// `UpperDiff::write_to_vouched`); such files are offered unread.
pub(super) fn write<W: Write>(
    changes: &[Change],
    layer: &mut LayerWriter<W>,
    vouched: &dyn Fn(&LayerPath) -> Option<FileIdentity>,
) -> Result<DiffSummary> {
    let mut summary = DiffSummary::default();
    for change in changes {
        let layer_err = |source| DiffError::Layer {
            path: change.path.clone(),
            source,
        };
        let entry = |kind| Entry {
            path: change.path.clone(),
            kind,
            mode: change.mode,
            uid: change.uid,
            gid: change.gid,
            mtime: change.mtime,
        };
        match &change.kind {
            ChangeKind::Directory => layer
                .append_with_xattrs(&entry(EntryKind::Directory), &change.xattrs, None)
                .map_err(layer_err)?,
            ChangeKind::File { size, source }
                if let Some(identity) = vouched(&change.path).filter(|i| i.size == *size) =>
            {
                layer
                    .append_file(
                        &entry(EntryKind::File { size: *size }),
                        &change.xattrs,
                        FileSource {
                            path: source.clone(),
                            identity,
                        },
                    )
                    .map_err(layer_err)?;
                summary.content_bytes += size;
            }
            ChangeKind::File { size, source } => {
                let file = fs_err::File::open(source).map_err(|e| DiffError::Read {
                    path: source.clone(),
                    source: e,
                })?;
                let mut content = BufReader::with_capacity(128 * 1024, file);
                layer
                    .append_with_xattrs(
                        &entry(EntryKind::File { size: *size }),
                        &change.xattrs,
                        Some(&mut content as &mut dyn Read),
                    )
                    .map_err(layer_err)?;
                summary.content_bytes += size;
            }
            ChangeKind::Symlink { target } => layer
                .append_with_xattrs(
                    &entry(EntryKind::Symlink {
                        target: target.clone(),
                    }),
                    &change.xattrs,
                    None,
                )
                .map_err(layer_err)?,
            ChangeKind::Hardlink { target } => layer
                .append(
                    &entry(EntryKind::Hardlink {
                        target: target.clone(),
                    }),
                    None,
                )
                .map_err(layer_err)?,
            ChangeKind::Node(node) => layer
                .append_node(
                    &NodeEntry {
                        path: change.path.clone(),
                        node: *node,
                        mode: change.mode,
                        uid: change.uid,
                        gid: change.gid,
                        mtime: change.mtime,
                    },
                    &change.xattrs,
                )
                .map_err(layer_err)?,
            ChangeKind::Whiteout | ChangeKind::OpaqueWhiteout => {
                summary.whiteouts += 1;
                layer
                    .append(
                        &entry(EntryKind::File { size: 0 }),
                        Some(&mut std::io::empty()),
                    )
                    .map_err(layer_err)?;
            }
        }
        summary.entries += 1;
    }
    Ok(summary)
}
