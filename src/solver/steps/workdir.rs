//! WORKDIR: set the working directory and, as BuildKit does, create it (with missing parents) in
//! a layer of its own. When the directory already exists the step records no layer.
//!
//! The directory is created in the step's writable rootfs (a snapshot, see `rootfs`) through
//! root-bounded operations: symlinks on the way are followed inside the image root. Created
//! directories are 0755, dated `SOURCE_DATE_EPOCH` (else 0), and owned by the stage's current
//! `USER`, as BuildKit makes them (`dockerfile2llb/convert.go` `dispatchWorkdir`:
//! `llb.Mkdir(wd, 0755, WithParents(true), WithUser(user))`), so that `USER app` then
//! `WORKDIR /srv/app` gives `app` a directory it can write to. The `USER` value is resolved as
//! BuildKit's `WithUser` chown option is, which is the rule of `--chown` (see `copy::chown`):
//! `uid` alone is `uid:uid`, a name takes its passwd uid and primary gid, a group name is looked
//! up in `/etc/group`, all in the image's own files. No `USER` (or an empty one) is root.
//!
//! A name missing from the image's passwd/group is 0, as in BuildKit (`readUser`; checked with
//! docker 20.10: `USER ghost` then `WORKDIR /wd` gives a root-owned `/wd`): the `USER` may only
//! exist when the image runs. (`--chown` refuses such a name: there the owner is asked for.) The
//! owner is only looked up when a directory is to be created.

use snapshotter::layer::LayerPath;

use super::StepError;
use super::copy::chown;
use crate::solver::inroot::{InRoot, InRootError, StatKind};
use crate::solver::rootfs::Touched;
use crate::solver::stage::StageState;

/// Why WORKDIR could not create its directory.
#[derive(Debug, thiserror::Error)]
pub enum WorkdirError {
    #[error(transparent)]
    InRoot(#[from] InRootError),
    /// The `USER` the directory is to be owned by is not in the image.
    #[error("WORKDIR creates its directory as USER {user}: {reason}")]
    User { user: String, reason: String },
}

impl From<WorkdirError> for StepError {
    fn from(e: WorkdirError) -> Self {
        match e {
            WorkdirError::InRoot(e) => Self::InRoot(e),
            e @ WorkdirError::User { .. } => Self::Invalid(e.to_string()),
        }
    }
}

/// Resolve `path` against the current WORKDIR and clean it (`/a/./b/../c` → `/a/c`).
pub fn normalize(current: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{current}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The WORKDIR path a step sets: `path` resolved against the current WORKDIR.
pub fn target(state: &StageState, path: &str) -> String {
    normalize(&state.workdir(), path)
}

/// The owner of directories WORKDIR creates as `user` (the stage's `USER`), resolved in
/// `root`: root when there is no user.
pub fn owner(root: &InRoot, user: Option<&str>) -> Result<(u64, u64), WorkdirError> {
    match user {
        None | Some("") => Ok((0, 0)),
        Some(u) => chown::resolve_or_root(root, u).map_err(|reason| WorkdirError::User {
            user: u.to_owned(),
            reason,
        }),
    }
}

/// Create the absolute directory `wd` (and missing parents) in `root`, owned by `user` (the
/// stage's `USER`, see [`owner`]); `None` when it already exists (no layer).
pub fn create_in(
    root: &InRoot,
    wd: &str,
    user: Option<&str>,
    epoch: Option<u64>,
) -> Result<Option<Touched>, WorkdirError> {
    let resolved = root.resolve(wd)?;
    let Ok(target) = LayerPath::new(&resolved) else {
        return Ok(None);
    };
    if root
        .lstat(&target)?
        .is_some_and(|st| st.kind == StatKind::Directory)
    {
        return Ok(None);
    }
    let (uid, gid) = owner(root, user)?;
    let mut created = Vec::new();
    for p in target.ancestors().chain(std::iter::once(target.clone())) {
        match root.lstat(&p)? {
            Some(st) if st.kind == StatKind::Directory => {}
            Some(_) => return Err(InRootError::NotADirectory(p.as_str().to_owned()).into()),
            None => {
                root.make_dir(&p, 0o755, uid, gid)?;
                created.push(p);
            }
        }
    }
    let mtime = i64::try_from(epoch.unwrap_or(0)).unwrap_or(i64::MAX);
    for p in created.iter().rev() {
        root.set_mtime(p, mtime)?;
    }
    Ok(Some(Touched {
        paths: created.into_iter().collect(),
        ..Touched::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_buildkit() {
        assert_eq!(normalize("/", "app"), "/app");
        assert_eq!(normalize("/a", "b/../c/./d"), "/a/c/d");
        assert_eq!(normalize("/a", "/x/"), "/x");
        assert_eq!(normalize("/", "../.."), "/");
    }

    #[test]
    fn creates_missing_directories_only() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir(d.path().join("tmp")).unwrap();
        std::os::unix::fs::symlink("/tmp", d.path().join("t")).unwrap();
        let root = InRoot::open(d.path()).unwrap();
        assert!(create_in(&root, "/tmp", None, None).unwrap().is_none());
        assert!(create_in(&root, "/t", None, None).unwrap().is_none());
        let touched = create_in(&root, "/t/a/b", Some("1000:0"), Some(5))
            .unwrap()
            .unwrap();
        let paths: Vec<&str> = touched.paths.iter().map(LayerPath::as_str).collect();
        assert_eq!(paths, ["tmp/a", "tmp/a/b"]);
        let st = root
            .lstat(&LayerPath::new("tmp/a").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!((st.mode, st.uid, st.mtime), (0o755, 1000, 5));
        fs_err::write(d.path().join("file"), b"").unwrap();
        assert!(matches!(
            create_in(&root, "/file/x", None, None),
            Err(WorkdirError::InRoot(InRootError::NotADirectory(_)))
        ));
    }

    #[test]
    fn owned_by_the_user_resolved_in_the_image() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir(d.path().join("etc")).unwrap();
        fs_err::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs_err::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        let root = InRoot::open(d.path()).unwrap();
        let ids = |user| owner(&root, user).unwrap();
        assert_eq!(ids(None), (0, 0));
        assert_eq!(ids(Some("")), (0, 0));
        assert_eq!(ids(Some("app")), (1000, 1001), "passwd uid and primary gid");
        assert_eq!(ids(Some("app:staff")), (1000, 50));
        assert_eq!(
            ids(Some("2000")),
            (2000, 2000),
            "BuildKit's WithUser: uid:uid"
        );
        assert_eq!(ids(Some("2000:3")), (2000, 3));
        // Every directory created gets the owner; an existing one needs no lookup.
        create_in(&root, "/srv/app", Some("app"), None)
            .unwrap()
            .unwrap();
        for p in ["srv", "srv/app"] {
            let st = root.lstat(&LayerPath::new(p).unwrap()).unwrap().unwrap();
            assert_eq!((st.mode, st.uid, st.gid), (0o755, 1000, 1001), "{p}");
        }
        assert!(
            create_in(&root, "/srv", Some("ghost"), None)
                .unwrap()
                .is_none()
        );
        // Names the image does not know are root, as in BuildKit.
        create_in(&root, "/srv/ghost", Some("ghost"), None)
            .unwrap()
            .unwrap();
        let st = root
            .lstat(&LayerPath::new("srv/ghost").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!((st.uid, st.gid), (0, 0));
        assert_eq!(ids(Some("app:nogroup")), (1000, 0));
        assert_eq!(ids(Some("ghost:staff")), (0, 50));
    }
}
