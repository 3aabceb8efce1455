//! WORKDIR: set the working directory and, as BuildKit does, create it (with missing parents) in
//! a layer of its own. When the directory already exists the step records no layer.

use snapshotter::layer::{Compression, Entry, EntryKind, LayerPath, LayerWriter};

use super::StepError;
use crate::solver::fs_index::MetaKind;
use crate::solver::stage::StageState;
use crate::store::{ContentStore, Expected};

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

/// Run a WORKDIR step.
pub fn workdir(
    state: &mut StageState,
    content: &ContentStore,
    path: &str,
    epoch: Option<u64>,
    compression: Compression,
) -> Result<(), StepError> {
    let wd = normalize(&state.workdir(), path);
    state.config.config.working_dir = Some(wd.clone());
    let created_by = format!("WORKDIR {wd}");
    if wd == "/" {
        state.push_history(created_by, true);
        return Ok(());
    }
    // The owner of created directories follows a numeric USER (names need the image's passwd,
    // which user resolution brings with RUN).
    let (uid, gid) = numeric_user(state.config.config.user.as_deref()).unwrap_or((0, 0));
    let fs = state.fs(content)?;
    let target = fs.resolve_dir(&wd);
    let Ok(target) = LayerPath::new(&target) else {
        state.push_history(created_by, true);
        return Ok(());
    };
    if fs
        .get(&target)
        .is_some_and(|m| m.kind == MetaKind::Directory)
    {
        state.push_history(created_by, true);
        return Ok(());
    }
    let mut entries = Vec::new();
    for p in target.ancestors().chain(std::iter::once(target.clone())) {
        let entry = match fs.get(&p) {
            Some(m) if m.kind == MetaKind::Directory => Entry {
                path: p,
                kind: EntryKind::Directory,
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
                mtime: m.mtime,
            },
            _ => Entry {
                path: p,
                kind: EntryKind::Directory,
                mode: 0o755,
                uid,
                gid,
                mtime: epoch.unwrap_or(0),
            },
        };
        entries.push(entry);
    }
    let mut layer = LayerWriter::new(content.writer()?, compression);
    for e in &entries {
        layer.append(e, None)?;
        fs.record(&e.path, &e.kind, e.mode, e.uid, e.gid, e.mtime);
    }
    let (writer, info) = layer.finish()?;
    writer.commit(Some(Expected {
        digest: info.digest.0,
        size: Some(info.size),
    }))?;
    state.push_layer(&info, compression.media_type(), created_by);
    Ok(())
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
    fn numeric_users_only() {
        assert_eq!(numeric_user(Some("1000")), Some((1000, 0)));
        assert_eq!(numeric_user(Some("1000:50")), Some((1000, 50)));
        assert_eq!(numeric_user(Some("nobody")), None);
        assert_eq!(numeric_user(None), None);
    }
}
