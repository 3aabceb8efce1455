//! Layer apply: stream a layer blob (gzip, zstd or an uncompressed tar, told apart by magic
//! bytes, never by media type) into a snapshot directory, verifying its blob digest and DiffID as
//! the bytes flow, converting OCI whiteouts, and never creating, changing or linking anything
//! outside the target. DESIGN.md: "pull: registry → store::content → layer apply → snapshot".
//!
//! Not responsible for: fetching or storing blobs, choosing the target (the snapshotter does),
//! mounting, or writing layers (`layer`, `diff`).
//!
//! # Example
//!
//! ```no_run
//! use snapshotter::apply::{apply, ApplyExpect, ApplyOptions, WhiteoutMode};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let blob = std::fs::File::open("blobs/sha256/4f1b…")?;
//! let expect = ApplyExpect { digest: Some("sha256:4f1b…".parse()?), diff_id: None };
//! let report = apply(blob, "snapshots/12/fs".as_ref(), expect, &ApplyOptions::new(WhiteoutMode::Overlay))?;
//! println!("{} entries, DiffID {}", report.entries, report.diff_id);
//! # Ok(()) }
//! ```
//!
//! # All or nothing
//!
//! Entries are unpacked into a staging directory created next to the target (same filesystem,
//! mode 0700, a name starting with `.`). When the target already holds a tree (the copying
//! backend applies a layer onto a copy of its parent), the staging directory is first seeded with
//! a *hardlink clone* of it: new directories, and hard links to every other inode. This is sound
//! because the apply never writes into an inode it did not create: files are always created anew
//! (`O_CREAT | O_EXCL`) after the old name is unlinked, hardlink entries carry no metadata, and
//! only directories (which the clone made fresh) get their metadata changed. Only when both
//! digests match and every entry landed is the staging tree swapped in: `renameat2(2)` with
//! `RENAME_NOREPLACE` for a new target, `RENAME_EXCHANGE` for an existing one (then the old tree,
//! now under the staging name, is removed). Any error, including a digest mismatch found at the
//! end of the stream, drops the staging tree and leaves the target exactly as it was; a crash
//! leaves at most a stale `.NAME.kiln-apply-*` sibling. The target must not be a mount point or
//! in use as a mounted overlay upper directory while it is applied to.
//!
//! # Staying inside the root
//!
//! Every filesystem operation is a `*at(2)` call relative to a directory descriptor obtained
//! from the staging root's descriptor, never a path string joined onto the target:
//!
//! * **Names are normalised lexically first**: a leading `/` is dropped (absolute
//!   names are taken relative to the root, as tar and containerd do), `.` and empty components
//!   are dropped, and any `..` component is refused with [`UnsafePathReason::ParentComponent`]
//!   (the "zip-slip" class; Docker's CVE-2014-9356 involved such full pathnames).
//! * **Parent directories are resolved by the kernel**: `openat2(2)` with `RESOLVE_IN_ROOT`
//!   (default) or `RESOLVE_BENEATH` ([`SymlinkResolution`]), plus `RESOLVE_NO_MAGICLINKS` (no
//!   `/proc/self/fd`-style jumps) and `RESOLVE_NO_XDEV` (no crossing into a mount). The kernel
//!   resolves the whole path atomically, so there is no window between checking a path and using
//!   it: that window is what CVE-2018-15664 (`docker cp`, `FollowSymlinkInScope` raced by a
//!   symlink exchange) and CVE-2021-30465 (runc mount destinations raced the same way) exploited.
//!   `RESOLVE_IN_ROOT` rather than the stricter `RESOLVE_BENEATH` by default because it is the
//!   race-free form of what Docker and containerd do (a symlink `var/run -> /run` is followed to
//!   `<root>/run`, as the container will see it); a layer written with a symlink `a -> /etc` and
//!   then `a/passwd` is therefore *contained* (it writes `<root>/etc/passwd`), not refused.
//! * **Fallback without `openat2`** (kernel < 5.6, or a seccomp filter that refuses it): a walk
//!   one component at a time with `O_PATH | O_NOFOLLOW`, reading each symlink through the
//!   descriptor of the link itself, handling `..` with our own stack of descriptors (so a
//!   directory renamed concurrently cannot lift us above the root), following at most 40 links
//!   (`ELOOP`), and refusing directories on another device ([`Resolver::Userspace`] forces it).
//! * **The final component is never followed**: files are created with `O_EXCL | O_NOFOLLOW`;
//!   an existing entry of the same name (including a symlink, or a directory that a later entry
//!   replaces) is removed first, recursively through descriptors; ownership and times use
//!   `AT_SYMLINK_NOFOLLOW`; modes are set with `fchmod` on a descriptor we opened. containerd's
//!   CVE-2021-32760 was a `chmod` through a symlink during extraction.
//! * **Hardlinks** resolve their target exactly like an entry (normalised, parent resolved in the
//!   root, last component not followed), so a link can only name an inode already inside the
//!   root; `..`, self-links and links to directories are refused. Docker's CVE-2014-6407 was a
//!   hardlink (and symlink) escape during `pull`/`load`.
//! * **Symlinks are data**: their text is stored as given and only ever interpreted by later
//!   in-root lookups; loops surface as `ELOOP` ([`ApplyError::Resolve`]).
//! * **Whiteouts** name one entry of their own directory: `.wh.`, `.wh..` and `.wh...` are refused
//!   ([`UnsafePathReason::WhiteoutOutsideDirectory`]). Layer xattrs in `trusted.overlay.*` or
//!   `user.overlay.*` are dropped with a warning: overlayfs would honour `redirect`/`metacopy`
//!   from an upper directory.
//! * **Nothing from the image runs or is looked up**: owners are numeric, and apply never enters
//!   the tree to resolve names or load libraries (CVE-2019-14271: `docker cp` loaded the
//!   container's `libnss` into a host process).
//! * **Bounded resources**: content is streamed to disk in 64 KiB chunks; tar metadata buffered
//!   for one entry (PAX records, GNU long names) is capped ([`Limits::max_entry_metadata`]), as
//!   are the entry count and the uncompressed size; the zstd window is capped at 128 MiB.
//!   Bookkeeping (paths created by the layer, deferred directory times) grows with the number
//!   of entries, which is bounded.
//!
//! # Metadata
//!
//! Owners (numeric uid/gid) are restored when running as root; otherwise they are skipped and
//! counted ([`WarningKind::OwnershipNotRestored`]). Modes include setuid/setgid/sticky and are set
//! after `chown` (which clears them), and xattrs after both (`chown` also drops
//! `security.capability`, which must be restored or the apply fails). Other xattrs that the
//! filesystem or our privileges refuse (`EPERM`, `ENOTSUP`) are skipped and counted. Device nodes
//! are created only as root (else skipped and counted); fifos always. File and symlink times are
//! set as each entry lands; directory modes and times at the end, children first.

