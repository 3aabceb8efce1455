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
//! # Directories
//!
//! A directory is a local source like the main context (BuildKit `dockerui/namedcontext.go`,
//! `case "local"`: an `llb.Local` of the directory), opened by [`NamedContexts::open`] as a
//! [`Context`]:
//! - its own `.dockerignore` (at the directory's root) applies: BuildKit reads that file from
//!   the directory and passes its patterns as the local source's excludes; the Dockerfile's
//!   `<name>.dockerignore` and the main context's `.dockerignore` do not;
//! - COPY and FROM write its entries 0:0, as the main context's (the client's file sync resets
//!   uid/gid), with their modes and mtimes; a RUN bind mount shows the directory as it is on
//!   the host (owners included), as it does the main context;
//! - `COPY --from=name` copies from it, `RUN --mount=type=bind,from=name` binds it, and
//!   `FROM name` starts from an image whose one layer holds the directory (BuildKit loads the
//!   local source with no image config and uses `emptyImage`, see `solver::base`).
//!
//! A missing directory fails the build before any step runs (buildx opens every local
//! directory before it starts the build).
//!
//! # Plans
//!
//! [`resolve_in_plan`] applies named contexts to a plan before it runs:
//! - `FROM name` and `COPY --from=name` (where `name` is not a stage) on an image context then
//!   name the context's image; on a directory context they keep the name, which the steps look
//!   up in [`NamedContexts`] when they run;
//! - a named context that shadows a stage name replaces the stage, as BuildKit does
//!   (`dockerfile2llb/convert.go` `buildDispatchStates`: a stage whose name is a named context
//!   gets the context's state, and its own `FROM` and instructions are dropped); the stage then
//!   starts `FROM` the context and has no steps, and stages only it needed are pruned.
//!
//! Not responsible for: the steps that read a directory context (`solver::base`,
//! `steps::copy`, `steps::run::mounts`), fetching images (FROM and COPY do, as for any image
//! reference).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::image::ImageRef;

use super::{Context, ContextError};

/// Where a named context comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory, seen through its own `.dockerignore` (see the module docs).
    Dir(PathBuf),
    /// An image: `FROM name` builds on it, `COPY --from=name` copies from it.
    Image(ImageRef),
}

