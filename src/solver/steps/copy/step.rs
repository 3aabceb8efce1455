//! The COPY step: expanding its words, preparing the source trees (`--from` views or
//! `--build-context` directories, heredoc files), resolving `--chown`, and running the copy on
//! a snapshot of the stage (or, for `--link`, on an empty one whose layer is then stacked).
//! Shared with ADD ([`execute`]).
//!
//! `--link` (BuildKit: a copy onto `scratch` merged over the stage, used only without
//! `--chmod`): the layer holds exactly what a copy onto an empty filesystem writes, so the
//! destination's symlinks and existing directories in the stage are not looked at and missing
//! parents are created 0755; it is then stacked like any layer. Unlike BuildKit, the next step
//! applies it on the stage's snapshot (BuildKit's merge is lazy) and `--chown` names are
//! resolved in the stage's `/etc/passwd` (BuildKit looks in the empty filesystem and gets 0).
//!
//! Not responsible for: planning the copy (the parent module).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use frontend::instructions::SourceContent;
use frontend::{CopyFrom, CopyStep, Step};

use super::{
    Chmod, CopyError, CopyPlan, CopySpec, Owners, Source, chown, copy_into_seeded, copy_into_with,
    linkable, plan_copy, selection,
};
use crate::solver::context::Context;
use crate::solver::inroot::InRoot;
use crate::solver::rootfs::{self, LayerSettings, MountedView, StepLayer, Touched};
use crate::solver::stage::StageState;
use crate::solver::steps::{StepEnv, StepError, StepPlace, cached, inputs_digest, push_layer};
use snapshotter::snapshot::{Snapshotter as _, StorageDriver};

/// A COPY or ADD ready to run: flags expanded, sources prepared.
pub(in crate::solver::steps) struct Request<'a> {
    pub sources: Vec<Source<'a>>,
    pub spec: CopySpec,
    /// `--chown` as written (expanded): names are resolved in the image when the copy runs.
    pub chown: Option<String>,
    pub link: bool,
    pub created_by: String,
}

/// The `created_by` BuildKit records: `COPY [--parents] [--chown=U] [--chmod=M] SRC... DEST`
/// with the words expanded, and ` # buildkit`.
pub(in crate::solver::steps) fn history_text(
    instruction: &str,
    parents: bool,
    chown: Option<&str>,
    chmod: Option<&str>,
    sources: &[String],
    heredocs: &[SourceContent],
    dest: &str,
) -> String {
    let mut s = instruction.to_owned();
    if parents {
        s.push_str(" --parents");
    }
    if let Some(c) = chown {
        s.push_str(&format!(" --chown={c}"));
    }
    if let Some(m) = chmod {
        s.push_str(&format!(" --chmod={m}"));
    }
    for src in sources {
        s.push(' ');
        s.push_str(src);
    }
    for h in heredocs {
        s.push_str(" <<");
        s.push_str(&h.path);
    }
    s.push(' ');
    s.push_str(dest);
    s.push_str(" # buildkit");
    s
}

/// Temporary trees a step's sources live in (heredoc files, downloads, checkouts).
pub(in crate::solver::steps) struct Scratch {
    dirs: Vec<tempfile::TempDir>,
}

impl Scratch {
    pub fn new() -> Self {
        Self { dirs: Vec::new() }
    }

    /// A new empty directory under `parent`, removed when the step ends.
    pub fn dir(&mut self, parent: &Path, prefix: &str) -> Result<PathBuf, StepError> {
        fs_err::create_dir_all(parent).map_err(|e| StepError::Invalid(e.to_string()))?;
        let d = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(|e| StepError::Invalid(format!("creating a temporary directory: {e}")))?;
        let p = d.path().to_owned();
        self.dirs.push(d);
        Ok(p)
    }
}

