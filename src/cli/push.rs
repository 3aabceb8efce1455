//! `kiln push IMAGE [DESTINATION]` (Docker's form, plus Podman's optional destination).

use clap::Args;

use super::transfer::{Direction, TransferLines};
use super::{CmdResult, parse_ref};
use crate::registry::{self, RegistryOptions};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Suppress progress output.
    #[arg(short, long)]
    quiet: bool,
    /// Require HTTPS and verify certificates (`false` also allows plain HTTP).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// Local image: name[:tag] or image ID.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Where to push (default: IMAGE's own name).
    #[arg(value_name = "DESTINATION")]
    destination: Option<String>,
}

pub fn run(store: &Store, args: PushArgs) -> CmdResult {
    let (image, names) = store.find(&args.image)?;
    let dest = match &args.destination {
        Some(d) => parse_ref(d)?,
        // Found by ID (perhaps an untagged image): there is no name to push to.
        None => parse_ref(&args.image)
            .ok()
            .filter(|r| names.contains(r))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "`{}` is an image ID, and a push needs a name: tag the image first (`kiln tag {} NAME[:TAG]`) or give the destination (`kiln push {} NAME[:TAG]`)",
                    args.image,
                    args.image,
                    args.image
                )
            })?,
    };
    let opts = RegistryOptions {
        tls_verify: args.tls_verify,
        ..RegistryOptions::default()
    };
    let observer = TransferLines {
        direction: Direction::Push,
        quiet: args.quiet,
    };
    let pushed = registry::push(store, &image, &dest, &opts, &observer)?;
    println!(
        "{}: digest: {} size: {}",
        dest.tag().unwrap_or("latest"),
        pushed.digest,
        pushed.size
    );
    Ok(())
}
