//! `--chown` of COPY/ADD resolved against the destination image's `/etc/passwd` and
//! `/etc/group` (BuildKit `llb.WithUser` + `file/user_linux.go` `readUser`):
//!
//! - `uid` alone: uid and gid are both that number; `uid:gid` as given;
//! - `name` alone: uid and primary gid from the user's passwd line;
//! - `user:group`: each side a number, or a name looked up in passwd / group.
//!
//! Difference: BuildKit silently uses 0 for a name that is not in the files; kiln refuses it
//! with an error naming the file, as the legacy builder and buildah do (a typo must not give
//! root-owned files).
//!
//! Both files are read through [`InRoot`], so a symlinked `/etc/passwd` resolves inside the
//! image, never on the host.
//!
//! Not responsible for: applying the owner (the copy does).

use std::io::Read;

use snapshotter::layer::LayerPath;

use crate::solver::inroot::{InRoot, StatKind};

/// Larger user databases are refused (moby/sys `maxUserFileBytes`).
const MAX_FILE_BYTES: u64 = 10 << 20;

/// Resolve a `--chown` value to numeric ids.
pub fn resolve(root: &InRoot, spec: &str) -> Result<(u64, u64), String> {
    resolve_with(root, spec, false)
}

/// [`resolve`] as BuildKit's `readUser` does it: a name missing from the image's files is 0
/// (WORKDIR's owner, which the user did not ask for explicitly).
pub fn resolve_or_root(root: &InRoot, spec: &str) -> Result<(u64, u64), String> {
    resolve_with(root, spec, true)
}

fn resolve_with(root: &InRoot, spec: &str, missing_is_root: bool) -> Result<(u64, u64), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(format!("invalid --chown={spec}: the user is empty"));
    }
    let (uid, primary_gid) = match user.parse::<u64>() {
        Ok(id) => (id, id),
        Err(_) => {
            let passwd = read(root, "/etc/passwd")?;
            passwd
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 4 && f[0] == user)
                        .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                        .flatten()
                })
                .next()
                .or(missing_is_root.then_some((0, 0)))
                .ok_or_else(|| {
                    format!("unable to find user {user}: no matching entries in /etc/passwd of the image")
                })?
        }
    };
    let gid = match group {
        None => primary_gid,
        Some("") => return Err(format!("invalid --chown={spec}: the group is empty")),
        Some(g) => match g.parse::<u64>() {
            Ok(id) => id,
            Err(_) => {
                let groups = read(root, "/etc/group")?;
                groups
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() >= 3 && f[0] == g)
                            .then(|| f[2].parse().ok())
                            .flatten()
                    })
                    .next()
                    .or(missing_is_root.then_some(0))
                    .ok_or_else(|| {
                        format!("unable to find group {g}: no matching entries in /etc/group of the image")
                    })?
            }
        },
    };
    Ok((uid, gid))
}

/// The text of `path` in the image (symlinks followed inside the root); empty when missing
/// or not a regular file, as moby/sys treats it.
fn read(root: &InRoot, path: &str) -> Result<String, String> {
    let resolved = root.resolve(path).map_err(|e| e.to_string())?;
    let Ok(p) = LayerPath::new(&resolved) else {
        return Ok(String::new());
    };
    match root.lstat(&p).map_err(|e| e.to_string())? {
        Some(st) if st.kind == StatKind::File => {}
        _ => return Ok(String::new()),
    }
    let mut bytes = Vec::new();
    root.open_file(&p)
        .map_err(|e| e.to_string())?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {path} of the image: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{path} of the image is larger than {MAX_FILE_BYTES} bytes"
        ));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_ids_and_errors() {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(d.path().join("etc")).unwrap();
        fs_err::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs_err::write(
            d.path().join("etc/group"),
            "# c\nroot:x:0:\nstaff:x:50:app\n",
        )
        .unwrap();
        let root = InRoot::open(d.path()).unwrap();
        assert_eq!(resolve(&root, "7").unwrap(), (7, 7));
        assert_eq!(resolve(&root, "7:8").unwrap(), (7, 8));
        assert_eq!(resolve(&root, "app").unwrap(), (1000, 1001));
        assert_eq!(resolve(&root, "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve(&root, "5:staff").unwrap(), (5, 50));
        let err = resolve(&root, "nobody").unwrap_err();
        assert!(err.contains("unable to find user nobody"), "{err}");
        assert!(
            resolve(&root, "app:nogroup")
                .unwrap_err()
                .contains("/etc/group")
        );
        // No passwd at all: names fail, numbers work.
        let empty = tempfile::tempdir().unwrap();
        let root = InRoot::open(empty.path()).unwrap();
        assert!(resolve(&root, "app").is_err());
        assert_eq!(resolve(&root, "0:0").unwrap(), (0, 0));
    }
}
