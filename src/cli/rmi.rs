//! `kiln rmi IMAGE...`: untag, and delete images whose last name went.

use clap::Args;

use super::{CmdResult, Failure, parse_ref};
use crate::image::ImageRef;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove an image given by ID even if several names refer to it.
    #[arg(short, long)]
    force: bool,
    /// Images: name[:tag], image ID or digest.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn run(store: &Store, args: RmiArgs) -> CmdResult {
    let mut failures = Vec::new();
    for query in &args.images {
        match remove_one(store, query, args.force) {
            Ok(lines) => print!("{lines}"),
            Err(e) => failures.push(e),
        }
    }
    match failures.len() {
        0 => Ok(()),
        _ => Err(Failure::Rendered(
            failures
                .iter()
                .map(|e| format!("error: {}\n", super::chain(e)))
                .collect(),
        )),
    }
}

fn remove_one(store: &Store, query: &str, force: bool) -> anyhow::Result<String> {
    let (image, names) = store.find(query)?;
    // A name removes just that name; an ID removes the image (all names, if forced).
    let by_name = parse_ref(query).ok().filter(|r| names.contains(r));
    let to_remove: Vec<ImageRef> = match by_name {
        Some(r) => vec![r],
        None if names.len() > 1 && !force => {
            anyhow::bail!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                image.id().short()
            )
        }
        None => names,
    };
    let removal = store.remove(&to_remove)?;
    let mut out = String::new();
    for r in &removal.untagged {
        out.push_str(&format!("Untagged: {}\n", r.familiar()));
    }
    for id in &removal.deleted {
        out.push_str(&format!("Deleted: {id}\n"));
    }
    Ok(out)
}