mod error;
mod resolve;
mod stream;
mod tree;
mod unpack;

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, RenameFlags};

use crate::digest::{BlobDigest, DiffId};

pub use error::{ApplyError, LayerName, Limit, Result, UnsafePathReason};
pub use resolve::{Resolver, SymlinkResolution};
pub use stream::BlobCompression;

use resolve::{RelPath, Root, lstat_at};
use stream::{Budget, Budgeted, Decoder, Magic};
use unpack::{Deferred, Unpacker};

/// How OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) are materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// For an overlayfs upper directory: `.wh.NAME` becomes a 0/0 character device `NAME` and
    /// `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory (as containerd's
    /// overlay applier does). Needs root.
    Overlay,
    /// For a flat tree that already holds the lower layers (the copying backend): `.wh.NAME`
    /// deletes `NAME`, `.wh..wh..opq` deletes the directory's existing children. Entries of the
    /// same layer are never deleted, wherever they sit in the tar.
    Delete,
}

/// Digests the blob must have; `None` skips that check (the digest is still computed, unless
/// [`Verification::Vouched`] applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyExpect {
    /// Digest of the uncompressed tar stream.
    pub diff_id: Option<DiffId>,
    /// Digest of the blob as given (compressed bytes).
    pub digest: Option<BlobDigest>,
}

/// Resource bounds for one apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tar entries, including whiteouts (default 4 Mi).
    pub max_entries: u64,
    /// Bytes of the uncompressed tar stream (default 256 GiB).
    pub max_uncompressed_size: u64,
    /// Bytes of headers, PAX records and GNU long names read for one entry, which the tar parser
    /// holds in memory (default 1 MiB).
    pub max_entry_metadata: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 4 << 20,
            max_uncompressed_size: 256 << 30,
            max_entry_metadata: 1 << 20,
        }
    }
}

