//! Sharing the build cache between stores (DESIGN.md decision 10): `--cache-to` exports the
//! records a build used, with their layer blobs, to a registry or a local directory;
//! `--cache-from` lets a build in another store (a fresh CI runner) hit those records, fetching
//! a layer only when its step hits.
//!
//! An exported cache is one OCI image manifest (so every registry stores it, and `skopeo` or
//! `crane` can copy it like an image):
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json
//!   config  application/vnd.kiln.cache.config.v1+json   {"records":[{preimage, outcome}, …]}
//!   layers  the records' layer blobs, as the store has them (gzip or zstd tar)
//! ```
//!
//! A record is kept with its key's preimage; the importer computes the key from it, so a record
//! can only ever answer the step whose preimage it is. Keys chain through ChainIDs, i.e. through
//! content, so records made on one machine hit on another with the same sources and bases.
//! A layer fetched for a hit is verified (digest, size, DiffID) before it is stored.
//!
//! `mode=min` (the default, as in BuildKit) exports the records whose result is part of the
//! final image; `mode=max` every record the build used, other stages included.
//!
//! Module map: this file (flags, the format, which records to export), `import` (loading
//! caches, serving lookups), `export` (writing to a registry or a directory), `layout` (the OCI
//! image layout of `type=local`).
//!
//! Not responsible for: computing keys (the steps) or the local cache itself (`cache`).

pub mod export;
pub mod import;
pub mod layout;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use snapshotter::{ChainId, DiffId, Digest};

use super::Record;
use crate::image::ImageRef;

pub use export::{ExportSummary, export};
pub use import::ImportedCache;

/// The media type of an exported cache's config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.kiln.cache.config.v1+json";

/// The tag a local cache directory uses when none is given (BuildKit's default).
pub const DEFAULT_LOCAL_TAG: &str = "latest";

/// The config blob of an exported cache.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheConfig {
    pub records: Vec<Record>,
}

/// Where `--cache-from` reads a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSource {
    /// `type=registry,ref=R` (or a bare `R`).
    Registry(ImageRef),
    /// `type=local,src=DIR[,tag=T][,digest=D]`.
    Local {
        dir: PathBuf,
        tag: String,
        digest: Option<Digest>,
    },
}

impl std::fmt::Display for CacheSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheSource::Registry(r) => write!(f, "{}", r.familiar()),
            CacheSource::Local { dir, tag, digest } => match digest {
                Some(d) => write!(f, "{}@{d}", dir.display()),
                None => write!(f, "{}:{tag}", dir.display()),
            },
        }
    }
}

/// Where `--cache-to` writes a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheDest {
    /// `type=registry,ref=R`.
    Registry(ImageRef),
    /// `type=local,dest=DIR[,tag=T]`.
    Local { dir: PathBuf, tag: String },
}

impl std::fmt::Display for CacheDest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheDest::Registry(r) => write!(f, "{}", r.familiar()),
            CacheDest::Local { dir, tag } => write!(f, "{}:{tag}", dir.display()),
        }
    }
}

/// Which records an export writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Those whose result is part of the final image.
    #[default]
    Min,
    /// Every record the build used.
    Max,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub dest: CacheDest,
    pub mode: Mode,
    /// `ignore-error=true`: a failed export is a warning, not a failed build.
    pub ignore_error: bool,
}

/// A `--cache-from`/`--cache-to` value that kiln cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("invalid cache {flag} `{value}`: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
}

/// BuildKit attributes that change how BuildKit formats its own caches, accepted (and without
/// effect here) so that flags written for `docker buildx` work unchanged.
const BUILDKIT_FORMAT_ATTRS: &[&str] = &[
    "compression",
    "compression-level",
    "force-compression",
    "oci-mediatypes",
    "image-manifest",
];

/// The attributes of `type=…,key=value,…`; a value without `=` is a registry reference.
fn attributes(flag: &'static str, value: &str) -> Result<Vec<(String, String)>, SpecError> {
    let invalid = |reason: String| SpecError::Invalid {
        flag,
        value: value.to_owned(),
        reason,
    };
    if value.trim().is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    if !value.contains('=') {
        return Ok(vec![
            ("type".to_owned(), "registry".to_owned()),
            ("ref".to_owned(), value.trim().to_owned()),
        ]);
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for part in value.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            return Err(invalid(format!("`{part}` is not KEY=VALUE")));
        };
        let k = k.trim().to_ascii_lowercase();
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(invalid(format!("`{k}` is given twice")));
        }
        out.push((k, v.trim().to_owned()));
    }
    Ok(out)
}

