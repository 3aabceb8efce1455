//! `.dockerignore`: which build-context paths a build leaves out, with Docker's rules.
//!
//! Responsible for: reading the file's text into [`IgnoreRules`] exactly as Docker's
//! `ignorefile.ReadAll` and moby/patternmatcher's `New` do, reporting every bad pattern as a
//! [`Diagnostic`] that points at it, and answering, for a context-relative path, whether it is
//! excluded ([`IgnoreRules::is_excluded`], patternmatcher's `MatchesOrParentMatches`) and
//! whether a walker must look inside an excluded directory because an exception could bring
//! something below it back ([`IgnoreRules::may_have_exceptions_under`]).
//! Not responsible for: finding or reading the file (which one applies is the engine's call:
//! `<Dockerfile>.dockerignore` next to the Dockerfile wins over the context's `.dockerignore`),
//! walking directories, or symlinks. Like the rest of the frontend it does no I/O.
//!
//! # The rules, in short (`shared/conformance/dockerignore/CASES.md` has them all)
//!
//! * A line whose first character is `#` is a comment; other lines are trimmed, and empty
//!   ones skipped. A leading `!` makes an exception.
//! * A pattern is cleaned like Go's `filepath.Clean` (`./a/` is `a`), then one leading `/`
//!   is dropped. Patterns are always matched against the whole path from the context root:
//!   `*.go` matches `main.go`, not `cmd/main.go` (unlike `.gitignore`).
//! * A pattern excludes a path when it matches the path or one of its parent directories.
//! * Rules apply in order and the last one that matches wins: a normal pattern is tried
//!   while the path is included, an exception while it is excluded.
//! * A pattern that is not valid `filepath.Match` syntax (an unterminated `[`, a trailing
//!   `\`) makes the whole file invalid, and the build fails.
//!
//! Files and directories are matched alike: `foo/` is cleaned to `foo`, which also matches a
//! file named `foo`, as in Docker. That is why [`IgnoreRules::is_excluded`] takes no file
//! type.
//!
//! ```
//! let rules = frontend::dockerignore::parse("*.md\n!README*.md\nREADME-secret.md\n").unwrap();
//! assert!(rules.is_excluded("CHANGES.md"));
//! assert!(!rules.is_excluded("README.md"));
//! assert!(rules.is_excluded("README-secret.md"));
//! assert!(!rules.is_excluded("docs/CHANGES.md"));
//! ```

mod pattern;

use std::borrow::Cow;

pub use pattern::PatternError;
use pattern::{Pattern, clean};

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::span::Span;

/// Reads a `.dockerignore` file's text. Every invalid line is reported, each pointing at its
/// pattern (at the offending character when the pattern was not changed by cleaning).
pub fn parse(text: &str) -> Result<IgnoreRules, Diagnostics> {
    let mut rules = Vec::new();
    let mut diagnostics = Diagnostics::new();
    for (start, line) in lines(text) {
        // Only `#` in the first column starts a comment: ` #x` is the pattern `#x`.
        if line.starts_with('#') {
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let start = start + (line.len() - line.trim_start().len());
        let span = Span::new(start, start + trimmed.len());
        match read_rule(trimmed, span) {
            Ok(rule) => rules.push(rule),
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    if diagnostics.is_empty() {
        Ok(IgnoreRules { rules })
    } else {
        Err(diagnostics)
    }
}

/// Lines with the byte offset of their first character; a UTF-8 byte order mark at the
/// start of the text is not part of the first line. A `\r` before `\n` stays on the line
/// (trimming removes it).
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let bom = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let mut offset = bom;
    text[bom..].split('\n').map(move |line| {
        let start = offset;
        offset += line.len() + 1;
        (start, line)
    })
}

/// One trimmed, non-comment line → a rule, with the exact normalisation steps of
/// `ignorefile.ReadAll` followed by `patternmatcher.New`.
fn read_rule(trimmed: &str, span: Span) -> Result<Rule, Diagnostic> {
    // ReadAll: split off `!` and trim again, clean, drop one leading `/`, put `!` back.
    let (invert, body) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, trimmed),
    };
    let mut read = if body.is_empty() {
        String::new()
    } else {
        let cleaned = clean(body);
        match cleaned.strip_prefix('/') {
            Some(rest) if !rest.is_empty() => rest.to_owned(),
            _ => cleaned,
        }
    };
    if invert {
        read.insert(0, '!');
    }
    // New: trim and clean once more (this can expose a `!`: `x/../!y` is an exception,
    // and `!/` cleans to a bare `!`), then split off `!`.
    let normalized = clean(read.trim());
    let (exception, text) = match normalized.strip_prefix('!') {
        Some("") => {
            return Err(Diagnostic::error(
                Code::InvalidIgnorePattern,
                span,
                "illegal exclusion pattern `!`",
            )
            .with_label("`!` needs a pattern after it")
            .with_help("write `\\!name` to match a file whose name starts with `!`"));
        }
        Some(rest) => (true, rest),
        None => (false, normalized.as_str()),
    };
    let pattern = Pattern::new(text).map_err(|e| {
        // Point at the offending character when the cleaned pattern is the end of the line
        // as written (the usual case), else at the whole pattern.
        let written = span.len();
        let at = if trimmed.ends_with(text) {
            let start = span.start + written - text.len() + e.offset();
            let len = text[e.offset()..].chars().next().map_or(0, char::len_utf8);
            Span::new(start, start + len)
        } else {
            span
        };
        Diagnostic::error(
            Code::InvalidIgnorePattern,
            at,
            format!("invalid .dockerignore pattern `{text}`: {e}"),
        )
        .with_label(e.to_string())
        .with_help(e.help())
    })?;
    Ok(Rule {
        text: text.to_owned(),
        exception,
        span,
        pattern,
    })
}