/// The heredoc sources as files: name and content, expanded unless the name was quoted.
pub(in crate::solver::steps) fn heredoc_files(
    contents: &[SourceContent],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, StepError> {
    contents
        .iter()
        .map(|c| {
            if c.path.contains('/') || c.path.is_empty() || c.path == "." || c.path == ".." {
                return Err(StepError::Invalid(format!(
                    "heredoc name `{}` cannot be used as a file name",
                    c.path
                )));
            }
            let data = if c.expand {
                frontend::expand_heredoc(&c.data, lookup)?
            } else {
                c.data.clone()
            };
            Ok((c.path.clone(), data))
        })
        .collect()
}

/// Write heredoc files ([`heredoc_files`]) into a tree (`0644`, BuildKit's `Mkfile`).
pub(in crate::solver::steps) fn heredoc_tree(
    env: &StepEnv<'_>,
    scratch: &mut Scratch,
    files: &[(String, String)],
) -> Result<Option<Context>, StepError> {
    if files.is_empty() {
        return Ok(None);
    }
    let dir = scratch.dir(env.snapshots.mounts_dir(), "heredoc-")?;
    let mtime = env.epoch.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    for (name, data) in files {
        let file = dir.join(name);
        fs_err::write(&file, data).map_err(|e| StepError::Invalid(e.to_string()))?;
        fs_err::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| StepError::Invalid(e.to_string()))?;
        set_mtime(&file, mtime)?;
    }
    Ok(Some(Context::open(&dir).map_err(CopyError::from)?))
}

/// Set a host file's mtime (and atime), not following a symlink.
pub(in crate::solver::steps) fn set_mtime(path: &Path, secs: u64) -> Result<(), StepError> {
    let t = rustix::fs::Timespec {
        tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| StepError::Invalid(format!("setting the time of {}: {e}", path.display())))
}

/// Parse `--exclude` patterns (`.dockerignore` syntax).
pub(in crate::solver::steps) fn exclude_rules(
    patterns: &[String],
) -> Result<Option<frontend::dockerignore::IgnoreRules>, StepError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let text: String = patterns.iter().map(|p| format!("{p}\n")).collect();
    frontend::dockerignore::IgnoreRules::parse(&text)
        .map(Some)
        .map_err(|_| StepError::Copy(CopyError::BadExclude(patterns.join(", "))))
}

/// `--chown` with numbers only needs no image; names are resolved when the rootfs is there.
fn numeric_chown(spec: &str) -> Option<(u64, u64)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = u.parse::<u64>().ok()?;
    let gid = match g {
        Some(g) => g.parse::<u64>().ok()?,
        None => uid,
    };
    Some((uid, gid))
}

/// The filesystem of a `--from` source, mounted read-only while the step runs.
pub(in crate::solver::steps) struct FromTree<'a> {
    _view: Option<MountedView<'a>>,
    _empty: Option<tempfile::TempDir>,
    pub tree: Context,
}

/// Mount the filesystem of a stage's (or image's) state for reading.
pub(in crate::solver::steps) fn state_tree<'a>(
    env: &StepEnv<'a>,
    state: &StageState,
) -> Result<FromTree<'a>, StepError> {
    let sn = env.snapshots.get()?;
    let name = rootfs::ensure_chain(
        sn,
        env.store.content(),
        &state.layers,
        &state.config.rootfs.diff_ids,
    )?;
    match name {
        Some(name) => {
            let view = rootfs::mount_view(sn, Some(&name), env.snapshots.mounts_dir())?;
            let tree = Context::open(view.path()).map_err(CopyError::from)?;
            Ok(FromTree {
                _view: Some(view),
                _empty: None,
                tree,
            })
        }
        // An empty filesystem (a `FROM scratch` stage with no layers).
        None => {
            fs_err::create_dir_all(env.snapshots.mounts_dir())
                .map_err(|e| StepError::Invalid(e.to_string()))?;
            let d = tempfile::Builder::new()
                .prefix("empty-")
                .tempdir_in(env.snapshots.mounts_dir())
                .map_err(|e| StepError::Invalid(e.to_string()))?;
            let tree = Context::open(d.path()).map_err(CopyError::from)?;
            Ok(FromTree {
                _view: None,
                _empty: Some(d),
                tree,
            })
        }
    }
}