/// Parse a `--cache-from` value: `type=registry,ref=R`, `type=local,src=DIR[,tag=T|digest=D]`,
/// or a bare registry reference.
pub fn parse_cache_from(value: &str) -> Result<CacheSource, SpecError> {
    let attrs = attributes("--cache-from", value)?;
    let spec = Spec::new("--cache-from", value, &attrs);
    let source = match spec.kind()? {
        "registry" => CacheSource::Registry(spec.reference()?),
        "local" => CacheSource::Local {
            dir: spec.required("src")?.into(),
            tag: spec.tag()?,
            digest: spec
                .get("digest")
                .map(|d| {
                    d.parse::<Digest>()
                        .map_err(|e| spec.invalid(format!("digest `{d}`: {e}")))
                })
                .transpose()?,
        },
        other => return Err(spec.unsupported_type(other)),
    };
    spec.only(&["type", "ref", "src", "tag", "digest"])?;
    Ok(source)
}

/// Parse a `--cache-to` value: `type=registry,ref=R[,mode=min|max]`,
/// `type=local,dest=DIR[,tag=T][,mode=…]`, or a bare registry reference; `ignore-error=true`.
pub fn parse_cache_to(value: &str) -> Result<CacheExport, SpecError> {
    let attrs = attributes("--cache-to", value)?;
    let spec = Spec::new("--cache-to", value, &attrs);
    let dest = match spec.kind()? {
        "registry" => CacheDest::Registry(spec.reference()?),
        "local" => CacheDest::Local {
            dir: spec.required("dest")?.into(),
            tag: spec.tag()?,
        },
        other => return Err(spec.unsupported_type(other)),
    };
    let mode = match spec.get("mode") {
        None | Some("min") => Mode::Min,
        Some("max") => Mode::Max,
        Some(other) => return Err(spec.invalid(format!("mode `{other}`: use min or max"))),
    };
    let ignore_error = match spec.get("ignore-error") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(spec.invalid(format!("ignore-error `{other}`: use true or false")));
        }
    };
    spec.only(&["type", "ref", "dest", "tag", "mode", "ignore-error"])?;
    Ok(CacheExport {
        dest,
        mode,
        ignore_error,
    })
}

/// Parsed attributes with the flag they came from, for errors.
struct Spec<'a> {
    flag: &'static str,
    value: &'a str,
    attrs: &'a [(String, String)],
}

impl<'a> Spec<'a> {
    fn new(flag: &'static str, value: &'a str, attrs: &'a [(String, String)]) -> Self {
        Self { flag, value, attrs }
    }

    fn invalid(&self, reason: String) -> SpecError {
        SpecError::Invalid {
            flag: self.flag,
            value: self.value.to_owned(),
            reason,
        }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, key: &str) -> Result<&'a str, SpecError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.invalid(format!("`{key}=` is required")))
    }

    fn kind(&self) -> Result<&'a str, SpecError> {
        self.get("type")
            .ok_or_else(|| self.invalid("`type=` is required (registry or local)".to_owned()))
    }

    fn unsupported_type(&self, kind: &str) -> SpecError {
        let reason = match kind {
            "inline" => "type=inline is not supported: share the cache with type=registry or \
                         type=local"
                .to_owned(),
            "gha" | "s3" | "azblob" => format!(
                "type={kind} is not supported: share the cache with type=registry or type=local"
            ),
            other => format!("unknown type `{other}` (use registry or local)"),
        };
        self.invalid(reason)
    }

    fn reference(&self) -> Result<ImageRef, SpecError> {
        let text = self.required("ref")?;
        ImageRef::parse(text).map_err(|e| self.invalid(format!("ref `{text}`: {e}")))
    }

    fn tag(&self) -> Result<String, SpecError> {
        match self.get("tag") {
            None => Ok(DEFAULT_LOCAL_TAG.to_owned()),
            Some(t) if valid_tag(t) => Ok(t.to_owned()),
            Some(t) => Err(self.invalid(format!("tag `{t}` is not a valid tag"))),
        }
    }

    /// Refuse attributes other than `allowed` (and BuildKit's format attributes).
    fn only(&self, allowed: &[&str]) -> Result<(), SpecError> {
        for (k, _) in self.attrs {
            if !allowed.contains(&k.as_str()) && !BUILDKIT_FORMAT_ATTRS.contains(&k.as_str()) {
                return Err(self.invalid(format!("unknown attribute `{k}`")));
            }
        }
        Ok(())
    }
}

/// A tag as the distribution spec allows it: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && t.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The records a build used and what its final image is made of, to pick what an export
/// writes.
#[derive(Debug, Clone, Default)]
pub struct UsedRecords {
    /// Every record the build hit or made, once each, in the order first used.
    pub records: Vec<Record>,
    /// The ChainIDs of every prefix of the final image's layers (`None`: no layer).
    pub final_chains: BTreeSet<Option<ChainId>>,
    /// The final image's layer blobs.
    pub final_blobs: BTreeSet<Digest>,
}