/// One line of a `.dockerignore`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    text: String,
    exception: bool,
    span: Span,
    pattern: Pattern,
}

impl Rule {
    /// The pattern after cleaning, without its `!` (patternmatcher's `Pattern.String()`).
    pub fn pattern(&self) -> &str {
        &self.text
    }

    /// Whether this is a `!` exception, which re-includes what it matches.
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    /// The line's text (trimmed) in the `.dockerignore` source.
    pub fn span(&self) -> Span {
        self.span
    }
}

/// The rules of one `.dockerignore`, in file order. The default excludes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

impl IgnoreRules {
    /// Same as [`parse`].
    pub fn parse(text: &str) -> Result<IgnoreRules, Diagnostics> {
        parse(text)
    }

    /// True when no rule exists, so nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether any rule is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(Rule::is_exception)
    }

    /// Whether `path` is left out of the build context. `path` is relative to the context
    /// root and `/`-separated; it is cleaned first (`./a/` is `a`, a leading `/` is the root).
    /// The root itself is never excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        self.excluded_by(path).is_some()
    }

    /// The rule that excludes `path` (the last normal pattern that matched before no
    /// exception took it back), or `None` when `path` is included.
    pub fn excluded_by(&self, path: &str) -> Option<&Rule> {
        let path = normalize(path)?;
        let mut excluded_by = None;
        for rule in &self.rules {
            // A normal pattern can only exclude an included path, an exception only
            // re-include an excluded one.
            if rule.exception != excluded_by.is_some() {
                continue;
            }
            if rule.pattern.matches_path_or_parent(&path) {
                excluded_by = if rule.exception { None } else { Some(rule) };
            }
        }
        excluded_by
    }

    /// Whether a walker that found directory `dir` excluded must still look inside it: true
    /// when some exception could match a path below `dir` (and so bring it back). When this
    /// is false, everything below an excluded `dir` is excluded too and the walker can skip
    /// it. Conservative: it may say true when, in the end, nothing below is included.
    ///
    /// This is sharper than BuildKit's fsutil, which walks into every excluded directory as
    /// soon as one exception has a wildcard; the set of included paths is the same.
    pub fn may_have_exceptions_under(&self, dir: &str) -> bool {
        let Some(dir) = normalize(dir) else {
            return self.has_exceptions();
        };
        self.rules
            .iter()
            .any(|rule| rule.exception && rule.pattern.may_match_below(&dir))
    }
}