/// The state `--from` names: a stage of this build, or an image (a name that is a stage of
/// this build wins, which is how an ONBUILD trigger's `--from=stage` finds its stage).
fn from_state(
    env: &StepEnv<'_>,
    place: &StepPlace<'_>,
    from: &CopyFrom,
) -> Result<StageState, StepError> {
    let stage = |i: usize| {
        place.stages.get(&i).cloned().ok_or_else(|| {
            StepError::Invalid(format!(
                "stage {i} was not built before COPY --from used it"
            ))
        })
    };
    match from {
        CopyFrom::Stage(id) => stage(id.0),
        CopyFrom::Image(name) => {
            if let Some(i) = env.stage_names.get(&name.to_ascii_lowercase()) {
                return stage(*i);
            }
            let r = crate::image::ImageRef::parse(name).map_err(|e| StepError::BaseImage {
                reference: name.clone(),
                source: e.into(),
            })?;
            crate::solver::base::image_state(env, &r, "", &place.id)
        }
    }
}

/// The `--build-context` directory `--from` names, read like the main context (its entries
/// 0:0 without `--chown`, as BuildKit's local sources are); a stage of this build wins.
fn named_dir<'e>(env: &StepEnv<'e>, from: &CopyFrom) -> Option<&'e Context> {
    match from {
        CopyFrom::Image(name) if !env.stage_names.contains_key(&name.to_ascii_lowercase()) => {
            env.named.dir(name)
        }
        _ => None,
    }
}

/// The words COPY and ADD share, expanded with the stage's variables.
#[derive(Debug, Clone)]
pub(in crate::solver::steps) struct Expanded {
    pub sources: Vec<String>,
    pub dest: String,
    pub chown: Option<String>,
    /// `--chmod` as written (history) and parsed.
    pub chmod_text: Option<String>,
    pub chmod: Option<Chmod>,
    pub exclude: Vec<String>,
}

impl Expanded {
    pub fn new(
        lookup: &dyn Fn(&str) -> Option<String>,
        sources: &[frontend::Word],
        dest: &frontend::Word,
        chown: Option<&frontend::Word>,
        chmod: Option<&frontend::Word>,
        exclude: &[frontend::Word],
    ) -> Result<Self, StepError> {
        let all = |words: &[frontend::Word]| {
            words
                .iter()
                .map(|w| w.expand(lookup))
                .collect::<Result<Vec<_>, _>>()
        };
        let chmod_text = chmod.map(|w| w.expand(lookup)).transpose()?;
        Ok(Self {
            sources: all(sources)?,
            dest: dest.expand(lookup)?,
            chown: chown.map(|w| w.expand(lookup)).transpose()?,
            chmod: chmod_text
                .as_deref()
                .map(Chmod::parse)
                .transpose()
                .map_err(StepError::Invalid)?,
            chmod_text,
            exclude: all(exclude)?,
        })
    }

    /// How the entries are written.
    pub fn spec(
        &self,
        state: &StageState,
        epoch: Option<u64>,
        parents: bool,
    ) -> Result<CopySpec, StepError> {
        Ok(CopySpec {
            dest: self.dest.clone(),
            workdir: state.workdir(),
            chown: None,
            chmod: self.chmod.clone(),
            epoch,
            parents,
            exclude: exclude_rules(&self.exclude)?,
        })
    }

