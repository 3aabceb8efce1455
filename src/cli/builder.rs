//! `kiln builder prune`: free build cache space. Today the build cache is the RUN
//! `--mount=type=cache` directories; caches in use by a running build are left alone.

use std::io::BufRead;

use clap::{Args, Subcommand};

use super::format::human_size;
use super::{CmdResult, Failure};
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
}

pub fn run(store: &Store, cmd: BuilderCommand) -> CmdResult {
    let BuilderCommand::Prune(args) = cmd;
    if !args.force && !confirm(args.all)? {
        return Ok(());
    }
    let pruned = cache_mount::prune(&store.cache_mounts_dir())
        .map_err(|e| Failure::Error(anyhow::Error::new(e).context("pruning cache mounts")))?;
    if pruned.busy > 0 {
        eprintln!("{} cache mount(s) in use were kept", pruned.busy);
    }
    println!("Total reclaimed space: {}", human_size(pruned.bytes));
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
