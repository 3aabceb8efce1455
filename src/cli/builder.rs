//! `kiln builder prune`: free build cache space: cache records and the layers and snapshots
//! only they hold (`cache::prune`), and the RUN `--mount=type=cache` directories (caches in use
//! by a running build are left alone).

use std::io::BufRead;

use clap::{Args, Subcommand};

use super::format::human_size;
use super::{CmdResult, Failure};
use crate::cache;
use crate::solver::steps::run::cache_mount;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused build cache, not just dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
    /// Amount of disk space to keep for cache (`512MB`, `10GB`, bytes).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    keep_storage: Option<u64>,
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    frontend::instructions::mount::ram_in_bytes(s)
        .ok_or_else(|| format!("`{s}` is not a size (e.g. 512MB, 10GB, or bytes)"))
}

pub fn run(store: &Store, cmd: BuilderCommand) -> CmdResult {
    let BuilderCommand::Prune(args) = cmd;
    if !args.force && !confirm(args.all)? {
        return Ok(());
    }
    let options = cache::prune::PruneOptions {
        all: args.all,
        keep_storage: args.keep_storage,
    };
    let records = cache::prune::prune(store, options)
        .map_err(|e| Failure::Error(anyhow::Error::new(e).context("pruning the build cache")))?;
    // Cache mounts hold no layers: they go with --all, or when no storage is to be kept.
    let mut bytes = records.bytes;
    if args.all || args.keep_storage.is_none() {
        let mounts = cache_mount::prune(&store.cache_mounts_dir())
            .map_err(|e| Failure::Error(anyhow::Error::new(e).context("pruning cache mounts")))?;
        if mounts.busy > 0 {
            eprintln!("{} cache mount(s) in use were kept", mounts.busy);
        }
        bytes += mounts.bytes;
    }
    eprintln!(
        "Deleted {} cache record(s), {} layer(s), {} snapshot(s)",
        records.records, records.blobs, records.snapshots
    );
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(())
}

/// Docker's prompt; anything but `y`/`Y` (or no input) cancels.
fn confirm(all: bool) -> Result<bool, Failure> {
    let what = if all {
        "all build cache"
    } else {
        "all dangling build cache"
    };
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let yes = matches!(line.trim(), "y" | "Y");
    if !yes {
        eprintln!("Total reclaimed space: 0B");
    }
    Ok(yes)
}
