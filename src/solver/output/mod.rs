//! Build outputs (`--output`/`-o`): where a finished image goes besides the store.
//!
//! * [`spec`] parses the `--output` values as buildx parses them;
//! * [`archive`] writes `type=oci` and `type=docker` image archives;
//! * [`rootfs`] writes `type=local` (a directory) and `type=tar` (a tar of the root filesystem);
//! * [`metadata`] writes `--metadata-file`.
//!
//! `type=image` (naming the image in the store, pushing it) needs no writer here: the build
//! tags the store and the CLI pushes.
//!
//! Not responsible for: building the image (the solver exports it to the store first, so every
//! output reads the same stored manifest, config and layers), pushing (`registry`).

pub mod archive;
pub mod metadata;
pub mod rootfs;
pub mod spec;

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use snapshotter::Digest;

use crate::image::Descriptor;
use crate::store::{Store, StoreError, StoredImage};

pub use archive::ArchiveFormat;
pub use metadata::BuildMetadata;
pub use spec::{Destination, OutputSpec};

/// Errors of `--output` parsing and writing.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("invalid --output `{value}`: {reason}")]
    InvalidSpec { value: String, reason: String },
    #[error("type is required for output `{value}`")]
    MissingType { value: String },
    /// BuildKit: `exporter "foo" could not be found`.
    #[error("unknown output type `{kind}`: use image, registry, oci, docker, local or tar")]
    UnknownType { kind: String },
    #[error("dest is required for {kind} exporter")]
    MissingDest { kind: String },
    #[error("dest cannot be stdout for {kind} exporter")]
    StdoutNotAllowed { kind: String },
    /// buildx loads `type=docker` without `dest` into a Docker daemon; kiln has none.
    #[error(
        "dest is required for docker exporter: kiln has no Docker daemon to load into (use type=docker,dest=FILE, or dest=- for stdout)"
    )]
    DockerNeedsDest,
    #[error("dest file is required for {kind} exporter. refusing to write to console")]
    StdoutIsTerminal { kind: String },
    #[error("multiple outputs configured to write to stdout")]
    StdoutTwice,
    #[error("invalid image name `{name}` in --output: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    #[error("destination file {} is a directory", .path.display())]
    DestIsADirectory { path: PathBuf },
    #[error("destination directory {} is a file", .path.display())]
    DestNotADirectory { path: PathBuf },
    #[error("unpacking layer {digest} for the output")]
    Unpack {
        digest: Digest,
        #[source]
        source: Box<snapshotter::apply::ApplyError>,
    },
    #[error("{} is not valid UTF-8", .path.display())]
    NonUtf8Path { path: PathBuf },
    #[error("writing {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Stream(#[from] std::io::Error),
}

/// Checks made before the build starts, as buildx's `CreateExports` makes them: a file
/// destination must not be a directory, a directory destination must not be a file, and at
/// most one output writes to stdout. (Whether stdout is a terminal is the CLI's check.)
pub fn validate(outputs: &[OutputSpec]) -> Result<(), OutputError> {
    if outputs.iter().filter(|o| o.writes_stdout()).count() > 1 {
        return Err(OutputError::StdoutTwice);
    }
    for o in outputs {
        match o {
            OutputSpec::Oci {
                dest: Destination::File(p),
                ..
            }
            | OutputSpec::Docker {
                dest: Destination::File(p),
                ..
            }
            | OutputSpec::Tar {
                dest: Destination::File(p),
            } if p.is_dir() => {
                return Err(OutputError::DestIsADirectory { path: p.clone() });
            }
            OutputSpec::Local { dest } if dest.exists() && !dest.is_dir() => {
                return Err(OutputError::DestNotADirectory { path: dest.clone() });
            }
            _ => {}
        }
    }
    Ok(())
}

/// What one output wrote: for an image archive, the manifest it holds.
#[derive(Debug, Clone)]
pub struct Written {
    pub manifest: Option<Descriptor>,
}

/// Write one non-`image` output of `image`. `scratch` is a directory under the store for
/// temporary trees (`type=tar`).
pub fn write(
    store: &Store,
    image: &StoredImage,
    spec: &OutputSpec,
    scratch: &Path,
) -> Result<Written, OutputError> {
    match spec {
        OutputSpec::Image { .. } => Ok(Written {
            manifest: Some(image.manifest_descriptor.clone()),
        }),
        OutputSpec::Oci { dest, names } | OutputSpec::Docker { dest, names } => {
            let format = if matches!(spec, OutputSpec::Oci { .. }) {
                ArchiveFormat::Oci
            } else {
                ArchiveFormat::Docker
            };
            let m = to_destination(dest, |w| {
                archive::write_archive(store, image, names, format, w)
            })?;
            Ok(Written {
                manifest: Some(m.descriptor),
            })
        }
        OutputSpec::Local { dest } => {
            rootfs::write_local(store, image, dest)?;
            Ok(Written { manifest: None })
        }
        OutputSpec::Tar { dest } => {
            to_destination(dest, |w| rootfs::write_tar(store, image, scratch, w))?;
            Ok(Written { manifest: None })
        }
    }
}

/// Run `write` against stdout, or against a temp file next to the destination file that then
/// replaces it (so a failed output never leaves a truncated file under the requested name).
fn to_destination<T>(
    dest: &Destination,
    write: impl FnOnce(&mut dyn Write) -> Result<T, OutputError>,
) -> Result<T, OutputError> {
    match dest {
        Destination::Stdout => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            let out = write(&mut w)?;
            w.flush()?;
            Ok(out)
        }
        Destination::File(path) => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            fs_err::create_dir_all(&dir)?;
            let io_err = |source| OutputError::Io {
                path: path.clone(),
                source,
            };
            let tmp = tempfile::Builder::new()
                .prefix(".kiln-output-")
                .tempfile_in(&dir)
                .map_err(io_err)?;
            let mut w = BufWriter::new(tmp);
            let out = write(&mut w)?;
            let tmp = w.into_inner().map_err(|e| io_err(e.into_error()))?;
            tmp.as_file().sync_all().map_err(io_err)?;
            // Archives are data for others to read: 0644 rather than the temp file's 0600.
            fs_err::set_permissions(
                tmp.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )?;
            tmp.persist(path).map_err(|e| io_err(e.error))?;
            Ok(out)
        }
    }
}
