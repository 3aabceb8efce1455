//! Shell patterns of `${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}` and
//! `${V//p/r}`, matched exactly as BuildKit's `convertShellPatternToRegex` does.
//!
//! Responsible for: reading a pattern (`*` any run of characters, `?` any one
//! character, `\*`, `\?`, `\\` literal, `\}` and `\/` the bare character, everything
//! else literal — bracket expressions are *not* special, as in BuildKit), and the
//! operations on a value: removing the shortest/longest matching prefix or suffix,
//! and replacing the first or every match with Go's `regexp` semantics (leftmost
//! match, greedy `*`, `$0`/`$$` templates in replace-all, the empty-match rules of
//! `ReplaceAllString`). Like a Go regexp without `(?s)`, `*` and `?` never match a
//! newline.
//! Not responsible for: scanning the `${...}` syntax or expanding variables inside the
//! pattern (the lexer in `expand` does that first).

use thiserror::Error;

/// Why a pattern could not be read. Messages follow BuildKit's.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PatternError {
    /// `\` followed by something other than `*`, `?`, `\`, `}` or `/`.
    #[error("invalid escape '\\{found}'")]
    InvalidEscape { found: char },
    /// A `\` at the very end of the pattern.
    #[error("invalid escape at the end of the pattern")]
    TrailingEscape,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    AnyChar,
    /// `*`
    AnyRun,
}

/// A parsed shell pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    pub(super) fn parse(pattern: &str) -> Result<Pattern, PatternError> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::with_capacity(chars.len());
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            let token = match c {
                '*' => Token::AnyRun,
                '?' => Token::AnyChar,
                '\\' => match chars.get(i) {
                    // `}` and `/` had to be escaped inside `${}`; the escape is not
                    // part of the pattern.
                    Some('}' | '/') => continue,
                    Some(&e @ ('*' | '?' | '\\')) => {
                        i += 1;
                        Token::Literal(e)
                    }
                    Some(&found) => return Err(PatternError::InvalidEscape { found }),
                    None => return Err(PatternError::TrailingEscape),
                },
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Pattern { tokens })
    }

    fn reversed(&self) -> Pattern {
        Pattern {
            tokens: self.tokens.iter().rev().copied().collect(),
        }
    }
}

/// For every start position in `text`, the end of the match of `tokens` there that a
/// backtracking regexp engine finds first (longest runs first when `greedy`, shortest
/// otherwise), or `None`.
///
/// Computed from the last token back with one row per token, so it takes
/// O(tokens × text) time and O(text) memory and never recurses: patterns and values
/// come from the Dockerfile and the build arguments and can be long.
fn match_ends(pattern: &Pattern, text: &[char], greedy: bool) -> Vec<Option<usize>> {
    let n = text.len();
    // After the last token, a match ends where it is.
    let mut next: Vec<Option<usize>> = (0..=n).map(Some).collect();
    for token in pattern.tokens.iter().rev() {
        let mut cur = vec![None; n + 1];
        match *token {
            Token::Literal(c) => {
                for pos in 0..n {
                    if text[pos] == c {
                        cur[pos] = next[pos + 1];
                    }
                }
            }
            Token::AnyChar => {
                for pos in 0..n {
                    if text[pos] != '\n' {
                        cur[pos] = next[pos + 1];
                    }
                }
            }
            Token::AnyRun => {
                // From `pos`, a run may end anywhere up to the next newline (or the
                // end); `chosen` is the preferred end among those where the rest
                // matches: the furthest when greedy, the nearest otherwise.
                let mut chosen: Option<usize> = None;
                for pos in (0..=n).rev() {
                    let rest_matches = next[pos].is_some();
                    if pos == n || text[pos] == '\n' {
                        chosen = rest_matches.then_some(pos);
                    } else if rest_matches && (!greedy || chosen.is_none()) {
                        chosen = Some(pos);
                    }
                    cur[pos] = chosen.and_then(|end| next[end]);
                }
            }
        }
        next = cur;
    }
    next
}

/// The leftmost match starting at or after `from`, as `(start, end)`.
fn find(ends: &[Option<usize>], from: usize) -> Option<(usize, usize)> {
    ends.iter()
        .enumerate()
        .skip(from)
        .find_map(|(start, end)| end.map(|end| (start, end)))
}

/// `value` without the shortest (or, `greedy`, longest) prefix matching `pattern`.
pub(super) fn trim_prefix(value: &str, pattern: &Pattern, greedy: bool) -> String {
    let text: Vec<char> = value.chars().collect();
    match match_ends(pattern, &text, greedy)[0] {
        Some(end) => text[end..].iter().collect(),
        None => value.to_owned(),
    }
}

/// `value` without the shortest (or, `greedy`, longest) suffix matching `pattern`:
/// like BuildKit, a prefix search over the reversed value with the reversed pattern.
pub(super) fn trim_suffix(value: &str, pattern: &Pattern, greedy: bool) -> String {
    let reversed_text: Vec<char> = value.chars().rev().collect();
    let reversed = pattern.reversed();
    match match_ends(&reversed, &reversed_text, greedy)[0] {
        Some(end) => reversed_text[end..].iter().rev().collect(),
        None => value.to_owned(),
    }
}

/// `${V/p/r}`: the first match replaced by `replacement`, taken literally.
pub(super) fn replace_first(value: &str, pattern: &Pattern, replacement: &str) -> String {
    let text: Vec<char> = value.chars().collect();
    match find(&match_ends(pattern, &text, true), 0) {
        Some((start, end)) => {
            let mut out: String = text[..start].iter().collect();
            out.push_str(replacement);
            out.extend(&text[end..]);
            out
        }
        None => value.to_owned(),
    }
}

