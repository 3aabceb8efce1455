//! `kiln tag SOURCE TARGET`.

use clap::Args;

use super::{CmdResult, parse_ref};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct TagArgs {
    /// Image to tag: name[:tag], image ID or digest.
    #[arg(value_name = "SOURCE_IMAGE")]
    source: String,
    /// New name: name[:tag].
    #[arg(value_name = "TARGET_IMAGE")]
    target: String,
}

pub fn run(store: &Store, args: TagArgs) -> CmdResult {
    let target = parse_ref(&args.target)?;
    let (image, _) = store.find(&args.source)?;
    store.set_ref(&target, &image.manifest_descriptor)?;
    Ok(())
}
