//! ADD: everything COPY does (see `copy`), plus three kinds of sources (Dockerfile reference,
//! "ADD"; BuildKit `dispatchCopy` with `isAddCommand`):
//!
//! - local files that are tar archives (plain, gzip, bzip2, xz, zstd) are extracted into the
//!   destination (`archive`); `--unpack=false` copies them as they are;
//! - `http(s)://` URLs are downloaded (`http`), verified with `--checksum`, and copied (never
//!   extracted unless `--unpack=true`);
//! - git URLs are cloned and their tree copied (`git`), `--keep-git-dir` keeping `.git`.
//!
//! `--checksum` is accepted for one HTTP source only, as BuildKit; ADD has no `--from` and no
//! `--parents`. Heredoc sources are written as files, as for COPY.
//!
//! Not responsible for: the copy itself (`copy`).

pub mod archive;
pub mod git;
pub mod http;

use frontend::Step;
use frontend::instructions::AddCommand;

use super::copy::{self, CopyError, Request, Scratch, Source};
use super::{StepEnv, StepError, StepPlace};
use crate::solver::context::Context;
use crate::solver::stage::StageState;

/// Where one ADD source comes from.
enum Kind {
    Local,
    Url(String),
    Git(git::GitRef),
}

fn kind(source: &str) -> Kind {
    if let Some(r) = git::parse(source) {
        return Kind::Git(r);
    }
    if http::is_url(source) {
        return Kind::Url(source.to_owned());
    }
    Kind::Local
}

/// Run an ADD step.
pub(super) fn run(
    env: &StepEnv<'_>,
    state: &mut StageState,
    a: &AddCommand,
    _step: &Step,
    place: &StepPlace<'_>,
) -> Result<(), StepError> {
    let snapshot = state.clone();
    let lookup = move |name: &str| snapshot.lookup(name);
    let expanded = copy::Expanded::new(
        &lookup,
        &a.sources,
        &a.dest,
        a.chown.as_ref(),
        a.chmod.as_ref(),
        &a.exclude,
    )?;
    let sources = &expanded.sources;
    let checksum = a.checksum.as_ref().map(|w| w.expand(&lookup)).transpose()?;
    let kinds: Vec<Kind> = sources.iter().map(|s| kind(s)).collect();
    if checksum.is_some() {
        if sources.len() != 1 || !a.contents.is_empty() {
            return Err(StepError::Invalid(
                "checksum can't be specified for multiple sources".to_owned(),
            ));
        }
        if !matches!(kinds[0], Kind::Url(_)) {
            return Err(StepError::Invalid(
                "checksum can't be specified for non-HTTP(S) sources".to_owned(),
            ));
        }
    }
    let created_by = copy::history_text(
        "ADD",
        false,
        expanded.chown.as_deref(),
        expanded.chmod_text.as_deref(),
        sources,
        &a.contents,
        &expanded.dest,
    );
    // Download and check out first: every tree must exist before the sources point into it.
    let mut scratch = Scratch::new();
    let mut trees: Vec<Option<(Context, String)>> = Vec::with_capacity(kinds.len());
    for k in &kinds {
        trees.push(match k {
            Kind::Local => None,
            Kind::Url(url) => {
                let dir = scratch.dir(env.snapshots.mounts_dir(), "add-url-")?;
                let name = http::file_name(url);
                http::download(url, checksum.as_deref(), &dir, &name).map_err(CopyError::from)?;
                Some((Context::open(&dir).map_err(CopyError::from)?, name))
            }
            Kind::Git(r) => {
                let dir = scratch.dir(env.snapshots.mounts_dir(), "add-git-")?;
                let checkout = dir.join("checkout");
                let tree = git::checkout(r, &checkout, a.keep_git_dir).map_err(CopyError::from)?;
                Some((
                    Context::open(&tree).map_err(CopyError::from)?,
                    "/".to_owned(),
                ))
            }
        });
    }
    let heredoc_files = copy::heredoc_files(&a.contents, &lookup)?;
    let heredocs = copy::heredoc_tree(env, &mut scratch, &heredoc_files)?;
    let mut all: Vec<Source<'_>> = Vec::new();
    for ((source, k), tree) in sources.iter().zip(&kinds).zip(&trees) {
        all.push(match (k, tree) {
            (Kind::Url(_), Some((t, name))) => Source {
                tree: t,
                path: name.clone(),
                wildcards: false,
                unpack: a.unpack == Some(true),
            },
            (Kind::Git(_), Some((t, path))) => Source {
                tree: t,
                path: path.clone(),
                wildcards: false,
                unpack: false,
            },
            _ => Source {
                tree: env.ctx,
                path: source.clone(),
                wildcards: true,
                unpack: a.unpack != Some(false),
            },
        });
    }
    all.extend(copy::sources_in(
        &[],
        env.ctx,
        &heredoc_files,
        heredocs.as_ref(),
    ));
    // The key: the words, and (in `execute`) the content of everything the sources hold, as
    // downloaded and checked out; `--unpack` and `--keep-git-dir` change what is written.
    let mut key = expanded.preimage(env, state, "add", a.link, false);
    key.field("checksum", &checksum)
        .field("unpack", a.unpack)
        .field("keep_git_dir", a.keep_git_dir);
    let request = Request {
        sources: all,
        spec: expanded.spec(state, env.epoch, false)?,
        chown: expanded.chown.clone(),
        link: a.link,
        created_by,
    };
    copy::execute(env, state, request, place, key)
}
