//! Layer diff from an overlayfs upperdir: the changes one snapshot made on top of its parent,
//! turned into an OCI layer without walking the lower layers (DESIGN.md decision 5).
//!
//! # What the upperdir holds
//!
//! The kernel's overlayfs documentation (`Documentation/filesystems/overlayfs.rst`, sections
//! "whiteouts and opaque directories" and "Non-directories") defines what a write through the
//! merged view leaves in the upper layer:
//!
//! - every created or modified object, copied up whole (data and metadata) on first change, and
//!   every directory on the way to it ("copy up" of the parents);
//! - a **whiteout** for each removed name that a lower layer provides: a character device with
//!   device number 0/0. Since Linux 5.8 whiteouts may share one inode (they are hard links to a
//!   whiteout in the workdir), so they are recognised before hard links are grouped;
//! - an **opaque directory** where a directory replaced something from a lower layer (`rm -r d;
//!   mkdir d`, or a directory created over a whiteout): the xattr `trusted.overlay.opaque` is
//!   `y` (`user.overlay.opaque` on `userxattr` mounts, see [`OverlayXattrs`]), and nothing of the
//!   lower directory shows through;
//! - "Non-directories are always opaque": an upper file, symlink or node simply hides whatever
//!   a lower layer had at its name, directories included, so no whiteout accompanies it.
//!
//! The OCI image spec (`layer.md`, "Whiteouts") maps these one to one: a whiteout becomes an
//! empty file `.wh.<name>` and an opaque directory becomes the directory entry followed by
//! `<dir>/.wh..wh..opq`. [`crate::layer::LayerPath`] sorts whiteouts before their siblings, as
//! the spec asks of layer generators.
//!
//! # Redirects and metacopy must be off
//!
//! With `redirect_dir=on`, renaming a directory stores a `redirect` xattr that points at the
//! lower directory's old path instead of copying it; with `metacopy=on`, a metadata-only change
//! copies up the inode without its data. Either makes the upperdir alone an incomplete record of
//! the change, so snapshots must be mounted with [`REQUIRED_MOUNT_OPTIONS`] (for `userxattr`
//! mounts, [`OverlayXattrs::mount_options`]). The differ refuses an upperdir that is currently
//! mounted with either feature on (read from `/proc/self/mountinfo`, module defaults from
//! `/sys/module/overlay/parameters`), and refuses any entry that carries a `redirect` or
//! `metacopy` xattr, with [`DiffError::Redirect`] and [`DiffError::Metacopy`]. Data-only lower
//! layers (`opaque=x`, `whiteout` xattrs) are refused the same way: an upperdir never contains
//! them.
//!
//! # Unchanged copy-ups
//!
//! Overlayfs copies a directory up whenever anything below it changes, and copies a file up on
//! e.g. an open for writing even if nothing is written. Docker's `overlay2` graph driver tars
//! the upperdir as it is, so such entries are in its layers; BuildKit's overlay differ
//! (`util/overlay` `Changes`, used by `WriteUpperdir`) looks every upperdir path up in a mounted
//! view of the lower layers and drops entries whose metadata is unchanged (`sameDirent`:
//! mode, uid, gid, rdev and `security.capability`; for non-directories also size and mtime,
//! and content when both mtimes have whole seconds), while containerd's `ChangeWriter` re-adds
//! the parent directories of anything emitted. [`CopyUps`] chooses between the two:
//! [`CopyUps::Keep`] needs no lower view; [`CopyUps::DropUnchanged`] does what BuildKit does,
//! with one lookup per upperdir entry (never a walk of the lower), and also drops whiteouts for
//! names and opaque markers for directories that the lower does not have. It differs from
//! BuildKit in two deliberate ways: all kept xattrs are compared, not only the capability, and
//! an opaque directory stays one marker instead of a walk of the lower directory emitting a
//! whiteout per child.
//!
//! # Determinism
//!
//! Entries are sorted ([`crate::layer::LayerPath`] order), uid/gid are numeric, mtimes are
//! clamped to [`DiffOptions::source_date_epoch`] when set, and whiteout markers get a fixed
//! timestamp (the epoch when set, else 0), mode 0 and owner 0:0 (containerd's `ChangeWriter`).
//! Hard links (one inode at several upperdir paths) become tar hard links to the first path in
//! sorted order. Sockets are skipped (tar cannot carry them), as is the upperdir's root
//! directory (a layer has no entry for `/`). `security.selinux` is not kept: it is the host's
//! label, not content.
//!
//! Not responsible for: mounting snapshots (`snapshot/`), compression (`layer.rs`,
//! `compress/`), applying layers (`apply/`).

