//! Word expansion with BuildKit's shell-lexer semantics.
//!
//! Responsible for: `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?msg}`,
//! `${V?msg}`, prefix/suffix removal (`${V#p}`, `${V##p}`, `${V%p}`, `${V%%p}`),
//! replacement (`${V/p/r}`, `${V//p/r}`), positional and special parameters (always
//! unset in a Dockerfile), single and double quotes, the escape token, quote removal,
//! and splitting a word into several words at unquoted whitespace (including
//! whitespace that comes from an unquoted variable). The result matches BuildKit's
//! `ProcessWord` / `ProcessWords`; [`expand_heredoc`] matches its `ExpandRaw` for
//! heredoc bodies. Patterns are BuildKit's (see `pattern`): `*` and `?` only, no
//! bracket expressions. Operands nest to any depth (`${A:-${B:-"${C}"}}`), as in
//! BuildKit, which has no limit either: the nesting is kept on an explicit stack rather
//! than the thread's, so a deep word costs memory in proportion to its length, never a
//! stack overflow.
//! Not responsible for: knowing which variables exist (the caller's `lookup` decides;
//! it is called once per reference, so a recording lookup sees every variable a word
//! uses, as BuildKit's matched/unmatched sets do), or which instructions expand which
//! words (see the crate docs).

mod pattern;

use thiserror::Error;

