//! The build context: a directory the Dockerfile's COPY sources are resolved in.
//!
//! Every source path is resolved inside the context root: `..` cannot climb out, and symlinks
//! are followed as if the root were `/` (an absolute link target is taken relative to the root),
//! the way BuildKit's `fsutil` and `securejoin` bound them. A path that would leave the context
//! is refused with [`ContextError::OutsideContext`].
//!
//! Not responsible for: `.dockerignore` (lands with the full engine), deciding layer layout.

use std::path::{Component, Path, PathBuf};

/// Errors resolving context paths.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context `{path}` is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("forbidden path outside the build context: {0}")]
    OutsideContext(String),
    #[error("\"{0}\": not found in the build context")]
    NotFound(String),
    #[error("too many levels of symbolic links resolving `{0}` in the build context")]
    SymlinkLoop(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Maximum symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// A local build context.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
}

impl Context {
    pub fn open(path: &Path) -> Result<Self, ContextError> {
        let root = fs_err::canonicalize(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ContextError::NotADirectory {
                path: path.to_owned(),
            },
            _ => ContextError::Io(e),
        })?;
        if !root.is_dir() {
            return Err(ContextError::NotADirectory {
                path: path.to_owned(),
            });
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolve a COPY source (as written, relative to the context root; a leading `/` is the
    /// root) to a host path inside the root, following symlinks inside the root.
    pub fn resolve(&self, source: &str) -> Result<PathBuf, ContextError> {
        let mut pending: Vec<String> = Vec::new();
        push_components(&mut pending, source, source)?;
        let mut resolved: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "." => {}
                ".." => {
                    if resolved.pop().is_none() {
                        return Err(ContextError::OutsideContext(source.to_owned()));
                    }
                }
                name => {
                    let candidate = self.host_path(&resolved).join(name);
                    match fs_err::symlink_metadata(&candidate) {
                        Ok(meta) if meta.file_type().is_symlink() => {
                            links += 1;
                            if links > MAX_SYMLINKS {
                                return Err(ContextError::SymlinkLoop(source.to_owned()));
                            }
                            let target = fs_err::read_link(&candidate)?;
                            let target = target.to_string_lossy().into_owned();
                            if target.starts_with('/') {
                                resolved.clear();
                            }
                            push_components(&mut pending, &target, source)?;
                        }
                        Ok(_) => resolved.push(name.to_owned()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Err(ContextError::NotFound(source.to_owned()));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(self.host_path(&resolved))
    }

    fn host_path(&self, components: &[String]) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(components);
        p
    }
}

/// Push the components of `path` onto the stack so they pop in order.
fn push_components(
    stack: &mut Vec<String>,
    path: &str,
    original: &str,
) -> Result<(), ContextError> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {}
            Component::CurDir => {}
            Component::ParentDir => parts.push("..".to_owned()),
            Component::Normal(n) => parts.push(
                n.to_str()
                    .ok_or_else(|| ContextError::NotFound(original.to_owned()))?
                    .to_owned(),
            ),
        }
    }
    stack.extend(parts.into_iter().rev());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ctx() -> (tempfile::TempDir, Context) {
        let d = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(d.path().join("dir/sub")).unwrap();
        fs_err::write(d.path().join("dir/sub/f"), b"x").unwrap();
        fs_err::write(d.path().join("top"), b"y").unwrap();
        symlink("/top", d.path().join("abs-link")).unwrap();
        symlink("../../top", d.path().join("dir/rel-link")).unwrap();
        symlink("../../../../../etc/passwd", d.path().join("escape")).unwrap();
        symlink("loop2", d.path().join("loop1")).unwrap();
        symlink("loop1", d.path().join("loop2")).unwrap();
        let c = Context::open(d.path()).unwrap();
        (d, c)
    }

    #[test]
    fn resolves_inside_the_root() {
        let (_d, c) = ctx();
        assert_eq!(c.resolve("dir/sub/f").unwrap(), c.root().join("dir/sub/f"));
        assert_eq!(
            c.resolve("/dir/./sub/../sub/f").unwrap(),
            c.root().join("dir/sub/f")
        );
        assert_eq!(c.resolve("abs-link").unwrap(), c.root().join("top"));
        assert_eq!(c.resolve(".").unwrap(), c.root());
    }

    #[test]
    fn symlinks_cannot_escape() {
        let (_d, c) = ctx();
        // Like BuildKit, a link climbing out of the root is clamped at the root... but we refuse
        // it outright, which is clearer than silently resolving to another file.
        assert!(matches!(
            c.resolve("escape"),
            Err(ContextError::OutsideContext(_))
        ));
        assert!(matches!(
            c.resolve("dir/rel-link"),
            Err(ContextError::OutsideContext(_))
        ));
        assert!(matches!(
            c.resolve("../x"),
            Err(ContextError::OutsideContext(_))
        ));
        assert!(matches!(
            c.resolve("loop1"),
            Err(ContextError::SymlinkLoop(_))
        ));
        assert!(matches!(
            c.resolve("missing"),
            Err(ContextError::NotFound(_))
        ));
    }
}