    /// The cache key's preimage without the inputs: the words as expanded, WORKDIR and the
    /// parent filesystem (none for a `--link` copy, whose layer does not depend on it unless a
    /// `--chown` name is resolved in it).
    pub fn preimage(
        &self,
        env: &StepEnv<'_>,
        state: &StageState,
        op: &str,
        link: bool,
        parents: bool,
    ) -> crate::cache::Preimage {
        let linked = link
            && self.chmod.is_none()
            && self
                .chown
                .as_deref()
                .is_none_or(|c| numeric_chown(c).is_some());
        let diff_ids = (!linked).then_some(state.config.rootfs.diff_ids.as_slice());
        let mut key = crate::solver::steps::preimage(env, op, diff_ids);
        key.field("link", link)
            .field("sources", &self.sources)
            .field("dest", &self.dest)
            .field("workdir", state.workdir())
            .field("chown", &self.chown)
            .field("chmod", &self.chmod_text)
            .field("exclude", &self.exclude)
            .field("parents", parents);
        key
    }
}

/// Run a COPY step.
///
/// Its cache key (`steps::cached`) covers the words as expanded, WORKDIR, the parent
/// filesystem, and the inputs: the content hash of exactly the entries copied from the context
/// (`copy::selection`), or for `--from` the source stage's ChainID (the source is then not
/// mounted at all on a hit).
pub(in crate::solver::steps) fn run(
    env: &StepEnv<'_>,
    state: &mut StageState,
    c: &CopyStep,
    _step: &Step,
    place: &StepPlace<'_>,
) -> Result<(), StepError> {
    let snapshot = state.clone();
    let lookup = move |name: &str| snapshot.lookup(name);
    let expanded = Expanded::new(
        &lookup,
        &c.sources,
        &c.dest,
        c.chown.as_ref(),
        c.chmod.as_ref(),
        &c.exclude,
    )?;
    let created_by = history_text(
        "COPY",
        c.parents,
        expanded.chown.as_deref(),
        expanded.chmod_text.as_deref(),
        &expanded.sources,
        &c.contents,
        &expanded.dest,
    );
    let named_dir = c.from.as_ref().and_then(|f| named_dir(env, f));
    let from = c
        .from
        .as_ref()
        .filter(|_| named_dir.is_none())
        .map(|f| from_state(env, place, f))
        .transpose()?;
    let heredoc_files = heredoc_files(&c.contents, &lookup)?;
    let spec = expanded.spec(state, env.epoch, c.parents)?;
    let mut key = expanded.preimage(env, state, "copy", c.link, c.parents);
    key.field("heredocs", &heredoc_files);
    let copy = |tree: &Context,
                owners_tree: Option<&Context>,
                key: &crate::cache::Preimage|
     -> Result<StepLayer, StepError> {
        let mut scratch = Scratch::new();
        let heredocs = heredoc_tree(env, &mut scratch, &heredoc_files)?;
        let request = Request {
            sources: sources_in(&expanded.sources, tree, &heredoc_files, heredocs.as_ref()),
            spec: spec.clone(),
            chown: expanded.chown.clone(),
            link: c.link,
            created_by: created_by.clone(),
        };
        // Without --chown, what comes from another stage or image keeps its owner (BuildKit).
        let owners = owners_tree.map_or(Owners::Root, Owners::KeepIn);
        layer_of(env, state, request, owners, place, key)
    };
    let layer = match &from {
        Some(from) => {
            let chain = snapshotter::ChainId::of_stack(&from.config.rootfs.diff_ids);
            key.field("from", chain.map(|c| c.to_string()));
            cached(env, place, &key, || {
                let from_tree = state_tree(env, from)?;
                copy(&from_tree.tree, Some(&from_tree.tree), &key)
            })?
        }
        None => {
            // The main context, or a `--build-context` directory. Heredoc files are part of
            // the key as text; only the context is hashed.
            let local = named_dir.unwrap_or(env.ctx);
            // Through the selection's summary when it is unchanged; a planned selection is
            // dropped before the copy plans its own (peak memory).
            let inputs = super::summary::selection_digest(
                env,
                &sources_in(&expanded.sources, local, &[], None),
                &spec,
            )?;
            key.field("inputs", inputs.to_string());
            cached(env, place, &key, || copy(local, None, &key))?
        }
    };
    push_layer(env, state, layer, created_by);
    Ok(())
}

