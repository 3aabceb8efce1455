//! The build context: a directory the Dockerfile's COPY sources are resolved in, seen through
//! its `.dockerignore`.
//!
//! Every source path is resolved inside the context root: `..` cannot climb out, and symlinks
//! are followed as if the root were `/` (an absolute link target is taken relative to the root),
//! the way BuildKit's `fsutil` and `securejoin` bound them. A path that would leave the context
//! is refused with [`ContextError::OutsideContext`].
//!
//! # `.dockerignore`
//!
//! [`Context::apply_dockerignore`] loads the rules that apply, as BuildKit's client does:
//! `<Dockerfile name>.dockerignore` next to the Dockerfile (`build/app.Dockerfile.dockerignore`
//! for `-f build/app.Dockerfile`) if it exists, else `.dockerignore` at the context root; the
//! first one found is used alone, never merged. A file with an invalid pattern fails the
//! build. The Dockerfile and the ignore file themselves get no special treatment: like
//! BuildKit, a rule can exclude them from what COPY sees.
//!
//! The context then behaves like the filtered copy BuildKit transfers: excluded paths do not
//! exist for [`Context::resolve`] (naming one is [`ContextError::Excluded`], "not found"), and
//! [`Context::walk`] lists only included entries. An excluded directory is entered only when
//! an exception could re-include something below it, and appears (with only the included
//! entries) when it leads to an included one. Rules are matched against real context paths:
//! a symlink is kept or left out by its own path, and resolving through it checks its target.
//!
//! # Other sources
//!
//! [`fingerprint`] recognises an unchanged selection of literal sources from one `statx` per
//! entry.
//!
//! [`stdin`] turns `kiln build -` input into a context directory (a tar, plain or compressed) or
//! a Dockerfile; [`named`] parses `--build-context NAME=SOURCE` and opens its directories as
//! contexts.
//!
//! Not responsible for: the matching rules themselves (`frontend::dockerignore`), deciding
//! layer layout (COPY does).

pub mod fingerprint;
pub mod named;
pub mod stdin;

pub use named::{Named, NamedContext, NamedContexts};

use std::ffi::OsString;
use std::fs::Metadata;
use std::path::{Component, Path, PathBuf};

use frontend::dockerignore::{IgnoreRules, Rule};

/// Errors resolving context paths.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context `{path}` is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("forbidden path outside the build context: {0}")]
    OutsideContext(String),
    #[error("\"{0}\": not found in the build context")]
    NotFound(String),
    /// A source that exists on disk but is left out by the ignore file. The message starts
    /// like [`ContextError::NotFound`] (BuildKit reports it as not found) and names the rule.
    #[error(
        "\"{source_path}\": not found in the build context: excluded by {ignore_file}:{line} (`{pattern}`)"
    )]
    Excluded {
        source_path: String,
        ignore_file: String,
        line: u32,
        pattern: String,
    },
    #[error("too many levels of symbolic links resolving `{0}` in the build context")]
    SymlinkLoop(String),
    /// The ignore file does not parse; `diagnostics` point into `text` (render them with
    /// `diagnostics.render(name, text)`).
    #[error("{}", one_line_each(.name, .text, .diagnostics))]
    InvalidIgnoreFile {
        name: String,
        text: String,
        diagnostics: frontend::Diagnostics,
    },
    #[error("{path} is not valid UTF-8")]
    IgnoreFileNotUtf8 { path: PathBuf },
    /// A context archive on stdin that cannot be extracted.
    #[error("extracting the build context from stdin")]
    Archive(#[source] Box<snapshotter::apply::ApplyError>),
    #[error("stdin is neither a tar archive nor a UTF-8 Dockerfile")]
    StdinNotUtf8,
    #[error("invalid --build-context `{value}`: {reason}")]
    InvalidNamedContext { value: String, reason: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn one_line_each(name: &str, text: &str, diagnostics: &frontend::Diagnostics) -> String {
    diagnostics
        .iter()
        .map(|d| d.one_line(name, text))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Maximum symlinks followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// The ignore file in force.
#[derive(Debug, Clone)]
struct IgnoreFile {
    /// As shown in messages: relative to the context root when inside it.
    name: String,
    text: String,
    rules: IgnoreRules,
}

impl IgnoreFile {
    fn exclusion(&self, rule: &Rule) -> Exclusion {
        let (line, _) = frontend::span::line_column(&self.text, rule.span().start);
        Exclusion {
            line,
            pattern: rule.span().text(&self.text).to_owned(),
        }
    }

    fn excluded(&self, source: &str, exclusion: Exclusion) -> ContextError {
        ContextError::Excluded {
            source_path: source.to_owned(),
            ignore_file: self.name.clone(),
            line: exclusion.line,
            pattern: exclusion.pattern,
        }
    }
}

/// A local build context.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: Option<IgnoreFile>,
}

/// A path [`Context::resolve`] found.
#[derive(Debug, Clone)]
pub struct ContextPath {
    /// The COPY source as written, for messages.
    source: String,
    host: PathBuf,
    /// Context-relative and `/`-separated; empty for the root.
    rel: String,
    presence: Presence,
}

/// How a resolved path is part of the filtered context.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Presence {
    Included,
    /// An excluded directory that exists only if an exception brings back something below it
    /// ([`Context::walk`] finds out); the rule that excludes it, for the error if not.
    ThroughExceptions(Exclusion),
}

/// The ignore-file line that excludes a path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exclusion {
    line: u32,
    pattern: String,
}

