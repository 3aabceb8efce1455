//! WORKDIR: set the working directory and, as BuildKit does, create it (with missing parents) in
//! a layer of its own. When the directory already exists the step records no layer.
//!
//! The directory is created in the step's writable rootfs (a snapshot, see `rootfs`) through
//! root-bounded operations: symlinks on the way are followed inside the image root. Created
//! directories are 0755, owned by a numeric USER (else root), dated `SOURCE_DATE_EPOCH` (else 0).

use snapshotter::layer::LayerPath;

use crate::solver::inroot::{InRoot, InRootError, StatKind};
use crate::solver::rootfs::Touched;
use crate::solver::stage::StageState;

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

/// The owner of directories WORKDIR creates: a numeric USER (names need the image's passwd,
/// which user resolution brings with RUN), else root.
pub fn owner(state: &StageState) -> (u64, u64) {
    numeric_user(state.config.config.user.as_deref()).unwrap_or((0, 0))
}

/// Create the absolute directory `wd` (and missing parents) in `root`; `None` when it already
/// exists (no layer).
pub fn create_in(
    root: &InRoot,
    wd: &str,
    (uid, gid): (u64, u64),
    epoch: Option<u64>,
) -> Result<Option<Touched>, InRootError> {
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
    let mut created = Vec::new();
    for p in target.ancestors().chain(std::iter::once(target.clone())) {
        match root.lstat(&p)? {
            Some(st) if st.kind == StatKind::Directory => {}
            Some(_) => return Err(InRootError::NotADirectory(p.as_str().to_owned())),
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
    }))
}

fn numeric_user(user: Option<&str>) -> Option<(u64, u64)> {
    let user = user?;
    // Without a group, BuildKit takes the user's primary group from passwd, else 0.
    let (u, g) = user.split_once(':').unwrap_or((user, "0"));
    Some((u.parse().ok()?, g.parse().ok()?))
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
        assert!(create_in(&root, "/tmp", (0, 0), None).unwrap().is_none());
        assert!(create_in(&root, "/t", (0, 0), None).unwrap().is_none());
        let touched = create_in(&root, "/t/a/b", (1000, 0), Some(5))
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
            create_in(&root, "/file/x", (0, 0), None),
            Err(InRootError::NotADirectory(_))
        ));
    }

    #[test]
    fn numeric_users_only() {
        assert_eq!(numeric_user(Some("1000")), Some((1000, 0)));
        assert_eq!(numeric_user(Some("1000:50")), Some((1000, 50)));
        assert_eq!(numeric_user(Some("nobody")), None);
        assert_eq!(numeric_user(None), None);
    }
}