/// COPY's sources: each path (wildcards allowed) in `tree`, then the heredoc files in theirs.
pub(in crate::solver::steps) fn sources_in<'t>(
    paths: &[String],
    tree: &'t Context,
    heredoc_files: &[(String, String)],
    heredocs: Option<&'t Context>,
) -> Vec<Source<'t>> {
    let mut all: Vec<Source<'t>> = paths
        .iter()
        .map(|s| Source {
            tree,
            path: s.clone(),
            wildcards: true,
            unpack: false,
        })
        .collect();
    if let Some(h) = heredocs {
        all.extend(heredoc_files.iter().map(|(name, _)| Source {
            tree: h,
            path: name.clone(),
            wildcards: false,
            unpack: false,
        }));
    }
    all
}

/// Run a prepared COPY/ADD on the stage's filesystem and record its layer and history; every
/// copied entry is 0:0 unless `--chown`. Looked up in the cache first under `key` plus the
/// content hash of the request's sources.
pub(in crate::solver::steps) fn execute(
    env: &StepEnv<'_>,
    state: &mut StageState,
    request: Request<'_>,
    place: &StepPlace<'_>,
    mut key: crate::cache::Preimage,
) -> Result<(), StepError> {
    let inputs = inputs_digest(
        env,
        &selection(&request.sources, &request.spec, Owners::Root)?,
    )?;
    key.field("inputs", inputs.to_string());
    let created_by = request.created_by.clone();
    let layer = cached(env, place, &key, || {
        layer_of(env, state, request, Owners::Root, place, &key)
    })?;
    push_layer(env, state, layer, created_by);
    Ok(())
}

/// Run a prepared COPY/ADD on the stage's filesystem; the owners of entries when there is no
/// `--chown` are chosen by `owners`.
///
/// On overlay, a copy that ran before on the same parent with only other inputs (`key` differs
/// from that run's only in `inputs`) links the files whose sources did not change from that
/// run's snapshot (`solver::seed`) instead of writing them again.
fn layer_of(
    env: &StepEnv<'_>,
    state: &StageState,
    request: Request<'_>,
    owners: Owners<'_>,
    place: &StepPlace<'_>,
    key: &crate::cache::Preimage,
) -> Result<StepLayer, StepError> {
    let Request {
        sources,
        mut spec,
        chown,
        link,
        created_by,
    } = request;
    let sn = env.snapshots.get()?;
    let content = env.store.content();
    let settings = LayerSettings {
        epoch: env.epoch,
        compression: env.compression,
        reuse: Some(env.reuse(&created_by)),
        seed: None,
    };
    // `--chown` by name reads the stage's own /etc/passwd, also for --link (BuildKit resolves
    // it on the scratch layer and silently gets root; kiln resolves what the user meant).
    let numeric = chown.as_deref().map(numeric_chown);
    let needs_names = matches!(numeric, Some(None));
    if let Some(Some(ids)) = numeric {
        spec.chown = Some(ids);
    }
    let copy = |root: &InRoot, spec: &CopySpec| -> Result<Option<Touched>, StepError> {
        let touched = copy_into_with(&sources, root, spec, owners)?;
        Ok((!touched.paths.is_empty()).then_some(touched))
    };
    // BuildKit links only without --chmod (`cfg.link && cfg.chmod == ""`).
    if link && spec.chmod.is_none() {
        if needs_names {
            let view = state_tree(env, state)?;
            let root = InRoot::open(view.tree.root())?;
            spec.chown = Some(resolve_chown(&root, chown.as_deref())?);
        }
        rootfs::file_step(
            sn,
            content,
            None,
            &[],
            settings,
            env.snapshots.mounts_dir(),
            |root| copy(root, &spec),
        )
    } else {
        let diff_ids = &state.config.rootfs.diff_ids;
        let parent = rootfs::ensure_chain(sn, content, &state.layers, diff_ids)?;
        let started_ns = crate::cache::stat::now_ns();
        let resolved = |root: &InRoot| -> Result<CopySpec, StepError> {
            let mut spec = spec.clone();
            if needs_names {
                spec.chown = Some(resolve_chown(root, chown.as_deref())?);
            }
            Ok(spec)
        };
        // A plan made on the parent, and the files an earlier result holds unchanged.
        let seeded = seed_for(
            env,
            place,
            key,
            parent.as_ref(),
            diff_ids,
            |root, manifest| {
                let plan = plan_copy(&sources, root, &resolved(root)?, owners)?;
                let files = linkable(&plan, manifest);
                Ok((plan, files))
            },
        );
        let (planned, seed) = match seeded {
            Some((plan, seed)) => (Some(plan), Some(seed)),
            None => (None, None),
        };
        let mut copied = Vec::new();
        let layer = rootfs::file_step(
            sn,
            content,
            parent.as_ref(),
            diff_ids,
            LayerSettings {
                seed: seed.as_ref(),
                ..settings
            },
            env.snapshots.mounts_dir(),
            |root| -> Result<Option<Touched>, StepError> {
                let spec = resolved(root)?;
                let touched = copy_into_seeded(
                    &sources,
                    root,
                    &spec,
                    owners,
                    planned,
                    seed.as_ref(),
                    &mut copied,
                )?;
                Ok((!touched.paths.is_empty()).then_some(touched))
            },
        )?;
        if let (StepLayer::Layer(info), StorageDriver::Overlay) = (&layer, sn.driver()) {
            let manifest = crate::cache::copies::CopyManifest {
                started_ns,
                files: copied
                    .into_iter()
                    .map(|(p, f)| (p.as_str().to_owned(), f))
                    .collect(),
            };
            env.cache.record_copy(&info.diff_id.0, &manifest);
        }
        Ok(layer)
    }
}