impl ContextPath {
    /// Where the path is on the host (inside the context root, symlinks resolved).
    pub fn host(&self) -> &Path {
        &self.host
    }
}

/// One entry of a [`Context::walk`].
#[derive(Debug)]
pub struct WalkEntry {
    /// Path below the walked directory, `/`-separated (`sub/f`).
    pub rel: String,
    pub host: PathBuf,
    /// Of the entry itself (a symlink is not followed).
    pub meta: Metadata,
}

impl Context {
    /// Opens a context directory, with no ignore rules yet (see [`Self::apply_dockerignore`]).
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
        Ok(Self { root, ignore: None })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether an ignore file applies (so the context on disk has more than the build sees).
    pub fn has_ignore_rules(&self) -> bool {
        self.ignore.is_some()
    }

    /// Loads the ignore file that applies: `<name>.dockerignore` next to `dockerfile` (the
    /// Dockerfile's path on disk, `None` when it came from stdin) if it exists, else the
    /// context's `.dockerignore`; none is fine.
    pub fn apply_dockerignore(mut self, dockerfile: Option<&Path>) -> Result<Self, ContextError> {
        let beside_dockerfile = dockerfile.and_then(|path| {
            let mut name: OsString = path.file_name()?.to_owned();
            name.push(".dockerignore");
            Some(path.with_file_name(name))
        });
        let candidates = beside_dockerfile
            .into_iter()
            .chain([self.root.join(".dockerignore")]);
        for candidate in candidates {
            let bytes = match fs_err::read(&candidate) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let text = String::from_utf8(bytes).map_err(|_| ContextError::IgnoreFileNotUtf8 {
                path: candidate.clone(),
            })?;
            let name = self.display_name(&candidate);
            let rules = frontend::dockerignore::parse(&text).map_err(|diagnostics| {
                ContextError::InvalidIgnoreFile {
                    name: name.clone(),
                    text: text.clone(),
                    diagnostics,
                }
            })?;
            self.ignore = Some(IgnoreFile { name, text, rules });
            break;
        }
        Ok(self)
    }

    /// `candidate` relative to the root when it is inside, else as given.
    fn display_name(&self, candidate: &Path) -> String {
        fs_err::canonicalize(candidate)
            .ok()
            .and_then(|real| {
                real.strip_prefix(&self.root)
                    .ok()
                    .map(|rel| rel.display().to_string())
            })
            .unwrap_or_else(|| candidate.display().to_string())
    }

