//! `kiln images`: list images as `docker images` does (table, `-q`, `--format json`).

use std::time::{Duration, SystemTime};

use clap::Args;
use serde::Serialize;

use super::format::{human_duration, human_size, table};
use super::{CmdResult, Failure};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Show digests.
    #[arg(long)]
    digests: bool,
    /// Output format: `table` (default) or `json` (one JSON object per line).
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Only images of this repository (optionally with a tag).
    repository: Option<String>,
}

/// One line of `--format json`, with Docker's field names.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageLine {
    containers: &'static str,
    created_at: String,
    created_since: String,
    digest: String,
    #[serde(rename = "ID")]
    id: String,
    repository: String,
    shared_size: &'static str,
    size: String,
    tag: String,
    unique_size: &'static str,
    virtual_size: String,
}

pub fn run(store: &Store, args: ImagesArgs) -> CmdResult {
    let json = match args.format.as_deref() {
        None | Some("table") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Failure::Error(anyhow::anyhow!(
                "unsupported --format `{other}`: use `table` or `json`"
            )));
        }
    };
    let filter = args
        .repository
        .as_deref()
        .map(super::parse_ref)
        .transpose()?;
    let filter_has_tag = args
        .repository
        .as_deref()
        .is_some_and(|r| r.rsplit('/').next().is_some_and(|last| last.contains(':')));
    let now = SystemTime::now();
    let mut rows = Vec::new();
    for (name, target) in store.refs()? {
        if let Some(f) = &filter
            && (f.repository() != name.repository() || (filter_has_tag && f.tag() != name.tag()))
        {
            continue;
        }
        let image = store.image(&target.manifest)?;
        let created = image.config.created.as_deref().and_then(|c| {
            time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
        });
        let since = created.map(|c| {
            let age = now
                .duration_since(SystemTime::from(c))
                .unwrap_or(Duration::ZERO);
            format!("{} ago", human_duration(age))
        });
        rows.push((
            created,
            name,
            target.manifest.digest,
            image.id(),
            since,
            image.content_size(),
        ));
    }
    // Newest first, as Docker lists them; ties by name.
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = String::new();
    if args.quiet {
        for (_, _, _, id, _, _) in &rows {
            out.push_str(&if args.no_trunc {
                id.to_string()
            } else {
                id.short()
            });
            out.push('\n');
        }
    } else if json {
        for (created, name, manifest, id, since, size) in &rows {
            let line = ImageLine {
                containers: "N/A",
                created_at: created
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "N/A".into()),
                created_since: since.clone().unwrap_or_else(|| "N/A".into()),
                digest: manifest.to_string(),
                id: if args.no_trunc {
                    id.to_string()
                } else {
                    id.short()
                },
                repository: name.familiar_repository(),
                shared_size: "N/A",
                size: human_size(*size),
                tag: name.tag().unwrap_or("<none>").to_owned(),
                unique_size: "N/A",
                virtual_size: human_size(*size),
            };
            out.push_str(&serde_json::to_string(&line).expect("serializes"));
            out.push('\n');
        }
    } else {
        let mut table_rows = vec![{
            let mut h = vec!["REPOSITORY".to_owned(), "TAG".to_owned()];
            if args.digests {
                h.push("DIGEST".to_owned());
            }
            h.extend(["IMAGE ID", "CREATED", "SIZE"].map(str::to_owned));
            h
        }];
        for (_, name, manifest, id, since, size) in &rows {
            let mut r = vec![
                name.familiar_repository(),
                name.tag().unwrap_or("<none>").to_owned(),
            ];
            if args.digests {
                r.push(manifest.to_string());
            }
            r.push(if args.no_trunc {
                id.to_string()
            } else {
                id.short()
            });
            r.push(since.clone().unwrap_or_else(|| "N/A".to_owned()));
            r.push(human_size(*size));
            table_rows.push(r);
        }
        out = table(&table_rows);
    }
    print!("{out}");
    Ok(())
}
