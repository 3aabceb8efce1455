//! ADD of a git repository (BuildKit `util/gitutil` `ParseGitRef` and `source/git`;
//! Dockerfile reference "ADD" > "Adding files from a Git repository"):
//!
//! - a source is a git URL when it has the scheme `git://`, `ssh://`, `http(s)://` with a path
//!   ending in `.git`, or is scp-like (`git@github.com:org/repo.git`); `#REF` picks a branch,
//!   tag or commit, `#REF:DIR` a subdirectory (`#:DIR` the default branch's);
//! - the repository is cloned with the `git` binary into a temporary directory, the ref
//!   checked out (submodules too), and the tree (or `DIR`) copied into the destination; the
//!   `.git` directory is left out unless `--keep-git-dir`;
//! - every file's mtime is the commit's time, so the layer does not depend on when the build
//!   ran (BuildKit's checkout leaves checkout times).
//!
//! Any transport git supports works; kiln's tests serve a bare repository over git's "dumb"
//! HTTP protocol (static files after `git update-server-info`) from a local server, which is
//! the simplest transport whose URL BuildKit also recognises (`http://127.0.0.1:PORT/r.git`).
//!
//! Not responsible for: SSH agents or credentials (git's own configuration applies).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a git source failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("running git for {remote} (is git installed?)")]
    Spawn {
        remote: String,
        #[source]
        source: std::io::Error,
    },
    #[error("git {what} of {remote} failed: {stderr}")]
    Failed {
        what: &'static str,
        remote: String,
        stderr: String,
    },
    #[error("git ref {reference} not found in {remote}")]
    RefNotFound { reference: String, remote: String },
    #[error("subdirectory `{subdir}` not found in {remote}")]
    SubdirNotFound { subdir: String, remote: String },
    #[error("preparing the checkout of {remote}")]
    Io {
        remote: String,
        #[source]
        source: std::io::Error,
    },
}

/// A parsed git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// What git clones (the source without its fragment).
    pub remote: String,
    /// Branch, tag or commit; the default branch when `None`.
    pub reference: Option<String>,
    pub subdir: Option<String>,
}

/// The git source `source` names, or `None` when it is a local path (or a URL ADD downloads).
pub fn parse(source: &str) -> Option<GitRef> {
    if source.starts_with("./") || source.starts_with("../") {
        return None;
    }
    let (remote, fragment) = match source.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (source, None),
    };
    let lower = remote.to_ascii_lowercase();
    let is_git = if lower.starts_with("http://") || lower.starts_with("https://") {
        url::Url::parse(remote).is_ok_and(|u| u.path().ends_with(".git"))
    } else if lower.starts_with("git://") || lower.starts_with("ssh://") {
        true
    } else {
        scp_like(remote)
    };
    if !is_git {
        return None;
    }
    let (reference, subdir) = match fragment {
        None => (None, None),
        Some(f) => {
            let (r, d) = match f.split_once(':') {
                Some((r, d)) => (r, Some(d)),
                None => (f, None),
            };
            (
                (!r.is_empty()).then(|| r.to_owned()),
                d.filter(|d| !d.is_empty()).map(str::to_owned),
            )
        }
    };
    Some(GitRef {
        remote: remote.to_owned(),
        reference,
        subdir,
    })
}