    /// Resolve a COPY source (as written, relative to the context root; a leading `/` is the
    /// root) to a path inside the root, following symlinks inside the root. A path the ignore
    /// file leaves out (or a symlink on the way that it leaves out) is
    /// [`ContextError::Excluded`].
    pub fn resolve(&self, source: &str) -> Result<ContextPath, ContextError> {
        let mut pending: Vec<String> = Vec::new();
        push_components(&mut pending, source, source)?;
        let mut resolved: Vec<String> = Vec::new();
        let mut followed: Vec<String> = Vec::new();
        let mut is_dir = true;
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "." => {}
                ".." => {
                    if resolved.pop().is_none() {
                        return Err(ContextError::OutsideContext(source.to_owned()));
                    }
                    is_dir = true;
                }
                name => {
                    let candidate = self.host_path(&resolved).join(name);
                    match fs_err::symlink_metadata(&candidate) {
                        Ok(meta) if meta.file_type().is_symlink() => {
                            if followed.len() == MAX_SYMLINKS {
                                return Err(ContextError::SymlinkLoop(source.to_owned()));
                            }
                            followed.push(rel_path(&resolved, name));
                            let target = fs_err::read_link(&candidate)?;
                            let target = target.to_string_lossy().into_owned();
                            if target.starts_with('/') {
                                resolved.clear();
                                is_dir = true;
                            }
                            push_components(&mut pending, &target, source)?;
                        }
                        Ok(meta) => {
                            is_dir = meta.is_dir();
                            resolved.push(name.to_owned());
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Err(ContextError::NotFound(source.to_owned()));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        let rel = resolved.join("/");
        let presence = self.presence(source, &followed, &rel, is_dir)?;
        Ok(ContextPath {
            source: source.to_owned(),
            host: self.host_path(&resolved),
            rel,
            presence,
        })
    }

    /// Whether a resolved path is in the filtered context. When it is included, so are the
    /// directories above it, so only the path and the symlinks followed need checking.
    fn presence(
        &self,
        source: &str,
        followed: &[String],
        rel: &str,
        is_dir: bool,
    ) -> Result<Presence, ContextError> {
        let Some(ignore) = &self.ignore else {
            return Ok(Presence::Included);
        };
        for link in followed {
            if let Some(rule) = ignore.rules.excluded_by(link) {
                return Err(ignore.excluded(source, ignore.exclusion(rule)));
            }
        }
        match ignore.rules.excluded_by(rel) {
            None => Ok(Presence::Included),
            Some(rule) if is_dir && ignore.rules.may_have_exceptions_under(rel) => {
                Ok(Presence::ThroughExceptions(ignore.exclusion(rule)))
            }
            Some(rule) => Err(ignore.excluded(source, ignore.exclusion(rule))),
        }
    }

    /// Everything below the resolved directory `dir` that the ignore file keeps, parents
    /// before their contents and names in byte order. Symlinks are listed, not followed.
    /// An excluded `dir` that leads to nothing included is [`ContextError::Excluded`].
    pub fn walk(&self, dir: &ContextPath) -> Result<Vec<WalkEntry>, ContextError> {
        let out = self.walk_dir(&dir.host, &dir.rel, "")?;
        if let (Presence::ThroughExceptions(exclusion), Some(ignore), true) =
            (&dir.presence, &self.ignore, out.is_empty())
        {
            return Err(ignore.excluded(&dir.source, exclusion.clone()));
        }
        Ok(out)
    }

    /// The walk of one directory: its entries `lstat`ed relative to it (one path component to
    /// look up, not the whole path), then its subdirectories walked in parallel and spliced
    /// in after each.
    fn walk_dir(
        &self,
        host: &Path,
        rel: &str,
        below: &str,
    ) -> Result<Vec<WalkEntry>, ContextError> {
        use rayon::prelude::*;

        let mut entries = fs_err::read_dir(host)?
            .map(|e| e.map(|e| (e.file_name(), e)))
            .collect::<Result<Vec<_>, _>>()?;
        entries.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
        let rules = self.ignore.as_ref().map(|i| &i.rules);
        // (the entry, its path from the context's directory, excluded itself)
        let mut listed: Vec<(WalkEntry, String, bool)> = Vec::with_capacity(entries.len());
        for (name, entry) in entries {
            let name = name.to_string_lossy().into_owned();
            let entry_rel = join_rel(rel, &name);
            // `DirEntry::metadata` does not follow symlinks and stats relative to the directory.
            let meta = entry.metadata()?;
            let excluded = rules.is_some_and(|r| r.is_excluded(&entry_rel));
            if excluded
                && !(meta.is_dir()
                    && rules.is_some_and(|r| r.may_have_exceptions_under(&entry_rel)))
            {
                continue;
            }
            let walked = WalkEntry {
                rel: join_rel(below, &name),
                host: entry.path(),
                meta,
            };
            listed.push((walked, entry_rel, excluded));
        }
        let walk_sub = |(entry, entry_rel, _): &(WalkEntry, String, bool)| {
            if entry.meta.is_dir() {
                self.walk_dir(&entry.host, entry_rel, &entry.rel)
            } else {
                Ok(Vec::new())
            }
        };
        let below_each: Vec<Vec<WalkEntry>> = if listed.iter().any(|(e, ..)| e.meta.is_dir()) {
            listed.par_iter().map(walk_sub).collect::<Result<_, _>>()?
        } else {
            listed.iter().map(|_| Vec::new()).collect()
        };
        let total = listed.len() + below_each.iter().map(Vec::len).sum::<usize>();
        let mut out = Vec::with_capacity(total);
        for ((entry, _, excluded), below) in listed.into_iter().zip(below_each) {
            // An excluded directory is there only to hold what exceptions bring back.
            if excluded && below.is_empty() {
                continue;
            }
            out.push(entry);
            out.extend(below);
        }
        Ok(out)
    }

    fn host_path(&self, components: &[String]) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(components);
        p
    }
}

/// `dir/name` for `/`-separated relative paths, where `""` is the root.
fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn rel_path(components: &[String], name: &str) -> String {
    join_rel(&components.join("/"), name)
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
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A temporary directory with `files` (a content of `->x` makes a symlink to `x`), for tests.
    pub(crate) fn test_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = d.path().join(path);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            match content.strip_prefix("->") {
                Some(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
                None => fs_err::write(&p, content).unwrap(),
            }
        }
        d
    }

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
        assert_eq!(
            c.resolve("dir/sub/f").unwrap().host(),
            c.root().join("dir/sub/f")
        );
        assert_eq!(
            c.resolve("/dir/./sub/../sub/f").unwrap().host(),
            c.root().join("dir/sub/f")
        );
        assert_eq!(c.resolve("abs-link").unwrap().host(), c.root().join("top"));
        assert_eq!(c.resolve(".").unwrap().host(), c.root());
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

    /// A context with `files` (path → content; a content of `->x` makes a symlink to `x`)
    /// and the ignore file `ignore`, loaded for a Dockerfile at `dockerfile` (relative).
    fn ignoring(
        files: &[(&str, &str)],
        dockerfile: Option<&str>,
    ) -> (tempfile::TempDir, Result<Context, ContextError>) {
        let d = test_tree(files);
        let dockerfile = dockerfile.map(|f| d.path().join(f));
        let c = Context::open(d.path())
            .unwrap()
            .apply_dockerignore(dockerfile.as_deref());
        (d, c)
    }

    fn walked(c: &Context, source: &str) -> Vec<String> {
        let dir = c.resolve(source).unwrap();
        c.walk(&dir).unwrap().into_iter().map(|e| e.rel).collect()
    }

    #[test]
    fn walk_lists_only_included_entries() {
        let (_d, c) = ignoring(
            &[
                (
                    ".dockerignore",
                    "**/*.log\ndocs\n!docs/README.md\nnode_modules\n",
                ),
                ("app.log", ""),
                ("src/main.rs", ""),
                ("src/debug.log", ""),
                ("docs/README.md", ""),
                ("docs/guide.md", ""),
                ("docs/sub/x.md", ""),
                ("node_modules/a/index.js", ""),
            ],
            None,
        );
        let c = c.unwrap();
        assert_eq!(
            walked(&c, "."),
            [
                ".dockerignore",
                "docs",
                "docs/README.md",
                "src",
                "src/main.rs"
            ]
        );
        assert_eq!(walked(&c, "docs"), ["README.md"]);
        assert_eq!(walked(&c, "src"), ["main.rs"]);
    }

    #[test]
    fn excluded_sources_are_not_found() {
        let (_d, c) = ignoring(
            &[
                (
                    ".dockerignore",
                    "# secrets\nsecret*\nempty\n!empty/keep\nlink-to-ok\n",
                ),
                ("secret.txt", "s"),
                ("ok.txt", "o"),
                ("empty/other", ""),
                ("link", "->secret.txt"),
                ("link-to-ok", "->ok.txt"),
            ],
            None,
        );
        let c = c.unwrap();
        let err = c.resolve("secret.txt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"secret.txt\": not found in the build context: excluded by .dockerignore:2 (`secret*`)"
        );
        // Through an included symlink to an excluded file, and an excluded symlink.
        assert!(matches!(
            c.resolve("link"),
            Err(ContextError::Excluded { .. })
        ));
        assert!(matches!(
            c.resolve("link-to-ok"),
            Err(ContextError::Excluded { .. })
        ));
        assert!(c.resolve("ok.txt").is_ok());
        // An excluded directory that an exception could, but does not, bring back.
        let empty = c.resolve("empty").unwrap();
        assert!(matches!(
            c.walk(&empty),
            Err(ContextError::Excluded { line: 3, .. })
        ));
        // `..` is lexical over what was walked: an excluded directory on the way is fine.
        assert!(c.resolve("empty/../ok.txt").is_ok());
    }

    #[test]
    fn the_dockerfiles_own_ignore_file_wins() {
        let files = [
            (".dockerignore", "a.txt\n"),
            ("build/app.Dockerfile", "FROM scratch\n"),
            ("build/app.Dockerfile.dockerignore", "b.txt\n"),
            ("a.txt", ""),
            ("b.txt", ""),
        ];
        let (_d, c) = ignoring(&files, Some("build/app.Dockerfile"));
        let c = c.unwrap();
        assert!(c.resolve("a.txt").is_ok());
        let err = c.resolve("b.txt").unwrap_err().to_string();
        assert!(
            err.ends_with("excluded by build/app.Dockerfile.dockerignore:1 (`b.txt`)"),
            "{err}"
        );
        // Another Dockerfile, or one from stdin: the context's file.
        for dockerfile in [Some("Dockerfile"), None] {
            let (_d, c) = ignoring(&files, dockerfile);
            let c = c.unwrap();
            assert!(c.resolve("a.txt").is_err() && c.resolve("b.txt").is_ok());
        }
        // The Dockerfile and the ignore file are ordinary files.
        let (_d, c) = ignoring(
            &[
                (".dockerignore", "Dockerfile\n.dockerignore\n"),
                ("Dockerfile", ""),
            ],
            Some("Dockerfile"),
        );
        assert_eq!(walked(&c.unwrap(), "."), Vec::<String>::new());
    }

    #[test]
    fn an_invalid_ignore_file_fails_with_locations() {
        let (_d, c) = ignoring(&[(".dockerignore", "ok\n  a[\n!\n")], None);
        let err = c.unwrap_err();
        assert_eq!(
            err.to_string(),
            ".dockerignore:2:4: invalid .dockerignore pattern `a[`: unterminated character class; \
             .dockerignore:3:1: illegal exclusion pattern `!`"
        );
        let ContextError::InvalidIgnoreFile {
            name,
            text,
            diagnostics,
        } = err
        else {
            panic!("{err:?}")
        };
        assert!(diagnostics.render(&name, &text).contains(" 2 |   a[\n"));
    }

    /// Every row of the shared `.dockerignore` table through the real walker (CASES.md
    /// suggests it): a context holding just that file, the rules from a per-Dockerfile ignore
    /// file kept outside the context.
    #[test]
    fn conformance_rows_through_the_walker() {
        let table = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/conformance/dockerignore/cases.tsv");
        let table = String::from_utf8(fs_err::read(table).unwrap()).unwrap();
        let mut failures = Vec::new();
        let mut rows = 0;
        for row in table.lines().skip(1) {
            let [patterns, path, expected] = row.split('\t').collect::<Vec<_>>()[..] else {
                panic!("bad row {row:?}");
            };
            rows += 1;
            let outside = tempfile::tempdir().unwrap();
            let dockerfile = outside.path().join("Dockerfile");
            let lines: String = patterns.split(',').map(|l| format!("{l}\n")).collect();
            fs_err::write(outside.path().join("Dockerfile.dockerignore"), lines).unwrap();
            let (_d, c) = ignoring(&[(path, "x")], None);
            let c = c.unwrap().apply_dockerignore(Some(&dockerfile)).unwrap();
            let root = c.resolve(".").unwrap();
            let sent = c.walk(&root).unwrap().iter().any(|e| e.rel == path);
            if sent != (expected == "false") {
                failures.push(format!("{patterns:?} on {path:?}: sent={sent}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(rows, 83);
    }
}
