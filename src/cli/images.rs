//! `kiln images`: list images as `docker images` does (table, `-q`, `--format json`), untagged
//! images as `<none>   <none>`; `--filter dangling=true|false`.

use std::time::{Duration, SystemTime};

use clap::Args;
use serde::Serialize;

use super::format::{human_duration, human_size, table};
use super::{CmdResult, Failure};
use crate::image::{Descriptor, ImageRef};
use crate::store::Store;

/// What Docker shows for a missing repository, tag or digest.
const NONE: &str = "<none>";

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show all images (kiln keeps no intermediate images: the same as without it).
    #[arg(short, long)]
    all: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Filter: `dangling=true` (only untagged images) or `dangling=false`.
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
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

/// One listed image: a name of it, or an untagged image.
struct Row {
    created: Option<time::OffsetDateTime>,
    name: Option<ImageRef>,
    manifest: snapshotter::Digest,
    id: snapshotter::Digest,
    since: Option<String>,
    size: u64,
}

impl Row {
    fn repository(&self) -> String {
        self.name
            .as_ref()
            .map_or_else(|| NONE.to_owned(), ImageRef::familiar_repository)
    }

    fn tag(&self) -> String {
        self.name
            .as_ref()
            .and_then(ImageRef::tag)
            .unwrap_or(NONE)
            .to_owned()
    }

    fn digest(&self) -> String {
        match self.name {
            Some(_) => self.manifest.to_string(),
            None => NONE.to_owned(),
        }
    }
}

/// The `dangling` filter of `--filter` values (`None`: not filtered). Other filters are
/// refused rather than ignored.
fn dangling_filter(filters: &[String]) -> Result<Option<bool>, Failure> {
    let mut dangling = None;
    for f in filters {
        let value = match f.split_once('=') {
            Some(("dangling", v)) => v,
            _ => {
                return Err(Failure::Error(anyhow::anyhow!(
                    "unsupported filter `{f}`: kiln supports `dangling=true|false`"
                )));
            }
        };
        let v = match value.to_ascii_lowercase().as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(Failure::Error(anyhow::anyhow!(
                    "invalid filter 'dangling={value}'"
                )));
            }
        };
        if dangling.is_some_and(|d| d != v) {
            return Err(Failure::Error(anyhow::anyhow!(
                "invalid filter: `dangling` given as both true and false"
            )));
        }
        dangling = Some(v);
    }
    Ok(dangling)
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
    let dangling = dangling_filter(&args.filter)?;
    let filter = args
        .repository
        .as_deref()
        .map(super::parse_ref)
        .transpose()?;
    let filter_has_tag = args
        .repository
        .as_deref()
        .is_some_and(|r| r.rsplit('/').next().is_some_and(|last| last.contains(':')));
    let refs = store.all_refs()?;
    let mut listed: Vec<(Option<&ImageRef>, &Descriptor)> = Vec::new();
    if dangling != Some(true) {
        for (name, target) in refs.names() {
            if let Some(f) = &filter
                && (f.repository() != name.repository()
                    || (filter_has_tag && f.tag() != name.tag()))
            {
                continue;
            }
            listed.push((Some(name), &target.manifest));
        }
    }
    if dangling != Some(false) && filter.is_none() {
        listed.extend(refs.untagged().values().map(|t| (None, &t.manifest)));
    }
    let now = SystemTime::now();
    let mut rows = Vec::new();
    for (name, manifest) in listed {
        let image = store.image(manifest)?;
        let created = image.config.created.as_deref().and_then(|c| {
            time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
        });
        let since = created.map(|c| {
            let age = now
                .duration_since(SystemTime::from(c))
                .unwrap_or(Duration::ZERO);
            format!("{} ago", human_duration(age))
        });
        rows.push(Row {
            created,
            name: name.cloned(),
            manifest: manifest.digest,
            id: image.id(),
            since,
            size: image.content_size(),
        });
    }
    // Newest first, as Docker lists them; ties by name, untagged ones last.
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| a.name.is_none().cmp(&b.name.is_none()))
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.id.cmp(&b.id))
    });
    let id_of = |id: &snapshotter::Digest| {
        if args.no_trunc {
            id.to_string()
        } else {
            id.short()
        }
    };
    let mut out = String::new();
    if args.quiet {
        for row in &rows {
            out.push_str(&id_of(&row.id));
            out.push('\n');
        }
    } else if json {
        for row in &rows {
            let line = ImageLine {
                containers: "N/A",
                created_at: row
                    .created
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "N/A".into()),
                created_since: row.since.clone().unwrap_or_else(|| "N/A".into()),
                digest: row.digest(),
                id: id_of(&row.id),
                repository: row.repository(),
                shared_size: "N/A",
                size: human_size(row.size),
                tag: row.tag(),
                unique_size: "N/A",
                virtual_size: human_size(row.size),
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
        for row in &rows {
            let mut r = vec![row.repository(), row.tag()];
            if args.digests {
                r.push(row.digest());
            }
            r.push(id_of(&row.id));
            r.push(row.since.clone().unwrap_or_else(|| "N/A".to_owned()));
            r.push(human_size(row.size));
            table_rows.push(r);
        }
        out = table(&table_rows);
    }
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangling_filters() {
        let f =
            |v: &[&str]| dangling_filter(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(f(&[]).ok(), Some(None));
        assert_eq!(f(&["dangling=true"]).ok(), Some(Some(true)));
        assert_eq!(f(&["dangling=false", "dangling=0"]).ok(), Some(Some(false)));
        assert!(f(&["dangling=maybe"]).is_err());
        assert!(f(&["dangling=true", "dangling=false"]).is_err());
        assert!(f(&["label=x"]).is_err());
    }
}