/// Whether the result is flushed to stable storage before it is swapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `syncfs` the staging tree before the rename, `fsync` the parent after it.
    #[default]
    Sync,
    /// Leave flushing to the kernel (tests, throwaway snapshots).
    NoSync,
}

/// Whether the apply computes the blob's digests itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// Hash the blob and its tar stream as they flow and check them against [`ApplyExpect`]
    /// (an uncompressed blob is hashed once: its tar stream is the blob, so its DiffID is its
    /// digest).
    #[default]
    Hash,
    /// The caller has already verified these very bytes against both digests of
    /// [`ApplyExpect`] (a pull does while it downloads the blob): nothing is hashed again and the
    /// report gives the expected digests back. Taken only when both digests are given; otherwise
    /// the apply hashes as with [`Verification::Hash`].
    Vouched,
}

/// How to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOptions {
    pub whiteouts: WhiteoutMode,
    pub symlinks: SymlinkResolution,
    pub resolver: Resolver,
    pub limits: Limits,
    pub durability: Durability,
    pub verification: Verification,
}

impl ApplyOptions {
    /// Defaults for everything but the whiteout mode, which depends on the snapshot backend.
    pub fn new(whiteouts: WhiteoutMode) -> Self {
        Self {
            whiteouts,
            symlinks: SymlinkResolution::default(),
            resolver: Resolver::default(),
            limits: Limits::default(),
            durability: Durability::default(),
            verification: Verification::default(),
        }
    }
}

/// Something applied, but not exactly as the layer described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WarningKind {
    /// Not root: files keep our uid/gid instead of the layer's.
    OwnershipNotRestored,
    /// An xattr the filesystem or our privileges refused (`EPERM`/`ENOTSUP`).
    XattrNotRestored,
    /// A `trusted.overlay.*`/`user.overlay.*` xattr in the layer, dropped on purpose.
    OverlayXattrIgnored,
    /// Not root: a character or block device was not created.
    DeviceNotCreated,
    /// AUFS metadata (`.wh..wh.plnk`, ...), which has no meaning here.
    AufsMetadataIgnored,
    /// The replaced tree could not be removed after the swap; it is left under this name.
    StaleTreeLeft,
}

/// One kind of warning, counted; `first_path` is the first entry it concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyWarning {
    pub kind: WarningKind,
    pub count: u64,
    pub first_path: String,
}

/// Warnings, one counter per kind (memory does not grow with the layer).
#[derive(Debug, Default)]
pub(crate) struct Warnings(Vec<ApplyWarning>);

impl Warnings {
    fn add(&mut self, kind: WarningKind, path: &RelPath) {
        self.add_str(kind, || path.to_string());
    }