/// A named context as the build's steps find it by name.
#[derive(Debug, Clone, Copy)]
pub enum Named<'a> {
    /// A directory, opened as a context (with its `.dockerignore`).
    Dir(&'a Context),
    /// An image reference.
    Image(&'a ImageRef),
}

/// The build's named contexts, directories opened: what `FROM`, `COPY --from` and
/// `RUN --mount from=` find by name when they run.
#[derive(Debug, Clone, Default)]
pub struct NamedContexts {
    dirs: BTreeMap<String, Context>,
    images: BTreeMap<String, ImageRef>,
}

impl NamedContexts {
    /// Open every directory of `contexts` (keyed by [`lookup_key`]) with its `.dockerignore`;
    /// a directory that is missing or whose ignore file is invalid fails here.
    pub fn open(contexts: &BTreeMap<String, NamedContext>) -> Result<Self, ContextError> {
        let mut out = Self::default();
        for (key, source) in contexts {
            match source {
                NamedContext::Image(r) => {
                    out.images.insert(key.clone(), r.clone());
                }
                NamedContext::Dir(dir) => {
                    let invalid = |reason: String| ContextError::InvalidNamedContext {
                        value: format!("{key}={}", dir.display()),
                        reason,
                    };
                    let opened = Context::open(dir)
                        .and_then(|c| c.apply_dockerignore(None))
                        .map_err(|e| match e {
                            ContextError::NotADirectory { .. } => {
                                invalid(format!("`{}` is not a directory", dir.display()))
                            }
                            e => invalid(e.to_string()),
                        })?;
                    out.dirs.insert(key.clone(), opened);
                }
            }
        }
        Ok(out)
    }

    /// The named context `name` (as written in the Dockerfile) refers to, if any.
    pub fn get(&self, name: &str) -> Option<Named<'_>> {
        let key = lookup_key(name)?;
        if let Some(dir) = self.dirs.get(&key) {
            return Some(Named::Dir(dir));
        }
        self.images.get(&key).map(Named::Image)
    }

    /// The directory context `name` refers to, if it names one.
    pub fn dir(&self, name: &str) -> Option<&Context> {
        match self.get(name)? {
            Named::Dir(dir) => Some(dir),
            Named::Image(_) => None,
        }
    }

    /// Every directory context, by lookup key.
    pub fn dirs(&self) -> impl Iterator<Item = (&str, &Context)> {
        self.dirs.iter().map(|(k, c)| (k.as_str(), c))
    }
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

/// Apply the named contexts to `plan` (see the module docs): stages they shadow are replaced,
/// image references they name are rewritten to the context's image.
pub fn resolve_in_plan(plan: &mut frontend::BuildPlan, contexts: &BTreeMap<String, NamedContext>) {
    if contexts.is_empty() {
        return;
    }
    // A directory keeps its name: the step finds it in `NamedContexts`.
    let replace = |reference: &mut String| {
        if let Some(NamedContext::Image(r)) = lookup_key(reference).and_then(|k| contexts.get(&k)) {
            *reference = r.to_string();
        }
    };
    let mut shadowed = false;
    for stage in &mut plan.stages {
        let shadowing = stage
            .name
            .as_ref()
            .filter(|n| lookup_key(n.as_str()).is_some_and(|k| contexts.contains_key(&k)));
        if let Some(name) = shadowing {
            stage.base = frontend::StageBase::Image {
                reference: name.as_str().to_owned(),
                span: stage.location.span,
            };
            stage.steps.clear();
            stage.dependencies.clear();
            shadowed = true;
        }
        if let frontend::StageBase::Image { reference, .. } = &mut stage.base {
            replace(reference);
        }
        for step in &mut stage.steps {
            if let frontend::StepKind::Copy(frontend::CopyStep {
                from: Some(frontend::CopyFrom::Image(reference)),
                ..
            }) = &mut step.kind
            {
                replace(reference);
            }
        }
    }
    if shadowed {
        prune(plan);
    }
}

/// Drop the stages the target no longer needs (a replaced stage's own dependencies).
fn prune(plan: &mut frontend::BuildPlan) {
    let target = plan.target_stage().id;
    let mut needed = BTreeSet::from([target]);
    let mut pending = vec![target];
    while let Some(id) = pending.pop() {
        for &dep in plan.stage(id).map_or(&[][..], |s| &s.dependencies) {
            if needed.insert(dep) {
                pending.push(dep);
            }
        }
    }
    plan.stages.retain(|s| needed.contains(&s.id));
    plan.target = plan
        .stages
        .iter()
        .position(|s| s.id == target)
        .expect("the target stage is kept");
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
        resolve_in_plan(&mut plan, &contexts);
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

        // A directory context keeps its name, for the steps to find it when they run.
        let dirs = BTreeMap::from([("other".to_owned(), NamedContext::Dir(PathBuf::from("d")))]);
        resolve_in_plan(&mut plan, &dirs);
        assert!(matches!(
            &plan.stages[1].base,
            frontend::StageBase::Image { reference, .. } if reference == "other"
        ));
    }

    #[test]
    fn a_context_named_like_a_stage_replaces_it() {
        let df = frontend::parse(
            "FROM alpine AS tools\nRUN make\nFROM tools AS base\nRUN x\nFROM base\nCOPY --from=base /a /a\n",
        )
        .unwrap();
        let mut plan = frontend::plan(&df, &frontend::PlanOptions::default()).unwrap();
        assert_eq!(plan.stages.len(), 3);
        let contexts = BTreeMap::from([("base".to_owned(), NamedContext::Dir(PathBuf::from("d")))]);
        resolve_in_plan(&mut plan, &contexts);
        // `base` starts from the context with no steps; `tools`, which only it needed, is gone.
        assert_eq!(plan.stages.len(), 2);
        assert_eq!(plan.target, 1);
        let base = &plan.stages[0];
        assert!(matches!(
            &base.base,
            frontend::StageBase::Image { reference, .. } if reference == "base"
        ));
        assert!(base.steps.is_empty() && base.dependencies.is_empty());
        assert_eq!(plan.stages[1].dependencies, [base.id]);

        // An image context replaces the stage with its image.
        let df = frontend::parse("FROM alpine AS base\nRUN x\nFROM base\n").unwrap();
        let mut plan = frontend::plan(&df, &frontend::PlanOptions::default()).unwrap();
        let contexts = BTreeMap::from([(
            "base".to_owned(),
            NamedContext::Image(ImageRef::parse("busybox:local").unwrap()),
        )]);
        resolve_in_plan(&mut plan, &contexts);
        let pinned = ImageRef::parse("busybox:local").unwrap().to_string();
        assert!(matches!(
            &plan.stages[0].base,
            frontend::StageBase::Image { reference, .. } if *reference == pinned
        ));
        assert!(plan.stages[0].steps.is_empty());
    }

    #[test]
    fn directories_open_with_their_own_ignore_file() {
        let d = tempfile::tempdir().unwrap();
        fs_err::write(d.path().join(".dockerignore"), "secret\n").unwrap();
        fs_err::write(d.path().join("secret"), "s").unwrap();
        fs_err::write(d.path().join("kept"), "k").unwrap();
        let contexts = BTreeMap::from([
            ("deps".to_owned(), NamedContext::Dir(d.path().to_owned())),
            (
                "alpine".to_owned(),
                NamedContext::Image(ImageRef::parse("busybox:local").unwrap()),
            ),
        ]);
        let named = NamedContexts::open(&contexts).unwrap();
        let deps = named.dir("deps").expect("a directory context");
        assert!(deps.resolve("kept").is_ok());
        assert!(matches!(
            deps.resolve("secret"),
            Err(ContextError::Excluded { .. })
        ));
        assert!(named.dir("docker.io/library/deps:latest").is_some());
        assert!(matches!(named.get("alpine"), Some(Named::Image(_))));
        assert!(named.get("other").is_none());

        let missing =
            BTreeMap::from([("deps".to_owned(), NamedContext::Dir(d.path().join("nope")))]);
        let err = NamedContexts::open(&missing).unwrap_err().to_string();
        assert!(err.starts_with("invalid --build-context `deps="), "{err}");
        assert!(err.ends_with("nope` is not a directory"), "{err}");
        fs_err::write(d.path().join(".dockerignore"), "a[\n").unwrap();
        let err = NamedContexts::open(&contexts).unwrap_err().to_string();
        assert!(err.contains(".dockerignore:1"), "{err}");
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