/// `${V//p/r}`: Go's `Regexp.ReplaceAllString`: every non-overlapping match replaced,
/// an empty match right after a match not replaced again, and `replacement` read as a
/// template (`$0`/`${0}` is the match, `$$` a dollar, other `$name`s are empty).
pub(super) fn replace_all(value: &str, pattern: &Pattern, replacement: &str) -> String {
    let text: Vec<char> = value.chars().collect();
    let ends = match_ends(pattern, &text, true);
    let mut out = String::with_capacity(value.len());
    let (mut last_end, mut search) = (0, 0);
    while search <= text.len() {
        let Some((start, end)) = find(&ends, search) else {
            break;
        };
        out.extend(&text[last_end..start]);
        if end > last_end || start == 0 {
            let matched: String = text[start..end].iter().collect();
            expand_template(&mut out, replacement, &matched);
        }
        last_end = end;
        // Always advance by at least one character.
        let width = usize::from(search < text.len());
        if search + width > end {
            search += width;
        } else if search + 1 > end {
            search += 1;
        } else {
            search = end;
        }
    }
    out.extend(&text[last_end..]);
    out
}

/// Go's `Regexp.Expand` for a pattern without capture groups.
fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_name(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// The `name` or `{name}` after a `$` in a template, and the text after it.
fn template_name(s: &str) -> Option<(&str, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, s),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if brace {
        return after.strip_prefix('}').map(|after| (name, after));
    }
    Some((name, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn escapes() {
        assert_eq!(
            Pattern::parse("\\x"),
            Err(PatternError::InvalidEscape { found: 'x' })
        );
        assert_eq!(Pattern::parse("a\\"), Err(PatternError::TrailingEscape));
        assert_eq!(p("\\}\\/"), p("}/"));
        assert_eq!(
            p("\\*"),
            Pattern {
                tokens: vec![Token::Literal('*')]
            }
        );
    }

    #[test]
    fn prefixes_and_suffixes() {
        // BuildKit's TestProcessWithMatches cases.
        assert_eq!(
            trim_prefix("()[]{}^$.*?|\\x", &p("()[]{\\}^$.\\*\\?|\\\\"), false),
            "x"
        );
        assert_eq!(trim_suffix("xx**", &p("\\**"), true), "xx");
        assert_eq!(trim_prefix("xxyy", &p("*x*y"), false), "y");
        assert_eq!(trim_prefix("xxyy", &p("*"), false), "xxyy");
        assert_eq!(trim_prefix("xxyy", &p("*x"), true), "yy");
        assert_eq!(trim_prefix("???y", &p("?\\?"), false), "?y");
        assert_eq!(trim_suffix("xxyy", &p("x"), false), "xxyy");
        assert_eq!(trim_suffix("a***yy*", &p("\\**\\*"), true), "a");
        // Brackets are literal, as in BuildKit.
        assert_eq!(trim_suffix("a.tgz", &p(".[tg]gz"), false), "a.tgz");
        assert_eq!(trim_suffix("a.[tg]gz", &p(".[tg]gz"), false), "a");
        // `*` does not cross a newline.
        assert_eq!(trim_prefix("ab\ncd", &p("*d"), true), "ab\ncd");
        assert_eq!(trim_prefix("ab\ncd", &p("*\n*"), true), "");
        assert_eq!(trim_prefix("ab\ncd", &p("*\n"), false), "cd");
        // Long patterns and values stay cheap and do not recurse.
        let long = "a".repeat(10_000);
        assert_eq!(trim_prefix(&long, &p(&"?*".repeat(500)), true), "");
        assert_eq!(trim_suffix(&long, &p("*a"), false), "a".repeat(9_999));
    }

    #[test]
    fn replacements() {
        let v = "/foo*/*/*.txt";
        assert_eq!(replace_first(v, &p("\\*/"), "."), "/foo.*/*.txt");
        assert_eq!(replace_all(v, &p("\\*/"), "."), "/foo..*.txt");
        assert_eq!(
            replace_first("/tmp/tmp/bar.txt", &p("/tmp"), ""),
            "/tmp/bar.txt"
        );
        assert_eq!(replace_all("/tmp/tmp/bar.txt", &p("/tmp"), ""), "/bar.txt");
        assert_eq!(replace_all("/a/foo/b/c.txt", &p("/?/"), "/"), "/foo/c.txt");
        assert_eq!(
            replace_all("/tmp/foo.txt", &p("\\/"), "\\/"),
            "\\/tmp\\/foo.txt"
        );
        assert_eq!(replace_first("xxyy", &p(""), "ww"), "wwxxyy");
        assert_eq!(replace_all("xxyy", &p(""), ""), "xxyy");
        // Go's empty-match rules: `a*` style patterns replace each gap once.
        assert_eq!(replace_all("abc", &p(""), "-"), "-a-b-c-");
        assert_eq!(replace_all("baaac", &p("a*"), "X"), "bX");
        assert_eq!(replace_all("baaac", &p("a?"), "X"), "bXX");
        assert_eq!(replace_all("aXa", &p("a"), "[$0$$]"), "[a$]X[a$]");
        assert_eq!(replace_all("aXa", &p("a"), "$1${x}$"), "$X$");
        assert_eq!(replace_first("aXa", &p("a"), "$0"), "$0Xa");
    }
}