    fn add_str(&mut self, kind: WarningKind, path: impl FnOnce() -> String) {
        match self.0.iter_mut().find(|w| w.kind == kind) {
            Some(w) => w.count += 1,
            None => self.0.push(ApplyWarning {
                kind,
                count: 1,
                first_path: path(),
            }),
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub diff_id: DiffId,
    pub digest: BlobDigest,
    pub compression: BlobCompression,
    /// Bytes of the blob.
    pub compressed_size: u64,
    /// Bytes of the tar stream.
    pub uncompressed_size: u64,
    /// Tar entries, including whiteouts.
    pub entries: u64,
    /// Whether the kernel (`openat2`) resolved paths, rather than the user-space fallback.
    pub kernel_resolution: bool,
    pub warnings: Vec<ApplyWarning>,
}

impl ApplyReport {
    /// The count of one kind of warning (0 if none).
    pub fn warning_count(&self, kind: WarningKind) -> u64 {
        self.warnings
            .iter()
            .find(|w| w.kind == kind)
            .map_or(0, |w| w.count)
    }
}

/// Apply the layer `blob` to the directory `target` (created if missing), all or nothing.
/// See the [module docs](self) for the guarantees.
pub fn apply(
    blob: impl Read + Send,
    target: &Path,
    expected: ApplyExpect,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let layer = LayerName {
        digest: expected.digest,
        diff_id: expected.diff_id,
        target: target.to_path_buf(),
    };
    let target_err = |op: &'static str, path: &Path| {
        let layer = Box::new(layer.clone());
        let path = path.to_path_buf();
        move |e: rustix::io::Errno| ApplyError::Target {
            layer,
            op,
            path,
            source: e.into(),
        }
    };
    let name = target.file_name().ok_or_else(|| {
        target_err("target has no final component", target)(rustix::io::Errno::INVAL)
    })?;
    let parent_path = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent = rfs::open(
        parent_path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(target_err("opening the parent directory of", target))?;
    let existing = match lstat_at(parent.as_fd(), name.as_bytes())
        .map_err(target_err("inspecting", target))?
    {
        None => None,
        Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Some(st),
        Some(_) => return Err(target_err("applying to", target)(rustix::io::Errno::NOTDIR)),
    };

    let staging = Staging::create(parent.as_fd(), name.as_bytes())
        .map_err(target_err("creating a staging directory next to", target))?;
    let stage_fd = tree::open_dir_at(parent.as_fd(), staging.name.as_bytes())
        .map_err(target_err("opening the staging directory for", target))?;
    let root_fd = rfs::openat(
        &stage_fd,
        c".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(target_err("opening the staging directory for", target))?;
    let root = Root::new(root_fd, opts.symlinks, opts.resolver)
        .map_err(target_err("opening the staging directory for", target))?;

    let mut deferred = Deferred::default();
    let mut warnings = Warnings::default();
    let privileged = rustix::process::geteuid().is_root();
    match &existing {
        Some(st) => {
            let old = tree::open_dir_at(parent.as_fd(), name.as_bytes())
                .map_err(target_err("opening", target))?;
            let mut warn = |kind, path: &RelPath| warnings.add(kind, path);
            let mut clone = tree::Clone {
                privileged,
                deferred: &mut deferred,
                warn: &mut warn,
            };
            let clone_err = |e: std::io::Error| ApplyError::Target {
                layer: Box::new(layer.clone()),
                op: "cloning the existing tree of",
                path: target.to_path_buf(),
                source: e,
            };
            clone
                .tree(old.as_fd(), stage_fd.as_fd(), &RelPath::root())
                .map_err(clone_err)?;
            clone
                .dir_metadata(old.as_fd(), stage_fd.as_fd(), st, &RelPath::root())
                .map_err(clone_err)?;
        }
        None => deferred.set(RelPath::root(), 0o755, None),
    }

    let (stats, entries) = {
        let mut unpacker = Unpacker::new(&root, &layer, opts, &mut deferred, &mut warnings);
        stream_entries(blob, &layer, &expected, opts, &mut unpacker)?
    };
    check(&layer, &expected, &stats)?;

    let finish_err = |op: &'static str| {
        let layer = Box::new(layer.clone());
        let path = target.to_path_buf();
        move |source: std::io::Error| ApplyError::Target {
            layer,
            op,
            path,
            source,
        }
    };
    deferred.apply(&root).map_err(finish_err(
        "setting directory metadata in the staging tree of",
    ))?;
    if opts.durability == Durability::Sync {
        rfs::syncfs(&stage_fd).map_err(|e| finish_err("syncing the staging tree of")(e.into()))?;
    }
    let kernel_resolution = root.uses_kernel();
    drop((stage_fd, root));

    let flags = if existing.is_some() {
        RenameFlags::EXCHANGE
    } else {
        RenameFlags::NOREPLACE
    };
    rfs::renameat_with(
        &parent,
        staging.name.as_bytes(),
        &parent,
        name.as_bytes(),
        flags,
    )
    .map_err(target_err("moving the applied tree into place at", target))?;
    if existing.is_some() {
        // The staging name now holds the replaced tree.
        if tree::remove_all(parent.as_fd(), staging.name.as_bytes()).is_err() {
            let left = staging.name.to_string_lossy().into_owned();
            warnings.add_str(WarningKind::StaleTreeLeft, || left);
        }
    }
    staging.disarm();
    if opts.durability == Durability::Sync {
        let dir = tree::open_dir_at(parent.as_fd(), b".")
            .map_err(target_err("opening the parent directory of", target))?;
        rfs::fsync(&dir).map_err(target_err("syncing the parent directory of", target))?;
    }

    Ok(ApplyReport {
        diff_id: stats.diff_id,
        digest: stats.digest,
        compression: stats.compression,
        compressed_size: stats.compressed_size,
        uncompressed_size: stats.uncompressed_size,
        entries,
        kernel_resolution,
        warnings: warnings.0,
    })
}

struct Stats {
    diff_id: DiffId,
    digest: BlobDigest,
    compression: BlobCompression,
    compressed_size: u64,
    uncompressed_size: u64,
}

/// The digests the caller vouches for, when the apply need not compute them.
fn vouched_digests(expected: &ApplyExpect, opts: &ApplyOptions) -> Option<(BlobDigest, DiffId)> {
    match (opts.verification, expected.digest, expected.diff_id) {
        (Verification::Vouched, Some(digest), Some(diff_id)) => Some((digest, diff_id)),
        _ => None,
    }
}

fn stream_entries(
    blob: impl Read + Send,
    layer: &LayerName,
    expected: &ApplyExpect,
    opts: &ApplyOptions,
    unpacker: &mut Unpacker<'_>,
) -> Result<(Stats, u64)> {
    let read_err = |source| ApplyError::Read {
        layer: Box::new(layer.clone()),
        uncompressed_offset: 0,
        source,
    };
    let vouched = vouched_digests(expected, opts);
    let (magic, raw) = stream::sniff(blob, vouched.is_none()).map_err(read_err)?;
    let compression = match magic {
        Magic::Supported(c) => c,
        Magic::Unsupported(format) => {
            return Err(ApplyError::UnsupportedCompression {
                layer: Box::new(layer.clone()),
                format,
            });
        }
    };
    let decoder = Decoder::new(compression, raw).map_err(read_err)?;
    let budget = Budget::new(
        opts.limits.max_entry_metadata,
        opts.limits.max_uncompressed_size,
    );
    // An uncompressed blob is its own tar stream: one hash gives both digests.
    let hash_tar = vouched.is_none() && compression != BlobCompression::Uncompressed;
    let (entries, digests) = stream::pipelined(decoder, hash_tar, |pipe| {
        let mut archive = tar::Archive::new(Budgeted::new(pipe, budget.clone()));
        let entries = unpacker.run(&mut archive, &budget)?;
        archive
            .into_inner()
            .drain()
            .map_err(|e| unpack::read_error(layer, &opts.limits, &budget, e))?;
        Ok::<_, ApplyError>(entries)
    })?;
    let (diff_id, uncompressed_size, digest, compressed_size) =
        digests.map_err(|e| unpack::read_error(layer, &opts.limits, &budget, e))?;
    let (digest, diff_id) = match vouched {
        Some(vouched) => vouched,
        None => {
            let digest = digest.expect("the blob is hashed unless vouched for");
            (BlobDigest(digest), DiffId(diff_id.unwrap_or(digest)))
        }
    };
    Ok((
        Stats {
            diff_id,
            digest,
            compression,
            compressed_size,
            uncompressed_size,
        },
        entries,
    ))
}

/// The blob digest is checked first: if the bytes are not the expected blob, a DiffID mismatch
/// is only a consequence.
fn check(layer: &LayerName, expected: &ApplyExpect, stats: &Stats) -> Result<()> {
    if let Some(want) = expected.digest
        && want != stats.digest
    {
        return Err(ApplyError::DigestMismatch {
            layer: Box::new(layer.clone()),
            expected: want,
            actual: stats.digest,
        });
    }
    if let Some(want) = expected.diff_id
        && want != stats.diff_id
    {
        return Err(ApplyError::DiffIdMismatch {
            layer: Box::new(layer.clone()),
            expected: want,
            actual: stats.diff_id,
        });
    }
    Ok(())
}

/// The staging directory next to the target; removed on drop unless disarmed.
struct Staging<'a> {
    parent: BorrowedFd<'a>,
    name: OsString,
    armed: bool,
}

impl<'a> Staging<'a> {
    fn create(parent: BorrowedFd<'a>, target_name: &[u8]) -> rustix::io::Result<Self> {
        let pid = std::process::id();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for attempt in 0u32..100 {
            let mut name = OsString::from(".");
            name.push(std::ffi::OsStr::from_bytes(target_name));
            name.push(format!(".kiln-apply-{pid}-{nanos:08x}{attempt:02}"));
            match rfs::mkdirat(parent, name.as_bytes(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    return Ok(Self {
                        parent,
                        name,
                        armed: true,
                    });
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(rustix::io::Errno::EXIST)
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a failure leaves a dot-named sibling that GC can sweep.
            let _ = tree::remove_all(self.parent, self.name.as_bytes());
        }
    }
}
