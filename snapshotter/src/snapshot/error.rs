//! The snapshot module's error type. Every variant names the snapshot, path or mount it is about.
//!
//! I/O failures come in two shapes: [`SnapshotError::Fs`] wraps an `fs-err` error, whose message
//! already names the path, and [`SnapshotError::Syscall`] wraps a bare `rustix` error and carries
//! the path itself.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::id::{ActiveKey, CommittedName, SnapshotName};

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// Which kind of identity failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Key,
    Name,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Key => "key",
            Self::Name => "name",
        })
    }
}

/// The step of a mount that failed (new mount API steps, or the classic `mount(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountStep {
    /// `fsopen("overlay")`
    Open,
    /// `fsconfig(FSCONFIG_SET_STRING, <option>)`
    Configure(&'static str),
    /// `fsconfig(FSCONFIG_CMD_CREATE)`: where the kernel validates layers
    Create,
    /// `fsmount`
    Mount,
    /// `move_mount` onto the target
    Attach,
    /// classic `mount(2)` with an option string
    LegacyMount,
    /// bind mount (`mount(2)` with `MS_BIND`), or its read-only remount
    Bind,
    /// `unshare(CLONE_FS)`/`chdir` of the helper thread that shortens layer paths
    EnterLayerDir,
}

impl fmt::Display for MountStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open => f.write_str("fsopen(\"overlay\")"),
            Self::Configure(option) => write!(f, "fsconfig `{option}`"),
            Self::Create => f.write_str("fsconfig create"),
            Self::Mount => f.write_str("fsmount"),
            Self::Attach => f.write_str("move_mount"),
            Self::LegacyMount => f.write_str("mount(2)"),
            Self::Bind => f.write_str("bind mount"),
            Self::EnterLayerDir => f.write_str("enter the layer directory"),
        }
    }
}

/// Messages the kernel logged on an `fsopen` context (read back from the fd after a failure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelLog(pub Vec<String>);

impl fmt::Display for KernelLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str(" (kernel: ")?;
        for (i, line) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(line)?;
        }
        f.write_str(")")
    }
}

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("invalid snapshot {kind} `{value}`: {reason}")]
    InvalidId {
        kind: IdKind,
        value: String,
        reason: &'static str,
    },

    #[error("snapshot {snapshot} does not exist")]
    NotFound { snapshot: SnapshotName },

    #[error("snapshot {snapshot} already exists")]
    AlreadyExists { snapshot: SnapshotName },

    #[error("parent snapshot `{parent}` does not exist or is not committed")]
    ParentNotFound { parent: CommittedName },

    #[error("snapshot `{key}` is a read-only view: it cannot be committed, resumed or persisted")]
    IsView { key: ActiveKey },

    #[error(
        "cannot remove snapshot {snapshot}: it is the parent of {}",
        list(children)
    )]
    HasChildren {
        snapshot: SnapshotName,
        children: Vec<SnapshotName>,
    },

    #[error("snapshot `{key}` would stack {layers} layers; overlayfs allows at most {max}")]
    TooManyLayers {
        key: ActiveKey,
        layers: usize,
        max: usize,
    },

    #[error("cannot {action}")]
    Fs {
        action: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("cannot {action} `{path}`")]
    Syscall {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("snapshot metadata `{path}` is corrupt")]
    CorruptMetadata {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("snapshot metadata `{path}` names parent record {parent_id}, which does not exist")]
    BrokenChain { path: PathBuf, parent_id: u64 },

    #[error("cannot copy `{path}`: unsupported file type (mode {mode:#o})")]
    UnsupportedFileType { path: PathBuf, mode: u32 },

    #[error("{step} failed for the mount at `{target}`{kernel_log}")]
    Mount {
        step: MountStep,
        target: PathBuf,
        kernel_log: KernelLog,
        #[source]
        source: io::Error,
    },

    #[error(
        "overlay options for `{target}` ({layers} layers) need {len} bytes, over mount(2)'s \
         {limit}-byte limit, and this kernel has no `lowerdir+`"
    )]
    MountOptionsTooLong {
        target: PathBuf,
        layers: usize,
        len: usize,
        limit: usize,
    },

    #[error("path `{path}` cannot be passed to overlayfs: it contains `,`, `:` or `\\`")]
    UnmountablePath { path: PathBuf },

    #[error("cannot unmount `{target}`")]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("overlayfs cannot be used for snapshots in `{root}`")]
    OverlayUnsupported {
        root: PathBuf,
        #[source]
        source: Box<SnapshotError>,
    },

    #[error("overlay probe in `{root}` mounted, but {what}")]
    OverlayMisbehaves { root: PathBuf, what: &'static str },

    #[error("unknown storage driver `{value}` (expected `overlay` or `copy`)")]
    UnknownDriver { value: String },
}

fn list(names: &[SnapshotName]) -> String {
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&name.to_string());
    }
    out
}

impl SnapshotError {
    pub(crate) fn fs(action: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Fs { action, source }
    }

    pub(crate) fn syscall(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(rustix::io::Errno) -> Self {
        let path = path.into();
        move |errno| Self::Syscall {
            action,
            path,
            source: errno.into(),
        }
    }
}