use crate::diagnostic::{Code, Diagnostic};
use crate::span::Span;
use pattern::Pattern;
pub use pattern::PatternError;

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
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("invalid pattern ({pattern}) in substitution: {source}")]
    InvalidPattern {
        pattern: String,
        #[source]
        source: PatternError,
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

/// Expands a heredoc body of `COPY`/`ADD` as BuildKit's `ExpandRaw` does: quotes are
/// ordinary characters, `\\` is the escape (whatever the file's escape token), and
/// variables are substituted.
pub fn expand_heredoc(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new('\\', lookup);
    lexer.skip_quotes = true;
    lexer.process(body).map(|(w, _)| w)
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
    /// Quotes are ordinary characters (BuildKit's `SkipProcessQuotes`).
    skip_quotes: bool,
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
            skip_quotes: false,
        }
    }

    /// Expands `word`: BuildKit's `process`, which recurses once per `${...}` operand
    /// and per double-quoted string. Here those nest on an explicit stack of [`Frame`]s
    /// instead, so nesting of any depth (`${A:-${A:-...}}`, from a generated file or a
    /// fuzzer) costs heap memory, not thread stack. The steps, and which error wins, are
    /// those of the recursive form.
    fn process(&mut self, word: &str) -> Result<Processed, ExpandError> {
        self.chars = word.chars().collect();
        self.pos = 0;
        let saved = self.raw_escapes;
        let result = self.run();
        self.raw_escapes = saved;
        result
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// The machine behind [`Lexer::process`]: always at least the outermost text frame on
    /// the stack until it finishes.
    fn run(&mut self) -> Result<Processed, ExpandError> {
        let mut stack = Stack::default();
        stack.push(self.text_frame(None, self.raw_escapes, Then::Finish));
        loop {
            let step = match stack.last_mut() {
                Some(Frame::Text(text)) => self.text_step(text),
                Some(Frame::DoubleQuote(quoted)) => self.double_quote_step(quoted),
                // Not reached: the outermost frame returns below.
                None => return Err(ExpandError::Unterminated { expected: "}" }),
            };
            let outcome = match step {
                Ok(Step::Push(frame)) => {
                    stack.push(frame);
                    continue;
                }
                Ok(Step::Dollar(value)) => {
                    deliver(&mut stack, Value::Unquoted(value));
                    continue;
                }
                Ok(Step::Pop) => self.finish(&mut stack),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(Finished::Done(processed)) => return Ok(processed),
                Ok(Finished::Pushed(frame)) => stack.push(frame),
                Ok(Finished::Value(value)) => deliver(&mut stack, value),
                Err(e) => return Err(self.unwind(&mut stack, e)),
            }
        }
    }

    /// A text frame ending at `stop` with the escape mode `raw_escapes`: BuildKit sets
    /// the mode for the nested text and restores it after (see [`Lexer::finish`]).
    fn text_frame(&mut self, stop: Option<char>, raw_escapes: bool, then: Then) -> Frame {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        Frame::Text(TextFrame {
            stop,
            saved_raw_escapes: saved,
            result: String::new(),
            words: Words::default(),
            then,
        })
    }

    /// BuildKit's `processStopOn` loop, up to the next thing that needs the stack: the
    /// end of the frame, a `$` or a double quote.
    fn text_step(&mut self, frame: &mut TextFrame) -> Result<Step, ExpandError> {
        while let Some(ch) = self.peek() {
            if Some(ch) == frame.stop {
                self.next();
                return Ok(Step::Pop);
            }
            match ch {
                '$' => return self.start_dollar(),
                '\'' if !self.skip_quotes => {
                    let value = self.process_single_quote()?;
                    frame.result.push_str(&value);
                    frame.words.add_raw_string(&value);
                }
                '"' if !self.skip_quotes => {
                    let open = self.next();
                    let mut result = String::new();
                    if self.raw_quotes {
                        result.extend(open);
                    }
                    return Ok(Step::Push(Frame::DoubleQuote(result)));
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            frame.words.add_raw_char(ch);
                            frame.result.push(ch);
                        }
                        // The escape token escapes the next character; at the end of the
                        // text it is dropped.
                        let Some(escaped) = self.next() else { break };
                        frame.words.add_raw_char(escaped);
                        frame.result.push(escaped);
                    } else {
                        frame.words.add_char(ch);
                        frame.result.push(ch);
                    }
                }
            }
        }
        match frame.stop {
            None => Ok(Step::Pop),
            Some('}') => Err(ExpandError::Unterminated { expected: "}" }),
            Some('/') => Err(ExpandError::Unterminated { expected: "/" }),
            Some(_) => Err(ExpandError::Unterminated { expected: "?" }),
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

    /// Inside double quotes, up to the closing quote or a `$`: everything up to the next
    /// unescaped `"` is literal except `$` expansions; the escape token only escapes
    /// `"`, `$` and itself and is kept before anything else.
    fn double_quote_step(&mut self, result: &mut String) -> Result<Step, ExpandError> {
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
                    return Ok(Step::Pop);
                }
                Some('$') => return self.start_dollar(),
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

    /// BuildKit's `processDollar` up to its operand: a whole `$name` or `${name}`, or a
    /// new frame for the operand of `${name<op>...}`.
    fn start_dollar(&mut self) -> Result<Step, ExpandError> {
        self.next(); // the `$`
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok(Step::Dollar("$".to_owned()));
            }
            return Ok(Step::Dollar(match self.variable(&name) {
                Some(value) => value,
                None if self.skip_unset => format!("${name}"),
                None => String::new(),
            }));
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
            '}' => Ok(Step::Dollar(match self.variable(&name) {
                Some(value) => value,
                None if self.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            })),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut modifier = ch.to_string();
                let null_is_unset = ch == ':';
                let op = if null_is_unset {
                    let next = self.next();
                    modifier.extend(next);
                    next
                } else {
                    Some(ch)
                };
                let pattern = matches!(op, Some('#' | '%'));
                if null_is_unset && pattern {
                    return Err(ExpandError::UnsupportedModifier { modifier });
                }
                let then = Then::Modifier {
                    name,
                    modifier,
                    op,
                    null_is_unset,
                };
                Ok(Step::Push(self.text_frame(Some('}'), pattern, then)))
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let then = Then::ReplacePattern { name, all };
                Ok(Step::Push(self.text_frame(Some('/'), true, then)))
            }
            other => Err(ExpandError::UnsupportedModifier {
                modifier: other.to_string(),
            }),
        }
    }

    /// Pops the finished top frame and does what its caller does with it.
    fn finish(&mut self, stack: &mut Stack) -> Result<Finished, ExpandError> {
        let text = match stack.pop() {
            Some(Frame::Text(text)) => text,
            Some(Frame::DoubleQuote(result)) => return Ok(Finished::Value(Value::Quoted(result))),
            None => return Err(ExpandError::Unterminated { expected: "}" }),
        };
        self.raw_escapes = text.saved_raw_escapes;
        let word = text.result;
        match text.then {
            Then::Finish => Ok(Finished::Done((word, text.words.finish()))),
            Then::Modifier {
                name,
                modifier,
                op,
                null_is_unset,
            } => self
                .modifier_value(&name, &modifier, op, null_is_unset, word)
                .map(|v| Finished::Value(Value::Unquoted(v))),
            Then::ReplacePattern { name, all } => {
                let then = Then::Replacement {
                    name,
                    all,
                    pattern: word,
                };
                Ok(Finished::Pushed(self.text_frame(Some('}'), true, then)))
            }
            Then::Replacement { name, all, pattern } => self
                .replace_value(&name, all, &pattern, &word)
                .map(|v| Finished::Value(Value::Unquoted(v))),
        }
    }

    /// Pops frames from the top until the outermost, as the recursive form returns an
    /// error through its callers: an operand that is cut off by the end of the text
    /// reports the missing `}` (or `/`) of the frame that was reading it.
    fn unwind(&mut self, stack: &mut Stack, mut error: ExpandError) -> ExpandError {
        while let Some(frame) = stack.pop() {
            let Frame::Text(text) = frame else { continue };
            self.raw_escapes = text.saved_raw_escapes;
            let at_end = self.peek().is_none();
            error = match text.then {
                Then::Finish => return error,
                Then::Modifier { .. } | Then::Replacement { .. } if at_end => {
                    ExpandError::MissingBrace
                }
                Then::ReplacePattern { .. } if at_end => ExpandError::MissingSlash,
                _ => error,
            };
        }
        error
    }

    /// The value of `${name<modifier>word}`, `word` expanded.
    fn modifier_value(
        &self,
        name: &str,
        modifier: &str,
        op: Option<char>,
        null_is_unset: bool,
        word: String,
    ) -> Result<String, ExpandError> {
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
                let (greedy, text) = match word.strip_prefix(c) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let pattern = parse_pattern(text)?;
                let value = value.unwrap_or_default();
                Ok(if c == '#' {
                    pattern::trim_prefix(&value, &pattern, greedy)
                } else {
                    pattern::trim_suffix(&value, &pattern, greedy)
                })
            }
            _ => Err(ExpandError::UnsupportedModifier {
                modifier: modifier.to_owned(),
            }),
        }
    }

    /// The value of `${name/pattern/replacement}` (first match) and
    /// `${name//pattern/replacement}` (every match). Both operands keep their escapes for
    /// the pattern reader; the replacement is used as it is (so `\/` stays `\/`, as in
    /// BuildKit).
    fn replace_value(
        &self,
        name: &str,
        all: bool,
        pattern_text: &str,
        replacement: &str,
    ) -> Result<String, ExpandError> {
        let value = self.variable(name);
        if self.skip_unset && value.is_none() {
            // BuildKit writes a single `/` back even for `//`.
            return Ok(format!("${{{name}/{pattern_text}/{replacement}}}"));
        }
        let pattern = parse_pattern(pattern_text)?;
        let value = value.unwrap_or_default();
        Ok(if all {
            pattern::replace_all(&value, &pattern, replacement)
        } else {
            pattern::replace_first(&value, &pattern, replacement)
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

/// A text being expanded that nests inside another (see [`Lexer::process`]).
enum Frame {
    /// Text up to a stop character (or the end): BuildKit's `processStopOn`.
    Text(TextFrame),
    /// A double-quoted string, its opening quote read.
    DoubleQuote(String),
}

struct TextFrame {
    stop: Option<char>,
    /// The escape mode of the enclosing text, restored when this frame ends.
    saved_raw_escapes: bool,
    result: String,
    words: Words,
    then: Then,
}

/// What the text of a [`TextFrame`] is for, once read.
enum Then {
    /// The whole word: the result of [`Lexer::process`].
    Finish,
    /// The operand of `${name<modifier>...}`.
    Modifier {
        name: String,
        modifier: String,
        op: Option<char>,
        null_is_unset: bool,
    },
    /// The pattern of `${name/...` (`${name//...` when `all`).
    ReplacePattern { name: String, all: bool },
    /// The replacement of `${name/pattern/...}`.
    Replacement {
        name: String,
        all: bool,
        pattern: String,
    },
}

/// What one step of the top frame asks for.
enum Step {
    /// A nested text starts.
    Push(Frame),
    /// The top frame is complete.
    Pop,
    /// A `$` expansion that needed no nested text.
    Dollar(String),
}

/// What a completed frame gives its caller.
enum Finished {
    Done(Processed),
    /// The next operand starts (the replacement after a pattern).
    Pushed(Frame),
    Value(Value),
}

/// The frames of [`Lexer::run`]: the top one apart, so that a word without nesting
/// needs no allocation for them.
#[derive(Default)]
struct Stack {
    top: Option<Frame>,
    below: Vec<Frame>,
}

impl Stack {
    fn push(&mut self, frame: Frame) {
        if let Some(previous) = self.top.replace(frame) {
            self.below.push(previous);
        }
    }

    fn pop(&mut self) -> Option<Frame> {
        let top = self.top.take();
        self.top = self.below.pop();
        top
    }

    fn last_mut(&mut self) -> Option<&mut Frame> {
        self.top.as_mut()
    }
}

/// A value for the frame on top of the stack.
enum Value {
    /// From a `$` expansion: split at whitespace in a text.
    Unquoted(String),
    /// A double-quoted string: one word in a text.
    Quoted(String),
}

/// Adds `value` to the frame now on top of `stack`.
fn deliver(stack: &mut Stack, value: Value) {
    match (stack.last_mut(), value) {
        (Some(Frame::Text(text)), Value::Unquoted(v)) => {
            text.result.push_str(&v);
            text.words.add_string(&v);
        }
        (Some(Frame::Text(text)), Value::Quoted(v)) => {
            text.result.push_str(&v);
            text.words.add_raw_string(&v);
        }
        (Some(Frame::DoubleQuote(result)), Value::Unquoted(v) | Value::Quoted(v)) => {
            result.push_str(&v);
        }
        (None, _) => {}
    }
}

fn parse_pattern(text: &str) -> Result<Pattern, ExpandError> {
    Pattern::parse(text).map_err(|source| ExpandError::InvalidPattern {
        pattern: text.to_owned(),
        source,
    })
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
        // BuildKit has no bracket expressions: `[` is an ordinary character.
        assert_eq!(e("${F%.[tg]z}"), "archive.tar.gz");
        assert_eq!(e("${F%.g?}"), "archive.tar");
        assert_eq!(e("${NOPE#x}"), "");
        assert_eq!(e("${P#\\*}"), "linux/amd64/v2");
    }

    #[test]
    fn replacement() {
        // BuildKit's TestProcessWithMatches rows for `/` and `//`.
        let lookup = |n: &str| match n {
            "FOO" => Some("/foo*/*/*.txt".to_owned()),
            "NEEDLE" => Some("\\*/".to_owned()),
            "T" => Some("/tmp/tmp/bar.txt".to_owned()),
            "TMP" => Some("/tmp".to_owned()),
            "U" => Some("http://google.de".to_owned()),
            "F" => Some("/tmp/foo.txt".to_owned()),
            "Q" => Some("/a/foo/b/c.txt".to_owned()),
            "E" => Some(String::new()),
            _ => None,
        };
        let e = |w: &str| expand(w, '\\', &lookup);
        assert_eq!(
            e("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}").unwrap(),
            "/foo.*/*.txt - /foo..*.txt"
        );
        assert_eq!(
            e("${T/$TMP/} - ${T//$TMP/}").unwrap(),
            "/tmp/bar.txt - /bar.txt"
        );
        assert_eq!(
            e("${Q/\\/?\\//\\/} - ${Q//\\/?\\//\\/}").unwrap(),
            "\\/foo/b/c.txt - \\/foo\\/c.txt"
        );
        assert_eq!(e("${U/http:\\/\\//https://}").unwrap(), "https://google.de");
        assert_eq!(e("${F//\\//\\/}").unwrap(), "\\/tmp\\/foo.txt");
        assert_eq!(e("${F/$E/ww}").unwrap(), "ww/tmp/foo.txt");
        assert_eq!(e("${F///}").unwrap(), "/tmp/foo.txt");
        assert_eq!(e("${NOPE///}").unwrap(), "");
        assert_eq!(e("${F/\"o.t\"/-}").unwrap(), "/tmp/fo-xt");
        assert_eq!(e("${F//ww}").unwrap_err(), ExpandError::MissingSlash);
        assert_eq!(e("${F//}").unwrap_err(), ExpandError::MissingSlash);
        assert_eq!(e("${F/a/b").unwrap_err(), ExpandError::MissingBrace);
        assert_eq!(
            e("${F/\\x/b}").unwrap_err().to_string(),
            "invalid pattern (\\x) in substitution: invalid escape '\\x'"
        );
        assert!(matches!(
            one("${PWD:#a}"),
            Err(ExpandError::UnsupportedModifier { .. })
        ));
    }

    #[test]
    fn heredoc_bodies_keep_quotes() {
        let lookup = |n: &str| (n == "V").then(|| "v".to_owned());
        assert_eq!(
            expand_heredoc("echo '$V' \"${V}\" \\$V\n", &lookup).unwrap(),
            "echo 'v' \"v\" $V\n"
        );
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
