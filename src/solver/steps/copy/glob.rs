//! Wildcards in COPY/ADD sources, with Go's `path/filepath.Match` rules (what BuildKit's
//! `fsutil/copy.ResolveWildcards` uses):
//!
//! - `*` matches any run of characters except `/`; `?` one character except `/`;
//! - `[abc]`, `[a-z]`, `[^a-z]` (or `[!a-z]`) a character class; `\c` the character `c`;
//! - a malformed pattern (an unterminated class, a trailing `\`) matches nothing, as
//!   BuildKit ignores `filepath.Match`'s error.
//!
//! [`split`] cuts a source at its first component with a wildcard: the literal directory
//! before it is resolved in the source tree, and the rest is matched against paths below it
//! (a matched directory is not entered, as `filepath.Walk` with `SkipDir`).
//!
//! Not responsible for: walking the tree (the copy does), `**` (Go has none; `--parents` and
//! `--exclude` patterns use `.dockerignore` syntax instead).

/// Whether `name` contains a wildcard (`*`, `?`, `[`), a `\`-escaped one not counting.
pub fn has_wildcards(name: &str) -> bool {
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// `src` split at its first wildcard component: (literal prefix, pattern); the pattern is
/// empty when there is no wildcard. Empty components are dropped (`a//b` is `a/b`).
pub fn split(src: &str) -> (String, String) {
    let mut literal = Vec::new();
    let mut pattern = Vec::new();
    for part in src.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if pattern.is_empty() && !has_wildcards(part) {
            literal.push(part);
        } else {
            pattern.push(part);
        }
    }
    let prefix = if src.starts_with('/') { "/" } else { "" };
    (format!("{prefix}{}", literal.join("/")), pattern.join("/"))
}

/// Go's `filepath.Match(pattern, name)`; a malformed pattern matches nothing.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n).unwrap_or(false)
}

/// `None` for a malformed pattern.
fn match_from(p: &[char], n: &[char]) -> Option<bool> {
    let (mut pi, mut ni) = (0, 0);
    // The last `*` seen and the name position it is trying to cover up to (backtracking).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() && n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' if ni < n.len() => {
                    let (ok, next) = class(p, pi, n[ni])?;
                    if ok {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let c = *p.get(pi + 1)?;
                    if ni < n.len() && n[ni] == c {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c if c != '?' && c != '[' && ni < n.len() && n[ni] == c => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Some(true);
        }
        // Mismatch: let the last `*` swallow one more character (never a `/`).
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => {
                // Go still reports a malformed rest of the pattern as an error.
                validate(&p[pi.min(p.len())..])?;
                return Some(false);
            }
        }
    }
}

/// Match `c` against the class starting at `p[start] == '['`; returns whether it matched
/// and the index after the closing `]`.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = matches!(p.get(i), Some('^') | Some('!'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut ranges = 0;
    loop {
        if *p.get(i)? == ']' && ranges > 0 {
            i += 1;
            break;
        }
        let lo = escaped(p, &mut i)?;
        let hi = if p.get(i) == Some(&'-') {
            i += 1;
            escaped(p, &mut i)?
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
        ranges += 1;
    }
    Some((matched != negated, i))
}

/// One (possibly `\`-escaped) class character at `p[*i]`, advancing `i`; an unescaped `-`
/// or `]` is malformed (Go's `getEsc`).
fn escaped(p: &[char], i: &mut usize) -> Option<char> {
    let mut ch = *p.get(*i)?;
    if ch == '-' || ch == ']' {
        return None;
    }
    if ch == '\\' {
        *i += 1;
        ch = *p.get(*i)?;
    }
    *i += 1;
    Some(ch)
}

/// `None` if the pattern has a malformed class or a trailing `\`.
fn validate(p: &[char]) -> Option<()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                p.get(i + 1)?;
                i += 2;
            }
            '[' => {
                let (_, next) = class(p, i, '\0')?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match_cases() {
        // From Go's path/filepath match_test.go.
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("[]a]", "]", false),
            ("[-]", "-", false),
            ("[x-]", "x", false),
            ("[a-b-c]", "a", false),
            ("[", "a", false),
            ("[^", "a", false),
            ("a[", "x", false),
            ("*x", "xxx", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(matches(p, n), *want, "{p:?} on {n:?}");
        }
    }

    #[test]
    fn splits_at_the_first_wildcard_component() {
        assert_eq!(split("src/*.rs"), ("src".into(), "*.rs".into()));
        assert_eq!(split("/a/b*/c"), ("/a".into(), "b*/c".into()));
        assert_eq!(split("./x/y"), ("x/y".into(), String::new()));
        assert_eq!(split("*"), (String::new(), "*".into()));
        assert!(has_wildcards("a[b]") && !has_wildcards("a\\*b"));
    }
}