impl UsedRecords {
    /// Note what the final image is made of: its DiffIDs and layer blobs.
    pub fn set_final(&mut self, diff_ids: &[DiffId], blobs: impl IntoIterator<Item = Digest>) {
        self.final_chains = (0..=diff_ids.len())
            .map(|n| ChainId::of_stack(&diff_ids[..n]))
            .collect();
        self.final_blobs = blobs.into_iter().collect();
    }

    /// The records `mode` exports: all of them, or (`min`) those whose result is in the final
    /// image: a layer it has, or no layer on a filesystem it is built on.
    pub fn select(&self, mode: Mode) -> Vec<&Record> {
        self.records
            .iter()
            .filter(|r| match mode {
                Mode::Max => true,
                Mode::Min => match r.outcome.blob() {
                    Some(blob) => self.final_blobs.contains(&blob),
                    None => self.final_chains.contains(&parent_chain(r)),
                },
            })
            .collect()
    }
}

/// The ChainID a record's step ran on (`None`: scratch), from its preimage.
fn parent_chain(record: &Record) -> Option<ChainId> {
    record
        .preimage
        .get("parent")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<Digest>().ok())
        .map(ChainId)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Outcome, Preimage};

    #[test]
    fn cache_flags_parse_like_buildx() {
        assert_eq!(
            parse_cache_from("localhost:5000/app:cache").unwrap(),
            CacheSource::Registry(ImageRef::parse("localhost:5000/app:cache").unwrap())
        );
        assert_eq!(
            parse_cache_from("type=local,src=/tmp/c,tag=v2").unwrap(),
            CacheSource::Local {
                dir: "/tmp/c".into(),
                tag: "v2".into(),
                digest: None
            }
        );
        let to = parse_cache_to(
            "type=registry,ref=localhost:5000/app:cache,mode=max,image-manifest=true,oci-mediatypes=true",
        )
        .unwrap();
        assert_eq!(to.mode, Mode::Max);
        assert!(!to.ignore_error);
        assert_eq!(
            to.dest,
            CacheDest::Registry(ImageRef::parse("localhost:5000/app:cache").unwrap())
        );
        let local = parse_cache_to("type=local,dest=/tmp/c,ignore-error=true").unwrap();
        assert_eq!(
            local,
            CacheExport {
                dest: CacheDest::Local {
                    dir: "/tmp/c".into(),
                    tag: "latest".into()
                },
                mode: Mode::Min,
                ignore_error: true
            }
        );
    }

    #[test]
    fn bad_cache_flags_say_what_is_wrong() {
        let err = |r: Result<CacheExport, SpecError>| r.unwrap_err().to_string();
        assert_eq!(
            err(parse_cache_to("type=registry")),
            "invalid cache --cache-to `type=registry`: `ref=` is required"
        );
        assert_eq!(
            err(parse_cache_to("type=local,dest=/x,mode=all")),
            "invalid cache --cache-to `type=local,dest=/x,mode=all`: mode `all`: use min or max"
        );
        assert!(err(parse_cache_to("type=inline")).contains("type=inline is not supported"));
        assert!(err(parse_cache_to("type=gha")).contains("type=gha is not supported"));
        assert!(
            err(parse_cache_to("type=local,dest=/x,color=red"))
                .contains("unknown attribute `color`")
        );
        assert!(err(parse_cache_to("type=local,dest=/x,tag=a/b")).contains("tag `a/b`"));
        assert!(
            parse_cache_from("type=local,src=/x,digest=sha256:12")
                .unwrap_err()
                .to_string()
                .contains("digest `sha256:12`")
        );
        assert!(parse_cache_from("type=local,dest=/x").is_err());
        assert!(parse_cache_from("").is_err());
    }

    fn record(kind: &str, parent: Option<&ChainId>, outcome: Outcome) -> Record {
        let mut p = Preimage::new(kind, parent);
        p.field("n", kind);
        Record {
            preimage: p,
            outcome,
        }
    }

    #[test]
    fn min_mode_keeps_what_the_final_image_is_made_of() {
        let d = |b: u8| Digest::from_bytes([b; 32]);
        let layer = |b: u8| Outcome::Layer {
            digest: d(b),
            diff_id: d(b + 100),
            size: 1,
            uncompressed_size: 1,
        };
        let base = [DiffId(d(101))];
        let base_chain = ChainId::of_stack(&base);
        let mut used = UsedRecords {
            records: vec![
                record("copy", base_chain.as_ref(), layer(2)),
                record("workdir", base_chain.as_ref(), Outcome::Unchanged),
                record("run", None, layer(3)),
                record("copy-elsewhere", Some(&ChainId(d(9))), Outcome::Unchanged),
            ],
            ..Default::default()
        };
        used.set_final(&[DiffId(d(101)), DiffId(d(102))], [d(1), d(2)]);
        let kinds = |rs: Vec<&Record>| {
            rs.iter()
                .map(|r| r.preimage.get("n").unwrap().as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(used.select(Mode::Min)), ["copy", "workdir"]);
        assert_eq!(used.select(Mode::Max).len(), 4);
    }
}
