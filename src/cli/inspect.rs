//! `kiln image inspect IMAGE...`: a JSON array in the shape of `docker image inspect`.

use clap::Args;
use serde_json::{Value, json};

use super::{CmdResult, Failure};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Images: name[:tag], image ID or digest.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub fn run(store: &Store, args: InspectArgs) -> CmdResult {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for query in &args.images {
        match store.find(query) {
            Ok((image, names)) => {
                let repo_tags: Vec<String> = names
                    .iter()
                    .filter(|n| n.tag().is_some())
                    .map(|n| n.familiar())
                    .collect();
                let mut repo_digests: Vec<String> = names
                    .iter()
                    .map(|n| {
                        format!(
                            "{}@{}",
                            n.familiar_repository(),
                            image.manifest_descriptor.digest
                        )
                    })
                    .collect();
                repo_digests.dedup();
                let c = &image.config;
                out.push(json!({
                    "Id": image.id().to_string(),
                    "RepoTags": repo_tags,
                    "RepoDigests": repo_digests,
                    "Parent": "",
                    "Comment": "",
                    "Created": c.created.clone().unwrap_or_default(),
                    "Author": c.author.clone().unwrap_or_default(),
                    "Config": serde_json::to_value(&c.config).unwrap_or(Value::Null),
                    "Architecture": c.architecture,
                    "Variant": c.variant,
                    "Os": c.os,
                    "Size": image.content_size(),
                    "RootFS": { "Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids },
                    "Descriptor": image.manifest_descriptor,
                    "Manifest": image.manifest,
                }));
            }
            Err(e) => missing.push(format!("error: {e}\n")),
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Array(out)).expect("serializes")
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::Rendered(missing.concat()))
    }
}