/// The seed of a COPY that ran before at this place on the same parent, differing only in its
/// inputs: the earlier snapshot's layer directory, and the files `linkable` finds unchanged
/// (planned on a read-only view of the parent, as the copy will plan them).
fn seed_for(
    env: &StepEnv<'_>,
    place: &StepPlace<'_>,
    key: &crate::cache::Preimage,
    parent: Option<&snapshotter::snapshot::CommittedName>,
    diff_ids: &[snapshotter::DiffId],
    plan: impl FnOnce(
        &InRoot,
        &crate::cache::copies::CopyManifest,
    ) -> Result<(CopyPlan, Vec<snapshotter::layer::LayerPath>), StepError>,
) -> Option<(CopyPlan, crate::solver::seed::Seed)> {
    let sn = env.snapshots.get().ok()?;
    if sn.driver() != StorageDriver::Overlay {
        return None;
    }
    let step_id = env.cache.step_id(&place.id.stage, place.id.index);
    let before = env.cache.previous_record(&step_id)?;
    if key
        .changed_fields(&before.preimage)
        .iter()
        .any(|f| f != "inputs")
    {
        return None;
    }
    let earlier = before.outcome.layer()?;
    let mut stack = diff_ids.to_vec();
    stack.push(earlier.diff_id);
    let chain = snapshotter::ChainId::of_stack(&stack)?;
    let dir = sn
        .committed_layer_dir(&snapshotter::snapshot::CommittedName::for_chain(&chain))
        .ok()??;
    let manifest = env.cache.copy_manifest(&earlier.diff_id.0)?;
    let view = rootfs::mount_view(sn, parent, env.snapshots.mounts_dir()).ok()?;
    let root = InRoot::open(view.path()).ok()?;
    let (planned, files) = plan(&root, &manifest).ok()?;
    (!files.is_empty()).then(|| (planned, crate::solver::seed::Seed::new(dir, files)))
}

fn resolve_chown(root: &InRoot, chown: Option<&str>) -> Result<(u64, u64), StepError> {
    let spec = chown.unwrap_or("0");
    chown::resolve(root, spec).map_err(|e| StepError::Copy(CopyError::Chown(e)))
}
