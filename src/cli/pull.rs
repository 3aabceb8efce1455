//! `kiln pull NAME[:TAG|@DIGEST]`.

use clap::Args;

use super::transfer::{Direction, TransferLines};
use super::{CmdResult, parse_ref};
use crate::registry::{self, ReadyLayer, RegistryOptions};
use crate::solver::rootfs::{self, Snapshots};
use crate::store::Store;
use snapshotter::snapshot::StorageDriver;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Suppress progress output.
    #[arg(short, long)]
    quiet: bool,
    /// Require HTTPS and verify certificates (`false` also allows plain HTTP).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// Image to pull.
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    image: String,
}

pub fn run(store: &Store, storage_driver: Option<StorageDriver>, args: PullArgs) -> CmdResult {
    let reference = parse_ref(&args.image)?;
    if !args.quiet
        && reference.digest().is_none()
        && !args
            .image
            .rsplit('/')
            .next()
            .is_some_and(|l| l.contains(':'))
    {
        eprintln!("Using default tag: latest");
    }
    let opts = RegistryOptions {
        tls_verify: args.tls_verify,
        ..RegistryOptions::default()
    };
    let observer = TransferLines {
        direction: Direction::Pull,
        quiet: args.quiet,
    };
    // As with Docker and containerd, a pulled image is unpacked: its layers become snapshots
    // named by ChainID, shared with every other image built on the same layers. Each layer is
    // unpacked as soon as it and the layers below it are stored, while the others download;
    // a layer the pull verified while downloading is not hashed again.
    let snapshots = Snapshots::new(store, storage_driver);
    let unpack = |ready: ReadyLayer<'_>| -> anyhow::Result<()> {
        rootfs::ensure_chain_verified(
            snapshots.get()?,
            store.content(),
            ready.layers,
            ready.diff_ids,
            ready.verified,
        )?;
        Ok(())
    };
    let image = registry::pull_unpacking(store, &reference, &opts, &observer, &unpack)?;
    if !args.quiet {
        eprintln!("Digest: {}", image.manifest_descriptor.digest);
        eprintln!("Status: Downloaded image for {}", reference.familiar());
    }
    println!("{reference}");
    Ok(())
}
