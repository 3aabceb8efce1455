//! `--build-context NAME=SOURCE`: named contexts, parsed as buildx parses them
//! (`build/opt.go` / `util/buildflags/context.go`) and keyed as BuildKit's `dockerui` looks
//! them up (`NamedContext`): the name is an image reference, normalised and shown in its
//! familiar form without `:latest` (`--build-context alpine=…` serves `FROM alpine`,
//! `FROM alpine:latest` and `FROM docker.io/library/alpine`).
//!
//! Sources: a local directory (`name=../dir`, also `name=/abs`), or an image
//! (`name=docker-image://REF`). `oci-layout://`, git and HTTP URLs are refused by name until
//! they are supported.
//!
//! [`resolve_in_plan`] applies image contexts to a plan before it runs: `FROM name` and
//! `COPY --from=name` (where `name` is not a stage) then name the context's image. A directory
//! context named there is refused until directory sources exist for them; a named context that
//! shadows a stage name (BuildKit lets `--build-context base=…` replace `FROM … AS base`) is not
//! applied, as the frontend has already resolved stage names.
//!
//! Not responsible for: `RUN --mount=from=name` (resolved by RUN's mount code) or fetching the
//! images (FROM and COPY do, as for any image reference).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::image::ImageRef;

use super::ContextError;

/// Where a named context comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory (its own `.dockerignore` does not apply, as in BuildKit).
    Dir(PathBuf),
    /// An image: `FROM name` builds on it, `COPY --from=name` copies from it.
    Image(ImageRef),
}

/// The key a name is stored and looked up under: `FROM Name` texts and `--build-context` names
/// meet here. `None` when the text is not a valid image reference (it can then never match).
pub fn lookup_key(name: &str) -> Option<String> {
    let r = ImageRef::parse(name).ok()?;
    let familiar = r.familiar();
    Some(
        familiar
            .strip_suffix(":latest")
            .map_or(familiar.clone(), str::to_owned),
    )
}

/// Parse one `--build-context NAME=SOURCE`; returns the lookup key and the source.
pub fn parse(flag: &str) -> Result<(String, NamedContext), ContextError> {
    let invalid = |reason: &str| ContextError::InvalidNamedContext {
        value: flag.to_owned(),
        reason: reason.to_owned(),
    };
    let (name, source) = flag
        .split_once('=')
        .ok_or_else(|| invalid("expected NAME=SOURCE"))?;
    let key =
        lookup_key(name.trim()).ok_or_else(|| invalid("the name is not a valid image name"))?;
    if source.is_empty() {
        return Err(invalid("the source is empty"));
    }
    let ctx = if let Some(r) = source.strip_prefix("docker-image://") {
        NamedContext::Image(ImageRef::parse(r).map_err(|e| invalid(&format!("`{r}`: {e}")))?)
    } else if source.starts_with("oci-layout://") {
        return Err(invalid("oci-layout:// contexts are not supported yet"));
    } else if source.starts_with("target:") {
        return Err(invalid("target: contexts exist only in bake files"));
    } else if source.contains("://") || source.starts_with("git@") {
        return Err(invalid(
            "remote (git or HTTP) contexts are not supported yet",
        ));
    } else {
        NamedContext::Dir(PathBuf::from(source))
    };
    Ok((key, ctx))
}

/// Rewrite image references in `plan` that a named context replaces.
pub fn resolve_in_plan(
    plan: &mut frontend::BuildPlan,
    contexts: &BTreeMap<String, NamedContext>,
) -> Result<(), ContextError> {
    if contexts.is_empty() {
        return Ok(());
    }
    let replace = |reference: &mut String| -> Result<(), ContextError> {
        let Some(ctx) = lookup_key(reference).and_then(|k| contexts.get(&k)) else {
            return Ok(());
        };
        match ctx {
            NamedContext::Image(r) => {
                *reference = r.to_string();
                Ok(())
            }
            NamedContext::Dir(dir) => Err(ContextError::InvalidNamedContext {
                value: format!("{reference}={}", dir.display()),
                reason: "a directory context used by FROM or COPY --from is not supported yet"
                    .to_owned(),
            }),
        }
    };
    for stage in &mut plan.stages {
        if let frontend::StageBase::Image { reference, .. } = &mut stage.base {
            replace(reference)?;
        }
        for step in &mut stage.steps {
            if let frontend::StepKind::Copy(frontend::CopyStep {
                from: Some(frontend::CopyFrom::Image(reference)),
                ..
            }) = &mut step.kind
            {
                replace(reference)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_familiar_names_without_latest() {
        assert_eq!(lookup_key("alpine").as_deref(), Some("alpine"));
        assert_eq!(lookup_key("alpine:latest").as_deref(), Some("alpine"));
        assert_eq!(
            lookup_key("docker.io/library/alpine").as_deref(),
            Some("alpine")
        );
        assert_eq!(lookup_key("alpine:3.18").as_deref(), Some("alpine:3.18"));
        assert_eq!(lookup_key("deps").as_deref(), Some("deps"));
        assert_eq!(lookup_key("Bad"), None);
    }

    #[test]
    fn image_contexts_replace_from_and_copy_from() {
        let df = frontend::parse(
            "FROM alpine:latest AS a\nCOPY --from=docker.io/library/alpine /x /x\nFROM other\nCOPY --from=a /x /y\n",
        )
        .unwrap();
        let mut plan = frontend::plan(&df, &frontend::PlanOptions::default()).unwrap();
        let contexts = BTreeMap::from([(
            "alpine".to_owned(),
            NamedContext::Image(ImageRef::parse("localhost:5000/pinned:1").unwrap()),
        )]);
        resolve_in_plan(&mut plan, &contexts).unwrap();
        let bases: Vec<_> = plan
            .stages
            .iter()
            .map(|s| match &s.base {
                frontend::StageBase::Image { reference, .. } => reference.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(bases, ["localhost:5000/pinned:1", "other"]);
        assert!(matches!(
            &plan.stages[0].steps[0].kind,
            frontend::StepKind::Copy(frontend::CopyStep {
                from: Some(frontend::CopyFrom::Image(r)), ..
            }) if r == "localhost:5000/pinned:1"
        ));

        let dirs = BTreeMap::from([("other".to_owned(), NamedContext::Dir(PathBuf::from("d")))]);
        assert!(resolve_in_plan(&mut plan, &dirs).is_err());
    }

    #[test]
    fn sources() {
        assert_eq!(
            parse("deps=../deps").unwrap(),
            (
                "deps".to_owned(),
                NamedContext::Dir(PathBuf::from("../deps"))
            )
        );
        assert_eq!(
            parse("alpine:latest=docker-image://busybox:local").unwrap(),
            (
                "alpine".to_owned(),
                NamedContext::Image(ImageRef::parse("busybox:local").unwrap())
            )
        );
        for bad in [
            "noequals",
            "x=",
            "Bad=dir",
            "x=oci-layout:///tmp/l",
            "x=https://example.com/r.git",
            "x=docker-image://Bad",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
