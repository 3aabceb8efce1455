//! Word expansion with BuildKit's shell-lexer semantics.
//!
//! Responsible for: `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?msg}`,
//! `${V?msg}`, positional and special parameters (always unset in a Dockerfile),
//! single and double quotes, the escape token, quote removal, and splitting a word into
//! several words at unquoted whitespace (including whitespace that comes from an unquoted
//! variable). The result matches BuildKit's `ProcessWord` / `ProcessWords`.
//! Not responsible for: knowing which variables exist (the caller's `lookup` decides),
//! or which instructions expand their words (see the crate docs).
//!
//! Prefix and suffix removal (`${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`) are supported with
//! shell patterns (`*`, `?`, `[...]`). The replacement operators `${V/p/r}` and
//! `${V//p/r}` are recognised and their operands scanned with BuildKit's rules, but
//! evaluating them is not implemented yet: they fail with
//! [`ExpandError::PatternNotSupported`] rather than giving a wrong value.

use thiserror::Error;

use crate::diagnostic::{Code, Diagnostic};
use crate::span::Span;

/// Why a word could not be expanded. Messages follow BuildKit's.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ExpandError {
    #[error("unexpected end of statement while looking for matching {expected}")]
    Unterminated { expected: &'static str },
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier { modifier: String },
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("pattern substitution `{operator}` on `{name}` is not supported yet")]
    PatternNotSupported {
        name: String,
        operator: &'static str,
    },
}

impl ExpandError {
    /// A diagnostic pointing at the word that failed to expand.
    pub fn to_diagnostic(&self, span: Span) -> Diagnostic {
        Diagnostic::error(
            Code::ExpansionFailed,
            span,
            format!("cannot expand word: {self}"),
        )
    }
}

/// Expands `word` as one word: quotes removed, escapes processed, variables substituted,
/// whitespace kept as it is. Unset variables expand to the empty string.
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    Lexer::new(escape, lookup).process(word).map(|(w, _)| w)
}

/// Expands `word` and splits the result into words at unquoted whitespace, including
/// whitespace that comes from an unquoted variable. Quoted empty strings give no word.
pub fn expand_words(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ExpandError> {
    Lexer::new(escape, lookup).process(word).map(|(_, ws)| ws)
}

/// Splits `line` into shell words keeping quotes, escapes and `$` references as
/// written (BuildKit's lexer with raw quotes, raw escapes and unset variables kept).
/// Used to find heredoc markers.
pub(crate) fn raw_words(line: &str) -> Result<Vec<String>, ExpandError> {
    let mut lexer = Lexer::new('\\', &|_| None);
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    lexer.skip_unset = true;
    lexer.process(line).map(|(_, ws)| ws)
}

/// Like [`raw_words`] but with quotes removed and escapes processed: how BuildKit reads
/// a heredoc name. Returns the words and the single-word result.
pub(crate) fn cooked_words(line: &str) -> Result<Vec<String>, ExpandError> {
    let mut lexer = Lexer::new('\\', &|_| None);
    lexer.skip_unset = true;
    lexer.process(line).map(|(_, ws)| ws)
}

/// Words being collected while a text is expanded (BuildKit's `wordsStruct`).
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct Lexer<'l> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    lookup: &'l dyn Fn(&str) -> Option<String>,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_unset: bool,
}

type Processed = (String, Vec<String>);

