//! `kiln load [-i FILE] [-q]`: images from a docker-archive or oci-archive (plain or
//! compressed), from a file or stdin, into the store; then unpacked, as after a pull. Images the
//! archive does not name are kept untagged, as `docker load` keeps them.

use std::io::{BufReader, IsTerminal};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::{CmdResult, Failure};
use crate::archive;
use crate::image::Platform;
use crate::solver::rootfs::{self, Snapshots};
use crate::store::Store;
use snapshotter::snapshot::StorageDriver;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN.
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Suppress the load output (kiln shows no progress while loading: accepted as `docker
    /// load -q` is, the names loaded are still printed).
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(store: &Store, storage_driver: Option<StorageDriver>, args: LoadArgs) -> CmdResult {
    let LoadArgs { input, quiet: _ } = args;
    let platform = Platform::host();
    let loaded = match &input {
        Some(path) => {
            let file = fs_err::File::open(path)?;
            archive::load(store, BufReader::with_capacity(256 * 1024, file), &platform)
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(Failure::Error(anyhow::anyhow!(
                    "requested load from stdin, but stdin is empty"
                )));
            }
            archive::load(store, stdin.lock(), &platform)
        }
    }
    .context("loading the archive")?;

    // As after a pull, the images are unpacked: their layers become snapshots by ChainID.
    let snapshots = Snapshots::new(store, storage_driver);
    for image in &loaded.images {
        let stored = store.image(&image.manifest)?;
        rootfs::ensure_chain(
            snapshots.get()?,
            store.content(),
            &stored.manifest.layers,
            &stored.config.rootfs.diff_ids,
        )?;
    }
    for image in &loaded.images {
        for (name, old) in &image.replaced {
            println!(
                "The image {} already exists, renaming the old one with ID {old} to empty string",
                name.familiar()
            );
        }
        for name in &image.names {
            println!("Loaded image: {}", name.familiar());
        }
        if image.names.is_empty() {
            // As `docker load` of an image saved by ID: kept untagged (`<none>`).
            println!("Loaded image ID: {}", image.id);
        }
    }
    Ok(())
}
