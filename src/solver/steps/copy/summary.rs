//! The inputs digest of a COPY selection, recognised unchanged from a summary when it can be:
//! a rebuild with nothing changed fingerprints the sources (`solver::context::fingerprint`: one
//! `statx` per entry) and, when the fingerprint is the one recorded for this selection, takes
//! the recorded digest (`cache::stat`, "Selection summaries") instead of planning the selection,
//! listing its entries and looking each file up in the stat cache.
//!
//! Only selections whose result the fingerprint covers are summarised: literal sources (no
//! wildcard) of one local context with a stat cache, without `--parents` and without archives
//! to extract. The summary is keyed by everything else the selection depends on: the sources as
//! written and the whole `CopySpec` (destination, `--chmod`, `--exclude`, ...), with the cache
//! key version. The others, and a selection whose fingerprint is new or could not be taken,
//! are planned and hashed as before ([`super::selection`]); the result is then recorded for
//! the next build.
//!
//! Not responsible for: what the digest covers (`cache::content`), trusting identities (the
//! racy rule is `cache::stat`'s).

use sha2::{Digest as _, Sha256};
use snapshotter::Digest;

use super::{CopySpec, Owners, Source, glob, selection};
use crate::solver::context::Context;
use crate::solver::steps::{StepEnv, StepError, inputs_digest};

/// Bumped whenever what the selection key covers changes.
const VERSION: &[u8] = b"kiln-copy-selection-v1\n";

/// The inputs digest of `sources` copied as `spec` (every entry 0:0 without `--chown`, as from
/// the build context), through the selection's summary when it is unchanged.
pub(in crate::solver::steps) fn selection_digest(
    env: &StepEnv<'_>,
    sources: &[Source<'_>],
    spec: &CopySpec,
) -> Result<Digest, StepError> {
    let planned = || inputs_digest(env, &selection(sources, spec, Owners::Root)?);
    let Some(tree) = summarisable(sources, spec) else {
        return planned();
    };
    let Some(stat) = env.cache.stat_cache(tree.root()) else {
        return planned();
    };
    let key = selection_key(sources, spec);
    let started_ns = crate::cache::stat::now_ns();
    let paths: Vec<&str> = sources.iter().map(|s| s.path.as_str()).collect();
    let fingerprint = tree.fingerprint(&paths).ok();
    if let Some(f) = &fingerprint
        && let Some(inputs) = stat.summary(&key, &f.digest)
    {
        return Ok(inputs);
    }
    let inputs = planned()?;
    if let Some(f) = fingerprint {
        // Best effort: without it the next build plans the selection again.
        let _ = stat.record_summary(&key, &f.digest, f.newest_ns, started_ns, &inputs);
    }
    Ok(inputs)
}

/// The tree of `sources` when their selection can be summarised.
fn summarisable<'a>(sources: &[Source<'a>], spec: &CopySpec) -> Option<&'a Context> {
    let tree = sources.first()?.tree;
    let literal = |s: &Source<'_>| {
        std::ptr::eq(s.tree, tree) && !s.unpack && !(s.wildcards && glob::has_wildcards(&s.path))
    };
    (!spec.parents && sources.iter().all(literal)).then_some(tree)
}

/// What the selection depends on besides the tree's content.
fn selection_key(sources: &[Source<'_>], spec: &CopySpec) -> Digest {
    let mut h = Sha256::new();
    h.update(VERSION);
    h.update(crate::cache::key::KEY_VERSION.as_bytes());
    h.update([0]);
    for s in sources {
        h.update((s.path.len() as u64).to_le_bytes());
        h.update(s.path.as_bytes());
        h.update([u8::from(s.wildcards), u8::from(s.unpack)]);
    }
    h.update(format!("{spec:?}").as_bytes());
    Digest::from_bytes(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CopySpec {
        CopySpec {
            dest: "/app/".to_owned(),
            workdir: "/".to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn only_literal_sources_of_one_tree_are_summarised() {
        let d = tempfile::tempdir().unwrap();
        let e = tempfile::tempdir().unwrap();
        let (a, b) = (
            Context::open(d.path()).unwrap(),
            Context::open(e.path()).unwrap(),
        );
        let src = |tree, path: &str, wildcards, unpack| Source {
            tree,
            path: path.to_owned(),
            wildcards,
            unpack,
        };
        let yes = [
            src(&a, "data/", true, false),
            src(&a, "x[1].txt", false, false),
        ];
        assert!(summarisable(&yes, &spec()).is_some());
        for no in [
            vec![src(&a, "*.txt", true, false)],
            vec![src(&a, "app.tar", true, true)],
            vec![src(&a, "data/", true, false), src(&b, "data/", true, false)],
        ] {
            assert!(summarisable(&no, &spec()).is_none(), "{no:?}");
        }
        let parents = CopySpec {
            parents: true,
            ..spec()
        };
        assert!(summarisable(&yes, &parents).is_none());
        assert!(summarisable(&[], &spec()).is_none());
    }

    #[test]
    fn the_key_covers_the_sources_and_the_spec() {
        let d = tempfile::tempdir().unwrap();
        let a = Context::open(d.path()).unwrap();
        let src = |path: &str| Source {
            tree: &a,
            path: path.to_owned(),
            wildcards: true,
            unpack: false,
        };
        let base = selection_key(&[src("data/")], &spec());
        assert_eq!(base, selection_key(&[src("data/")], &spec()));
        assert_ne!(base, selection_key(&[src("data")], &spec()));
        assert_ne!(base, selection_key(&[src("data/"), src("x")], &spec()));
        let chmod = CopySpec {
            chmod: Some(super::super::Chmod::parse("0600").unwrap()),
            ..spec()
        };
        assert_ne!(base, selection_key(&[src("data/")], &chmod));
        let exclude = CopySpec {
            exclude: frontend::dockerignore::IgnoreRules::parse("*.log\n").ok(),
            ..spec()
        };
        assert_ne!(base, selection_key(&[src("data/")], &exclude));
    }
}