impl<'l> Lexer<'l> {
    fn new(escape: char, lookup: &'l dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            chars: Vec::new(),
            pos: 0,
            escape,
            lookup,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
        }
    }

    fn process(&mut self, word: &str) -> Result<Processed, ExpandError> {
        self.chars = word.chars().collect();
        self.pos = 0;
        self.process_stop_on(None, false)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<Processed, ExpandError> {
        let saved = self.raw_escapes;
        self.raw_escapes |= raw_escapes;
        let result = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn process_stop_on_inner(&mut self, stop: Option<char>) -> Result<Processed, ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '\'' => {
                    let value = self.process_single_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '"' => {
                    let value = self.process_double_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape token escapes the next character; at the end of
                        // the text it is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some('}') => Err(ExpandError::Unterminated { expected: "}" }),
            Some('/') => Err(ExpandError::Unterminated { expected: "/" }),
            Some(_) => Err(ExpandError::Unterminated { expected: "?" }),
            None => Ok((result, words.finish())),
        }
    }

    /// Everything up to the next `'` is literal; there is no way to escape a `'`.
    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError::Unterminated {
                        expected: "single-quote",
                    });
                }
                Some('\'') => {
                    if self.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    /// Everything up to the next unescaped `"` is literal except `$` expansions; the
    /// escape token only escapes `"`, `$` and itself and is kept before anything else.
    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(ExpandError::Unterminated {
                        expected: "double-quote",
                    });
                }
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn variable(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        self.next(); // the `$`
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.variable(&name) {
                Some(value) => value,
                None if self.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // the `{`
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err(ExpandError::MissingBrace);
        };
        match ch {
            '}' => Ok(match self.variable(&name) {
                Some(value) => value,
                None if self.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => self.process_modifier(&name, ch),
            '/' => self.process_replace(&name),
            other => Err(ExpandError::UnsupportedModifier {
                modifier: other.to_string(),
            }),
        }
    }

    /// `${name<op>word}` after `op`'s first character has been read.
    fn process_modifier(&mut self, name: &str, first: char) -> Result<String, ExpandError> {
        let mut modifier = first.to_string();
        let null_is_unset = first == ':';
        let op = if null_is_unset {
            let next = self.next();
            modifier.extend(next);
            next
        } else {
            Some(first)
        };
        let pattern = matches!(op, Some('#' | '%'));
        if null_is_unset && pattern {
            return Err(ExpandError::UnsupportedModifier { modifier });
        }
        let word = match self.process_stop_on(Some('}'), pattern) {
            Ok((word, _)) => word,
            Err(_) if self.peek().is_none() => return Err(ExpandError::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.variable(name);
        if self.skip_unset && value.is_none() {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let is_unset = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            Some('-') => Ok(if is_unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            Some('+') => Ok(if is_unset { String::new() } else { word }),
            Some('?') => match value {
                None => Err(required(name, word, "is not allowed to be unset")),
                Some(v) if null_is_unset && v.is_empty() => {
                    Err(required(name, word, "is not allowed to be empty"))
                }
                Some(v) => Ok(v),
            },
            Some(c @ ('#' | '%')) => {
                // `#`/`%` remove the shortest matching prefix/suffix, `##`/`%%` the longest.
                let (longest, pattern) = match word.strip_prefix(c) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                Ok(if c == '#' {
                    trim_prefix(&value, pattern, longest)
                } else {
                    trim_suffix(&value, pattern, longest)
                })
            }
            _ => Err(ExpandError::UnsupportedModifier { modifier }),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn process_replace(&mut self, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        if let Err(e) = self.process_stop_on(Some('/'), true) {
            return Err(if self.peek().is_none() {
                ExpandError::Unterminated { expected: "/" }
            } else {
                e
            });
        }
        if let Err(e) = self.process_stop_on(Some('}'), true) {
            return Err(if self.peek().is_none() {
                ExpandError::MissingBrace
            } else {
                e
            });
        }
        Err(ExpandError::PatternNotSupported {
            name: name.to_owned(),
            operator: if all { "//" } else { "/" },
        })
    }

    /// A variable name: letters, digits and `_`; or a run of digits (a positional
    /// parameter); or one special parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// `value` without its shortest (or longest) prefix matching the glob `pattern`.
fn trim_prefix(value: &str, pattern: &str, longest: bool) -> String {
    let pattern: Vec<char> = pattern.chars().collect();
    let mut cuts: Vec<usize> = (0..=value.len())
        .filter(|&i| value.is_char_boundary(i))
        .collect();
    if longest {
        cuts.reverse();
    }
    let chars = |s: &str| s.chars().collect::<Vec<_>>();
    cuts.into_iter()
        .find(|&i| glob_match(&pattern, &chars(&value[..i])))
        .map_or_else(|| value.to_owned(), |i| value[i..].to_owned())
}

/// `value` without its shortest (or longest) suffix matching the glob `pattern`.
fn trim_suffix(value: &str, pattern: &str, longest: bool) -> String {
    let pattern: Vec<char> = pattern.chars().collect();
    let mut cuts: Vec<usize> = (0..=value.len())
        .filter(|&i| value.is_char_boundary(i))
        .collect();
    if !longest {
        cuts.reverse();
    }
    let chars = |s: &str| s.chars().collect::<Vec<_>>();
    cuts.into_iter()
        .find(|&i| glob_match(&pattern, &chars(&value[i..])))
        .map_or_else(|| value.to_owned(), |i| value[..i].to_owned())
}

/// Shell pattern matching of the whole `text`: `*`, `?`, `[...]` (with `!`/`^` and
/// ranges) and `\` escapes.
fn glob_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some('*') => (0..=text.len()).any(|i| glob_match(&pattern[1..], &text[i..])),
        Some('?') => !text.is_empty() && glob_match(&pattern[1..], &text[1..]),
        Some('[') => match (
            class_match(&pattern[1..], text.first().copied()),
            text.is_empty(),
        ) {
            (Some((true, len)), false) => glob_match(&pattern[1 + len..], &text[1..]),
            (Some(_), _) => false,
            // No closing `]`: the `[` is literal.
            (None, _) => text.first() == Some(&'[') && glob_match(&pattern[1..], &text[1..]),
        },
        Some('\\') if pattern.len() > 1 => {
            text.first() == Some(&pattern[1]) && glob_match(&pattern[2..], &text[1..])
        }
        Some(c) => text.first() == Some(c) && glob_match(&pattern[1..], &text[1..]),
    }
}

/// Matches `c` against the class after `[`; returns (matched, length including `]`).
fn class_match(class: &[char], c: Option<char>) -> Option<(bool, usize)> {
    let negate = matches!(class.first(), Some('!' | '^'));
    let mut i = usize::from(negate);
    let mut matched = false;
    let mut first = true;
    while i < class.len() {
        let ch = class[i];
        if ch == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let (lo, next) = if ch == '\\' && i + 1 < class.len() {
            (class[i + 1], i + 2)
        } else {
            (ch, i + 1)
        };
        if next + 1 < class.len() && class[next] == '-' && class[next + 1] != ']' {
            let hi = class[next + 1];
            matched |= c.is_some_and(|c| lo <= c && c <= hi);
            i = next + 2;
        } else {
            matched |= c == Some(lo);
            i = next;
        }
    }
    None
}

fn required(name: &str, word: String, default: &str) -> ExpandError {
    ExpandError::Required {
        name: name.to_owned(),
        message: if word.is_empty() {
            default.to_owned()
        } else {
            word
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PWD" => Some("/home".into()),
            "EMPTY" => Some(String::new()),
            "SPACE" => Some("a  b".into()),
            _ => None,
        }
    }

    fn one(word: &str) -> Result<String, ExpandError> {
        expand(word, '\\', &env)
    }

    #[test]
    fn basic_forms() {
        assert_eq!(one("he${PWD:-x}").unwrap(), "he/home");
        assert_eq!(one("${NOPE-d}").unwrap(), "d");
        assert_eq!(one("${EMPTY-d}").unwrap(), "");
        assert_eq!(one("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(one("${EMPTY+a}").unwrap(), "a");
        assert_eq!(one("${EMPTY:+a}").unwrap(), "");
        assert_eq!(one("'$PWD' \"$PWD\"").unwrap(), "$PWD /home");
    }

    #[test]
    fn required_messages() {
        assert_eq!(
            one("${NOPE:?must be set}").unwrap_err().to_string(),
            "NOPE: must be set"
        );
        assert_eq!(
            one("${EMPTY:?}").unwrap_err().to_string(),
            "EMPTY: is not allowed to be empty"
        );
    }

    #[test]
    fn backtick_escape() {
        assert_eq!(expand("a`$PWD` b", '`', &env).unwrap(), "a$PWD b");
        assert_eq!(expand("c:\\dir", '`', &env).unwrap(), "c:\\dir");
    }

    #[test]
    fn words() {
        assert_eq!(
            expand_words("x${SPACE}y", '\\', &env).unwrap(),
            ["xa", "by"]
        );
        assert_eq!(expand_words("'' a", '\\', &env).unwrap(), ["a"]);
    }

    #[test]
    fn prefix_and_suffix_removal() {
        let lookup = |n: &str| match n {
            "P" => Some("linux/amd64/v2".to_owned()),
            "F" => Some("archive.tar.gz".to_owned()),
            _ => None,
        };
        let e = |w: &str| expand(w, '\\', &lookup).unwrap();
        assert_eq!(e("${P#linux/}"), "amd64/v2");
        assert_eq!(e("${P#*/}"), "amd64/v2");
        assert_eq!(e("${P##*/}"), "v2");
        assert_eq!(e("${F%.*}"), "archive.tar");
        assert_eq!(e("${F%%.*}"), "archive");
        assert_eq!(e("${P#linux/arm64}"), "linux/amd64/v2");
        assert_eq!(e("${F%.[tg]z}"), "archive.tar");
        assert_eq!(e("${F%.[!g]z}"), "archive.tar.gz");
        assert_eq!(e("${NOPE#x}"), "");
        assert_eq!(e("${P#\\*}"), "linux/amd64/v2");
    }

    #[test]
    fn replacement_is_recognised_but_not_evaluated() {
        assert!(matches!(
            one("${PWD/a/b}"),
            Err(ExpandError::PatternNotSupported { operator: "/", .. })
        ));
        assert!(matches!(
            one("${PWD//a/b}"),
            Err(ExpandError::PatternNotSupported { operator: "//", .. })
        ));
        assert!(matches!(
            one("${PWD:#a}"),
            Err(ExpandError::UnsupportedModifier { .. })
        ));
    }

    #[test]
    fn raw_words_keep_quotes_and_variables() {
        assert_eq!(
            raw_words("RUN cat <<'E F' $X \\a").unwrap(),
            ["RUN", "cat", "<<'E F'", "$X", "\\a"]
        );
        assert!(raw_words("echo 'x").is_err());
        assert_eq!(cooked_words("E\"O\"F").unwrap(), ["EOF"]);
    }
}