/// `user@host:path` (BuildKit's scp-like form: a user of `[A-Za-z0-9_-]`, a host of
/// `[A-Za-z0-9.-]`).
fn scp_like(s: &str) -> bool {
    let Some((user, rest)) = s.split_once('@') else {
        return false;
    };
    let Some((host, path)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !path.is_empty()
}

fn git(
    dir: Option<&Path>,
    args: &[&str],
    what: &'static str,
    remote: &str,
) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args(["-c", "advice.detachedHead=false"])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null());
    let out = cmd.output().map_err(|source| GitError::Spawn {
        remote: remote.to_owned(),
        source,
    })?;
    if !out.status.success() {
        return Err(GitError::Failed {
            what,
            remote: remote.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Clone `r` into `dir` (an empty directory) and return the tree to copy (the checkout, or
/// its subdirectory).
pub fn checkout(r: &GitRef, dir: &Path, keep_git_dir: bool) -> Result<PathBuf, GitError> {
    let remote = r.remote.as_str();
    let dir_str = dir.to_string_lossy().into_owned();
    git(
        None,
        &["clone", "--quiet", "--no-checkout", "--", remote, &dir_str],
        "clone",
        remote,
    )?;
    let rev = match &r.reference {
        None => "HEAD".to_owned(),
        Some(reference) => {
            // A branch or tag by name (fetched to be sure to have it), else a commit.
            match git(
                Some(dir),
                &["fetch", "--quiet", "origin", reference],
                "fetch",
                remote,
            ) {
                Ok(_) => "FETCH_HEAD".to_owned(),
                Err(_) => {
                    let spec = format!("{reference}^{{commit}}");
                    git(
                        Some(dir),
                        &["rev-parse", "--verify", "--quiet", &spec],
                        "rev-parse",
                        remote,
                    )
                    .map_err(|_| GitError::RefNotFound {
                        reference: reference.clone(),
                        remote: remote.to_owned(),
                    })?
                }
            }
        }
    };
    git(
        Some(dir),
        &["checkout", "--quiet", "--detach", &rev],
        "checkout",
        remote,
    )?;
    if dir.join(".gitmodules").exists() {
        git(
            Some(dir),
            &["submodule", "update", "--quiet", "--init", "--recursive"],
            "submodule update",
            remote,
        )?;
    }
    let time: u64 = git(Some(dir), &["log", "-1", "--format=%ct"], "log", remote)?
        .parse()
        .unwrap_or(0);
    let io = |source| GitError::Io {
        remote: remote.to_owned(),
        source,
    };
    if !keep_git_dir {
        fs_err::remove_dir_all(dir.join(".git")).map_err(io)?;
    }
    set_times(dir, time).map_err(io)?;
    match &r.subdir {
        None => Ok(dir.to_owned()),
        Some(sub) => {
            let clean = sub.trim_matches('/');
            let path = dir.join(clean);
            let inside = fs_err::canonicalize(&path).ok().filter(|p| {
                p.starts_with(fs_err::canonicalize(dir).unwrap_or_default()) && p.is_dir()
            });
            inside.ok_or_else(|| GitError::SubdirNotFound {
                subdir: sub.clone(),
                remote: remote.to_owned(),
            })
        }
    }
}

/// Set the mtime of everything below `dir` (and `dir`) to `secs`, not following symlinks.
fn set_times(dir: &Path, secs: u64) -> std::io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: i64::try_from(secs).unwrap_or(0),
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    let mut stack = vec![dir.to_owned()];
    let mut dirs = Vec::new();
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else {
                rustix::fs::utimensat(
                    rustix::fs::CWD,
                    &p,
                    &times,
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
        }
        dirs.push(d);
    }
    // Deepest directories last-pushed; their times do not change their parents'.
    for d in dirs.iter().rev() {
        rustix::fs::utimensat(
            rustix::fs::CWD,
            d,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_buildkits_git_urls() {
        let r = parse("https://github.com/moby/buildkit.git#v0.10.1:docs").unwrap();
        assert_eq!(r.remote, "https://github.com/moby/buildkit.git");
        assert_eq!(r.reference.as_deref(), Some("v0.10.1"));
        assert_eq!(r.subdir.as_deref(), Some("docs"));
        let r = parse("git@github.com:moby/buildkit.git#main").unwrap();
        assert_eq!((r.reference.as_deref(), r.subdir), (Some("main"), None));
        let r = parse("http://127.0.0.1:8000/r.git#:sub").unwrap();
        assert_eq!((r.reference, r.subdir.as_deref()), (None, Some("sub")));
        assert!(parse("git://host/repo").is_some());
        assert!(parse("https://example.com/file.tar.gz").is_none());
        assert!(parse("github.com/moby/buildkit").is_none());
        assert!(parse("./local.git").is_none());
        assert!(parse("dir/file").is_none());
        assert!(parse("a:b").is_none());
    }
}