pub(crate) mod mountinfo;
mod scan;
mod tree;
mod write;
mod xattr;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::layer::{FileIdentity, LayerError, LayerPath, LayerWriter, Node, Xattr};

pub use mountinfo::check_mounts;
pub use tree::diff_trees;

/// The tar node of a special file (character or block device, else a fifo); both differs call
/// it for everything that is not a directory, regular file or symlink.
fn special_node(meta: &std::fs::Metadata) -> Node {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let ft = meta.file_type();
    let (major, minor) = (
        rustix::fs::major(meta.rdev()),
        rustix::fs::minor(meta.rdev()),
    );
    if ft.is_char_device() {
        Node::CharDevice { major, minor }
    } else if ft.is_block_device() {
        Node::BlockDevice { major, minor }
    } else {
        Node::Fifo
    }
}

/// Overlay mount options the snapshotter must use for upperdirs this module diffs (see the
/// module docs): no directory redirects, no metadata-only copy-up. For `userxattr` mounts use
/// [`OverlayXattrs::mount_options`].
pub const REQUIRED_MOUNT_OPTIONS: &str = OverlayXattrs::Trusted.mount_options();

/// Name of a whiteout marker's prefix (OCI image spec, `layer.md`).
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// Name of the opaque whiteout marker (OCI image spec, `layer.md`).
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Errors while diffing an upperdir.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("reading `{path}` in the upperdir")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading xattr `{name}` of `{path}`")]
    Xattr {
        path: PathBuf,
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("looking up `{path}` in the lower view")]
    Lower {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{path}` has a name that is not UTF-8; OCI layers carry UTF-8 paths")]
    NonUtf8Name { path: PathBuf },
    #[error("symlink `{path}` has a target that is not UTF-8; OCI layers carry UTF-8 targets")]
    NonUtf8Target { path: PathBuf },
    #[error("xattr name {name:?} on `{path}` is not UTF-8")]
    NonUtf8Xattr { path: PathBuf, name: Vec<u8> },
    #[error(
        "`{path}` starts with the reserved whiteout prefix `.wh.`; a layer cannot carry it \
         (OCI image spec, layer.md)"
    )]
    ReservedName { path: LayerPath },
    #[error(
        "`{path}` carries the overlay redirect xattr `{xattr}`: the snapshot was mounted with \
         redirect_dir=on, and the upperdir alone does not record the rename; mount with \
         redirect_dir=off"
    )]
    Redirect { path: PathBuf, xattr: String },
    #[error(
        "`{path}` carries the overlay metacopy xattr `{xattr}`: its data is still in a lower \
         layer; mount with metacopy=off"
    )]
    Metacopy { path: PathBuf, xattr: String },
    #[error(
        "`{path}` carries the overlay xattr `{xattr}` = {value:?}, which only data-only lower \
         layers use; an upperdir cannot be diffed with it"
    )]
    UnsupportedOverlayXattr {
        path: PathBuf,
        xattr: String,
        value: Vec<u8>,
    },
    #[error(
        "upperdir `{upperdir}` is mounted at `{mountpoint}` with {option}; overlay snapshots \
         must be mounted with redirect_dir=off,metacopy=off"
    )]
    UnsafeMount {
        upperdir: PathBuf,
        mountpoint: PathBuf,
        option: &'static str,
    },
    #[error("reading `{path}`")]
    MountInfo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing layer entry for `{path}`")]
    Layer {
        path: LayerPath,
        #[source]
        source: LayerError,
    },
    #[error("building a layer path under `{parent}`")]
    Path {
        parent: String,
        #[source]
        source: LayerError,
    },
}

pub type Result<T> = std::result::Result<T, DiffError>;

/// Which xattr namespace overlayfs used for its own metadata on this upperdir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayXattrs {
    /// `trusted.overlay.*`: mounts made by root in the initial user namespace.
    #[default]
    Trusted,
    /// `user.overlay.*`: mounts with the `userxattr` option (rootless mode).
    User,
}

impl OverlayXattrs {
    /// The mount options that make an upperdir diffable, for this kind of mount. `userxattr`
    /// needs `redirect_dir=nofollow`: when the module's `redirect_always_follow` is set, `off`
    /// means `follow`, which the kernel refuses together with `userxattr` ("conflicting
    /// options"). Neither value creates redirects.
    pub const fn mount_options(self) -> &'static str {
        match self {
            OverlayXattrs::Trusted => "redirect_dir=off,metacopy=off",
            OverlayXattrs::User => "userxattr,redirect_dir=nofollow,metacopy=off",
        }
    }

    /// The prefix of overlay-internal xattrs (`trusted.overlay.`).
    pub fn prefix(self) -> &'static str {
        match self {
            OverlayXattrs::Trusted => "trusted.overlay.",
            OverlayXattrs::User => "user.overlay.",
        }
    }
}

/// What to do with entries that overlayfs copied up without changing them (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyUps<'a> {
    /// Emit the upperdir as it is, as Docker's `overlay2` driver does. Needs no lower view.
    #[default]
    Keep,
    /// Drop entries that are the same as in the lower view, as BuildKit's overlay differ does.
    /// `lower` is the root of a merged, read-only view of the parent snapshot (a mount, or the
    /// single layer directory when there is one); it is only looked up, one path per upperdir
    /// entry, never walked, and symlinks in it are never followed.
    DropUnchanged { lower: &'a Path },
}

/// How to diff an upperdir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiffOptions<'a> {
    pub copy_ups: CopyUps<'a>,
    pub xattrs: OverlayXattrs,
    /// `SOURCE_DATE_EPOCH`: mtimes later than this are clamped to it, and whiteouts get it.
    pub source_date_epoch: Option<u64>,
}

/// One entry of the layer, in the order it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The tar entry's path; for whiteouts the marker's path (`dir/.wh.name`).
    pub path: LayerPath,
    pub kind: ChangeKind,
    /// Permission bits plus setuid/setgid/sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch, already clamped.
    pub mtime: u64,
    /// Sorted by name; overlay-internal xattrs and `security.selinux` removed.
    pub xattrs: Vec<Xattr>,
}

/// What a [`Change`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Directory,
    /// A regular file; its content is read from `source` in the upperdir when written.
    File {
        size: u64,
        source: PathBuf,
    },
    Symlink {
        target: String,
    },
    /// Another path of the same upperdir inode, earlier in sorted order.
    Hardlink {
        target: LayerPath,
    },
    Node(Node),
    /// `.wh.<name>`: `<name>` was removed from the lower layers.
    Whiteout,
    /// `.wh..wh..opq`: nothing of the lower layers' directory shows through.
    OpaqueWhiteout,
}

/// Summary of a written diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiffSummary {
    pub entries: usize,
    pub whiteouts: usize,
    /// Bytes of regular-file content written.
    pub content_bytes: u64,
}

/// The changes recorded in one upperdir, sorted and ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpperDiff {
    changes: Vec<Change>,
}

impl UpperDiff {
    /// Walk `upperdir` (and nothing else, except for lookups in the lower view when
    /// [`CopyUps::DropUnchanged`] asks for it).
    pub fn scan(upperdir: &Path, options: &DiffOptions<'_>) -> Result<Self> {
        check_mounts(upperdir)?;
        let changes = scan::scan(upperdir, options)?;
        Ok(Self { changes })
    }

    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    pub fn into_changes(self) -> Vec<Change> {
        self.changes
    }

    /// Append every change to `layer`, reading file contents from the upperdir.
    pub fn write_to<W: Write>(&self, layer: &mut LayerWriter<W>) -> Result<DiffSummary> {
        write::write(&self.changes, layer, &|_| None)
    }

    /// [`write_to`](Self::write_to), offering regular files with the identity `vouched` gives
    /// for their path, so that a re-export can take their members from the previous blob
    /// without reading them ([`LayerWriter::append_file`]).
    ///
    /// The identity must stand for the file's bytes as [`FileIdentity`] requires: taken by an
    /// `lstat` of the file *the content was read from* before reading it. The caller that wrote
    /// the upperdir itself (a COPY, from context files) may give the identity of the source it
    /// copied, since the upperdir file holds exactly those bytes and nothing writes to it after
    /// (files whose size differs from the identity's are read as usual).
    pub fn write_to_vouched<W: Write>(
        &self,
        layer: &mut LayerWriter<W>,
        vouched: &dyn Fn(&LayerPath) -> Option<FileIdentity>,
    ) -> Result<DiffSummary> {
        write::write(&self.changes, layer, vouched)
    }
}

/// Scan `upperdir` and append its changes to `layer` (which the caller then finishes).
pub fn diff_upperdir<W: Write>(
    upperdir: &Path,
    options: &DiffOptions<'_>,
    layer: &mut LayerWriter<W>,
) -> Result<DiffSummary> {
    UpperDiff::scan(upperdir, options)?.write_to(layer)
}

/// [`diff_upperdir`] with content identities vouched for by the caller
/// ([`UpperDiff::write_to_vouched`]).
pub fn diff_upperdir_vouched<W: Write>(
    upperdir: &Path,
    options: &DiffOptions<'_>,
    layer: &mut LayerWriter<W>,
    vouched: &dyn Fn(&LayerPath) -> Option<FileIdentity>,
) -> Result<DiffSummary> {
    UpperDiff::scan(upperdir, options)?.write_to_vouched(layer, vouched)
}
