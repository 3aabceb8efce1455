//! `kiln save [-o FILE] [--format docker-archive|oci-archive] IMAGE...`: images from the store
//! as one archive, to a file or to stdout (never to a terminal), as `docker save`.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::{CmdResult, Failure};
use crate::archive::{self, ArchiveFormat, SaveImage, WriteOptions};
use crate::image::ImageRef;
use crate::store::{Store, StoredImage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SaveFormat {
    /// Docker's format, as `docker save` writes it (read by `docker load` and `podman load`).
    DockerArchive,
    /// An OCI image layout in a tar.
    OciArchive,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Archive format.
    #[arg(long, value_enum, default_value = "docker-archive")]
    format: SaveFormat,
    /// Images: name[:tag] (a name without tag saves every tag of the repository), image ID or
    /// digest.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn run(store: &Store, args: SaveArgs) -> CmdResult {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(Failure::Error(anyhow::anyhow!(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect"
        )));
    }
    if let Some(path) = &args.output {
        validate_output(path)?;
    }
    // Held while blobs are read, so a concurrent `rmi` cannot delete one half-way.
    let _lease = store.lease()?;
    let images = resolve(store, &args.images)?;
    let options = WriteOptions {
        format: match args.format {
            SaveFormat::DockerArchive => ArchiveFormat::Docker,
            SaveFormat::OciArchive => ArchiveFormat::Oci,
        },
        repositories: true,
    };
    let write = |w: &mut dyn Write| archive::write_archive(store, &images, options, w);
    match &args.output {
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            write(&mut w).context("failed to save image")?;
            w.flush().context("failed to save image")?;
        }
        Some(path) => to_file(path, write).context("failed to save image")?,
    }
    Ok(())
}

/// As the Docker CLI's `ValidateOutputPath`: the directory must exist, the path must not be one.
fn validate_output(path: &Path) -> Result<(), Failure> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Failure::Error(anyhow::anyhow!(
            "failed to save image: invalid output path: directory {:?} does not exist",
            dir
        )));
    }
    if path.is_dir() {
        return Err(Failure::Error(anyhow::anyhow!(
            "failed to save image: invalid output path: {:?} is a directory",
            path
        )));
    }
    Ok(())
}

/// Write through a temp file in the destination's directory that then replaces it, so a failed
/// save never leaves a truncated archive under the requested name.
fn to_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<Vec<archive::ArchivedManifest>, archive::ArchiveError>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".kiln-save-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let mut w = BufWriter::new(tmp);
    write(&mut w)?;
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    fs_err::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Whether `query` is a name without tag or digest (`busybox`, `localhost:5000/app`).
fn is_name_only(query: &str) -> bool {
    !query.contains('@')
        && !query
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
}

/// The images to save, in the order given, each with the names it was asked by. As `docker
/// save`: a name without a tag means every tag of that repository; an ID saves the image
/// without names.
fn resolve(store: &Store, queries: &[String]) -> anyhow::Result<Vec<SaveImage>> {
    let refs = store.refs()?;
    let mut out: Vec<SaveImage> = Vec::new();
    let mut add = |image: StoredImage, name: Option<ImageRef>| {
        let i = match out
            .iter()
            .position(|s| s.image.manifest_descriptor.digest == image.manifest_descriptor.digest)
        {
            Some(i) => i,
            None => {
                out.push(SaveImage {
                    image,
                    names: Vec::new(),
                });
                out.len() - 1
            }
        };
        if let Some(n) = name
            && !out[i].names.contains(&n)
        {
            out[i].names.push(n);
        }
    };
    for q in queries {
        let parsed = ImageRef::parse(q).ok();
        if let Some(r) = parsed.as_ref().filter(|_| is_name_only(q)) {
            let tagged: Vec<(&ImageRef, _)> = refs
                .iter()
                .filter(|(n, _)| n.repository() == r.repository() && n.tag().is_some())
                .collect();
            if !tagged.is_empty() {
                for (name, target) in tagged {
                    add(store.image(&target.manifest)?, Some(name.clone()));
                }
                continue;
            }
        }
        let (image, _) = store.find(q)?;
        let by_name = parsed.filter(|r| refs.contains_key(r));
        add(image, by_name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_only_queries() {
        assert!(is_name_only("busybox"));
        assert!(is_name_only("localhost:5000/app"));
        assert!(!is_name_only("busybox:1"));
        assert!(!is_name_only("localhost:5000/app:2"));
        assert!(!is_name_only("app@sha256:abc"));
    }
}