/// A clean relative path, or `None` for the context root.
fn normalize(path: &str) -> Option<Cow<'_, str>> {
    let is_clean = !path.is_empty()
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    let path = if is_clean {
        Cow::Borrowed(path)
    } else {
        let cleaned = clean(path);
        match cleaned.strip_prefix('/') {
            Some(rest) => Cow::Owned(rest.to_owned()),
            None => Cow::Owned(cleaned),
        }
    };
    (!path.is_empty() && path != ".").then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Location;

    fn rules(text: &str) -> IgnoreRules {
        parse(text).unwrap_or_else(|d| panic!("{}", d.render(".dockerignore", text)))
    }

    fn patterns(text: &str) -> Vec<String> {
        rules(text)
            .rules()
            .iter()
            .map(|r| format!("{}{}", if r.is_exception() { "!" } else { "" }, r.pattern()))
            .collect()
    }

    #[test]
    fn reads_lines_like_ignorefile() {
        assert_eq!(
            patterns(
                "\u{feff}# comment\n  #not a comment  \r\n\n\t./a/b/ \n/c\n! /d//e\n!x\\\\\nx/../!y\n"
            ),
            ["#not a comment", "a/b", "c", "!d/e", "!x\\\\", "!y"]
        );
        assert!(rules("").is_empty());
        assert!(rules("# only\n\n   \n").is_empty());
        assert_eq!(patterns("/"), ["/"]);
        assert_eq!(patterns("!.."), ["!.."]);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_location() {
        let text = "ok\n  a[b\n!\n!/\nfine/*\n[z-a].txt\n";
        let diags = parse(text).unwrap_err();
        let found: Vec<(u32, u32, Code)> = diags
            .iter()
            .map(|d| {
                let loc = Location::of(d.span, text);
                (loc.line, loc.column, d.code)
            })
            .collect();
        assert_eq!(
            found,
            [
                (2, 4, Code::InvalidIgnorePattern),
                (3, 1, Code::InvalidIgnorePattern),
                (4, 1, Code::InvalidIgnorePattern),
                (6, 2, Code::InvalidIgnorePattern),
            ]
        );
        let rendered = diags.render(".dockerignore", text);
        assert!(
            rendered.contains("error[F0401]: invalid .dockerignore pattern `a[b`: unterminated character class\n  --> .dockerignore:2:4\n"),
            "{rendered}"
        );
        assert!(rendered.contains("character range `z-a` is out of order"));
    }

    #[test]
    fn cleaning_that_moves_text_points_at_the_whole_pattern() {
        let text = "a[/../b[\n";
        let d = parse(text).unwrap_err().into_vec().remove(0);
        // Cleaned to `b[`, which ends the line: the `[` is found.
        assert_eq!(d.span.text(text), "[");
        let text = "[x/y]/..\n";
        let d = parse(text).unwrap_err().into_vec().remove(0);
        assert_eq!(d.span.text(text), "[x/y]/..");
    }

    #[test]
    fn last_matching_rule_wins_and_names_itself() {
        let r = rules("*.md\n!README*.md\nREADME-secret.md\n");
        assert_eq!(
            r.excluded_by("README-secret.md").map(Rule::pattern),
            Some("README-secret.md")
        );
        assert_eq!(r.excluded_by("CHANGES.md").map(Rule::pattern), Some("*.md"));
        assert_eq!(r.excluded_by("README.md"), None);
    }

    #[test]
    fn paths_are_cleaned_and_the_root_is_never_excluded() {
        let r = rules("**\n");
        assert!(r.is_excluded("./a//b/"));
        assert!(r.is_excluded("/a"));
        assert!(!r.is_excluded("."));
        assert!(!r.is_excluded(""));
        assert!(!r.is_excluded("/"));
        let r = rules("a/b\n");
        assert!(r.is_excluded("a/./b/c"));
        assert!(r.is_excluded("a/x/../b"));
    }

    #[test]
    fn walker_pruning() {
        let r = rules("docs\n!docs/README.md\nnode_modules\n");
        assert!(r.is_excluded("docs") && r.may_have_exceptions_under("docs"));
        assert!(!r.may_have_exceptions_under("node_modules"));
        assert!(!r.may_have_exceptions_under("docs/sub"));
        assert!(r.may_have_exceptions_under("."));
        assert!(!rules("a\n").may_have_exceptions_under(""));
        let r = rules("*\n!src/**/*.rs\n");
        assert!(r.may_have_exceptions_under("src/a"));
        assert!(!r.may_have_exceptions_under("target"));
    }

    /// Pruning must never hide an included path: for every directory the walker would
    /// skip, nothing below it is included.
    #[test]
    fn pruning_never_hides_an_included_path() {
        let files = [
            "docs/README.md",
            "docs/sub/README.md",
            "docs/a.md",
            "src/main.rs",
            "src/a/b.rs",
            "src/a/b.txt",
            "util/docker/web/foo",
            "util/docker/web/bar/x",
            "logs/important.log",
            "x/y/z/keep",
            "d/e/f/g",
        ];
        let sets = [
            "docs\n!docs/README.md\n",
            "docs\n!docs/*.md\n",
            "*\n!src/**/*.rs\n",
            "**\n!util/docker/web\nutil/docker/web/foo\n",
            "**/*.log\n!important.log\n!logs/imp*\n",
            "x\n!**/keep\n",
            "*\n!d/?/f\n",
            "d\n!d**\n",
            "d/e\n!d/e/f\nd/e/f/g\n!d/e/f/g\n",
        ];
        for set in sets {
            let r = rules(set);
            for file in files {
                if r.is_excluded(file) {
                    continue;
                }
                let mut dir = String::new();
                for part in file.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
                    if !dir.is_empty() {
                        dir.push('/');
                    }
                    dir.push_str(part);
                    assert!(
                        !r.is_excluded(&dir) || r.may_have_exceptions_under(&dir),
                        "{set:?}: `{dir}` would be skipped but `{file}` is included"
                    );
                }
            }
        }
    }
}
