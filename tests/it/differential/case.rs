//! One differential case: a directory of `testdata/differential/` (the build context) with a
//! `Dockerfile` and an optional `case.json` saying how to build it and which differences between
//! kiln and buildah are accepted (each with the BuildKit reference section it follows).
//!
//! `case.json` (every field optional):
//!
//! ```json
//! {
//!   "dockerfile": "Dockerfile",
//!   "build_args": { "NAME": "value" },
//!   "build_contexts": { "deps": "deps-dir" },
//!   "target": "stage",
//!   "serve": "served",
//!   "pre": [ { "dockerfile": "Dockerfile.base", "tag": "onbuild-base:local" } ],
//!   "buildah_dockerfile": { "file": "Dockerfile.buildah", "why": "...", "reference": "..." },
//!   "accept": [ { "config": "Cmd", "why": "...", "reference": "..." },
//!               { "config": "Env", "aspect": "order", "why": "...", "reference": "..." },
//!               { "path": "/etc/x", "aspect": "hardlink", "why": "...", "reference": "..." } ],
//!   "expected_failure": "why kiln fails this case today"
//! }
//! ```
//!
//! - `build_contexts`: `--build-context NAME=DIR` for both tools, the directory relative to the
//!   case directory.
//! - `pre`: images built first (with both tools) and tagged, for cases that build `FROM` them.
//! - `buildah_dockerfile`: buildah (1.28, Debian 12) lacks some Dockerfile syntax (heredocs,
//!   `COPY --link/--parents/--exclude`); it then builds this equivalent Dockerfile, written to give
//!   the result BuildKit documents for the original, which kiln builds.
//! - `accept`: a config field or a path excluded from the comparison (or only one `aspect` of
//!   it), only where BuildKit's documented behaviour differs from buildah's; `reference` names
//!   the section.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A case as loaded from its directory.
#[derive(Debug, Clone)]
pub struct Case {
    /// Directory name (also the image tag's name part).
    pub name: String,
    /// The case directory, which is the build context.
    pub dir: PathBuf,
    pub spec: Spec,
}

/// The contents of `case.json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default = "default_dockerfile")]
    pub dockerfile: String,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// `--build-context NAME=DIR`, the directory relative to the case directory.
    #[serde(default)]
    pub build_contexts: BTreeMap<String, String>,
    pub target: Option<String>,
    #[serde(default)]
    pub pre: Vec<Pre>,
    /// A subdirectory served over HTTP on 127.0.0.1 while the case builds; its base URL is
    /// passed to both tools as the build argument `HTTP_BASE`.
    pub serve: Option<String>,
    pub buildah_dockerfile: Option<Alternative>,
    #[serde(default)]
    pub accept: Vec<Accept>,
    pub expected_failure: Option<String>,
}

fn default_dockerfile() -> String {
    "Dockerfile".to_owned()
}

/// An image built (by both tools) before the case itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pre {
    pub dockerfile: String,
    pub tag: String,
}

/// The Dockerfile buildah builds instead of the case's own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alternative {
    pub file: String,
    pub why: String,
    pub reference: String,
}

/// One accepted difference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    /// A config field name (`Cmd`, `Labels`, ...).
    pub config: Option<String>,
    /// An absolute path in the root filesystem (the entry and everything under it).
    pub path: Option<String>,
    /// Only this aspect may differ (default: everything): for a path `hardlink` (which other
    /// paths share the inode) or `owner` (uid/gid); for a config field `order` (the same
    /// elements in another order).
    pub aspect: Option<Aspect>,
    pub why: String,
    pub reference: String,
}

/// The part of an entry or field an accepted difference covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aspect {
    Hardlink,
    Owner,
    Order,
}

impl Case {
    /// The image tag both tools give the case's result.
    pub fn tag(&self) -> String {
        format!("diffcase-{}:1", self.name)
    }

    /// Config fields whose difference is accepted, with the aspect that may differ.
    pub fn accepted_config(&self) -> Vec<(&str, Option<Aspect>)> {
        self.spec
            .accept
            .iter()
            .filter_map(|a| a.config.as_deref().map(|c| (c, a.aspect)))
            .collect()
    }

    /// Paths (relative to `/`) whose difference is accepted, with the aspect that may differ.
    pub fn accepted_paths(&self) -> Vec<(String, Option<Aspect>)> {
        self.spec
            .accept
            .iter()
            .filter_map(|a| {
                a.path
                    .as_deref()
                    .map(|p| (p.trim_start_matches('/').to_owned(), a.aspect))
            })
            .collect()
    }
}

/// Every case under `dir`, sorted by name; an error names a malformed case.
pub fn load_all(dir: &Path) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    let entries = fs_err::read_dir(dir).map_err(|e| e.to_string())?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        if !entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            continue;
        }
        cases.push(load(&entry.path())?);
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(cases)
}

/// One case directory.
pub fn load(dir: &Path) -> Result<Case, String> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: not a UTF-8 name", dir.display()))?
        .to_owned();
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "{name}: case names are lowercase letters, digits and '-'"
        ));
    }
    let json = dir.join("case.json");
    let spec: Spec = if json.exists() {
        let text = fs_err::read_to_string(&json).map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?
    } else {
        Spec {
            dockerfile: default_dockerfile(),
            ..Spec::default()
        }
    };
    let mut files = vec![spec.dockerfile.clone()];
    files.extend(spec.pre.iter().map(|p| p.dockerfile.clone()));
    files.extend(spec.buildah_dockerfile.iter().map(|a| a.file.clone()));
    for f in files {
        if !dir.join(&f).is_file() {
            return Err(format!("{name}: {f} is missing"));
        }
    }
    if let Some(dir_name) = &spec.serve
        && !dir.join(dir_name).is_dir()
    {
        return Err(format!("{name}: served directory {dir_name} is missing"));
    }
    for a in &spec.accept {
        if a.config.is_some() == a.path.is_some() {
            return Err(format!(
                "{name}: an accepted difference names exactly one of `config`, `path`"
            ));
        }
        let aspect_fits = match a.aspect {
            None => true,
            Some(Aspect::Order) => a.config.is_some(),
            Some(Aspect::Hardlink | Aspect::Owner) => a.path.is_some(),
        };
        if !aspect_fits {
            return Err(format!(
                "{name}: aspect {:?} does not apply to this difference",
                a.aspect
            ));
        }
        if a.reference.trim().is_empty() || a.why.trim().is_empty() {
            return Err(format!(
                "{name}: an accepted difference needs `why` and a `reference` section"
            ));
        }
    }
    if let Some(alt) = &spec.buildah_dockerfile
        && (alt.reference.trim().is_empty() || alt.why.trim().is_empty())
    {
        return Err(format!(
            "{name}: `buildah_dockerfile` needs `why` and `reference`"
        ));
    }
    Ok(Case {
        name,
        dir: dir.to_path_buf(),
        spec,
    })
}
