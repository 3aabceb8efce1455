//! `kiln rmi IMAGE...`: untag, and delete images whose last name went; an untagged (`<none>`)
//! image is removed by its ID. `kiln image prune`: remove every untagged (dangling) image.

use std::io::BufRead;

use clap::Args;

use super::format::human_size;
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

/// `kiln image prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// Remove every untagged (dangling) image, as `docker image prune` does.
pub fn prune(store: &Store, args: PruneArgs) -> CmdResult {
    if !args.force {
        eprint!(
            "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
        );
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y") {
            println!("Total reclaimed space: 0B");
            return Ok(());
        }
    }
    let removal = store.remove_all_untagged()?;
    let mut out = String::new();
    if !removal.deleted.is_empty() {
        out.push_str("Deleted Images:\n");
        for id in &removal.deleted {
            out.push_str(&format!("deleted: {id}\n"));
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(removal.bytes)
    ));
    print!("{out}");
    Ok(())
}

fn remove_one(store: &Store, query: &str, force: bool) -> anyhow::Result<String> {
    let (image, names) = store.find(query)?;
    let by_name = parse_ref(query).ok().filter(|r| names.contains(r));
    let removal = match by_name {
        // A name removes just that name (and the image, when it was the last one).
        Some(r) => store.remove(&with_orphaned_digests(&r, &names))?,
        // An ID of an image without names removes the image.
        None if names.is_empty() => store.remove_untagged(&image.manifest_descriptor.digest)?,
        None if !force && !is_single_reference(&names) => {
            anyhow::bail!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                image.id().short()
            )
        }
        // An ID removes every name, and so the image.
        None => store.remove(&names)?,
    };
    let mut out = String::new();
    for r in &removal.untagged {
        out.push_str(&format!("Untagged: {}\n", r.familiar()));
    }
    for id in &removal.deleted {
        out.push_str(&format!("Deleted: {id}\n"));
    }
    Ok(out)
}

/// `name` and, when it is a tag and the image's other names are only digest references of the
/// same repository, those too: as `docker rmi`, which does not leave an image behind with
/// nothing but `repo@sha256:…` names once its tag goes.
fn with_orphaned_digests(name: &ImageRef, names: &[ImageRef]) -> Vec<ImageRef> {
    let others: Vec<&ImageRef> = names.iter().filter(|n| *n != name).collect();
    let orphaned = name.tag().is_some()
        && others
            .iter()
            .all(|n| n.tag().is_none() && n.repository() == name.repository());
    let mut out = vec![name.clone()];
    if orphaned {
        out.extend(others.into_iter().cloned());
    }
    out
}

/// Whether an image's names are one repository with at most one tag (Docker's
/// `isSingleReference`): removing such an image by ID needs no `--force`.
fn is_single_reference(names: &[ImageRef]) -> bool {
    let tagged = names.iter().filter(|n| n.tag().is_some()).count();
    tagged <= 1
        && names
            .first()
            .is_some_and(|first| names.iter().all(|n| n.repository() == first.repository()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(names: &[&str]) -> Vec<ImageRef> {
        names.iter().map(|n| ImageRef::parse(n).unwrap()).collect()
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn single_references() {
        assert!(is_single_reference(&refs(&["app:1"])));
        assert!(is_single_reference(&refs(&[
            "app:1",
            &format!("app@{DIGEST}")
        ])));
        assert!(!is_single_reference(&refs(&["app:1", "app:2"])));
        assert!(!is_single_reference(&refs(&[
            "app:1",
            &format!("other@{DIGEST}")
        ])));
        assert!(!is_single_reference(&[]));
    }

    #[test]
    fn a_last_tag_takes_its_digest_references_along() {
        let pinned = format!("app@{DIGEST}");
        let names = refs(&["app:1", &pinned]);
        assert_eq!(with_orphaned_digests(&names[0], &names), names);
        let names = refs(&["app:1", "app:2", &pinned]);
        assert_eq!(with_orphaned_digests(&names[0], &names), refs(&["app:1"]));
        // A digest reference removed by itself leaves the tag.
        let names = refs(&["app:1", &pinned]);
        assert_eq!(with_orphaned_digests(&names[1], &names), refs(&[&pinned]));
    }
}
