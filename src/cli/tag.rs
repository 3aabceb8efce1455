//! `kiln tag SOURCE TARGET`: SOURCE is a name, an image ID (also of an untagged image) or a
//! digest; the image TARGET named before keeps its other names, or stays untagged (`<none>`).

use clap::Args;

use super::{CmdResult, Failure, parse_ref};
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
    if is_full_hex_id(&args.target) {
        // As distribution's `ParseNormalizedNamed`: such a name would read as an image ID.
        return Err(Failure::Error(anyhow::anyhow!(
            "invalid repository name ({}), cannot specify 64-byte hexadecimal strings",
            args.target
        )));
    }
    let target = parse_ref(&args.target)?;
    // Held so that a concurrent `rmi` cannot delete the image between finding and naming it.
    let _lease = store.lease()?;
    let (image, _) = store.find(&args.source)?;
    store.set_ref(&target, &image.manifest_descriptor)?;
    Ok(())
}

/// Whether `name` is 64 lowercase hex digits (a full image ID without `sha256:`).
fn is_full_hex_id(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_hex_ids_are_no_names() {
        assert!(is_full_hex_id(&"ab".repeat(32)));
        assert!(!is_full_hex_id(&"ab".repeat(31)));
        assert!(!is_full_hex_id(&"AB".repeat(32)));
        assert!(!is_full_hex_id("app:1"));
    }
}
