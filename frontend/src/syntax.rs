//! The syntax tree: each instruction as keyword, flags and arguments, like BuildKit's
//! `parser.Node`.
//!
//! Responsible for: splitting each logical line into its keyword, its leading
//! `--flags` (one level of quotes removed) and its arguments by the rule of its keyword
//! (split on whitespace, JSON-or-shell, key/value, `ONBUILD` nesting, ...), attaching
//! heredoc bodies, and the spans of all of these. Unknown keywords are kept here (their
//! arguments dropped, as BuildKit does); the typed layer (`instructions`) rejects them.
//! Not responsible for: checking flags or argument counts, or giving arguments meaning.

use serde::Serialize;

use crate::diagnostic::{Code, Diagnostic, Diagnostics, Severity};
use crate::heredoc::{Heredoc, markers_in_line};
use crate::json::{self, JsonArray};
use crate::lexer::{Directives, Lexer, LogicalLine};
use crate::span::Span;

/// A parsed Dockerfile at the syntax level.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ast {
    pub directives: Directives,
    /// The escape token in force (`\` unless `# escape=` says otherwise).
    pub escape: char,
    pub nodes: Vec<Node>,
    /// Non-fatal findings, such as empty continuation lines.
    pub warnings: Diagnostics,
}

/// One instruction at the syntax level.
///
/// `ONBUILD` triggers nest through [`Node::next`], as in BuildKit, and nothing limits
/// the depth at this layer (the typed layer refuses `ONBUILD ONBUILD`). Parsing,
/// [`Node::dump`], `Clone`, `PartialEq` and dropping walk the chain in a loop, so a
/// chain of any depth costs linear time and no stack; the derived `Debug` and
/// `Serialize` do recurse, one level per trigger.
#[derive(Debug, Eq, Serialize)]
pub struct Node {
    /// The keyword as written (`Copy`, `RUN`, ...).
    pub keyword: String,
    pub keyword_span: Span,
    pub flags: Vec<RawFlag>,
    pub args: Vec<Arg>,
    /// The arguments were given in JSON (exec) form.
    pub json: bool,
    /// The trigger of an `ONBUILD`.
    pub next: Option<Box<Node>>,
    pub heredocs: Vec<Heredoc>,
    /// The instruction text with continuation lines joined. Kept for an instruction and
    /// its `ONBUILD` trigger; a trigger's own trigger (`ONBUILD ONBUILD X`, which the
    /// typed layer refuses) leaves it empty, so that deep nesting costs linear memory.
    pub original: String,
    /// From the keyword to the end of the last line, heredoc bodies included.
    pub span: Span,
    /// The arguments text after the flags, trimmed; empty at its position if none.
    pub args_span: Span,
    pub start_line: u32,
    pub end_line: u32,
}

impl Node {
    /// A copy of this level without its trigger.
    fn clone_level(&self) -> Node {
        Node {
            keyword: self.keyword.clone(),
            keyword_span: self.keyword_span,
            flags: self.flags.clone(),
            args: self.args.clone(),
            json: self.json,
            next: None,
            heredocs: self.heredocs.clone(),
            original: self.original.clone(),
            span: self.span,
            args_span: self.args_span,
            start_line: self.start_line,
            end_line: self.end_line,
        }
    }

    /// Whether this level equals `other`'s, triggers aside.
    fn level_eq(&self, other: &Node) -> bool {
        self.keyword == other.keyword
            && self.keyword_span == other.keyword_span
            && self.flags == other.flags
            && self.args == other.args
            && self.json == other.json
            && self.heredocs == other.heredocs
            && self.original == other.original
            && self.span == other.span
            && self.args_span == other.args_span
            && self.start_line == other.start_line
            && self.end_line == other.end_line
    }

    /// Links `levels` (outermost first) into one node, each the trigger of the one
    /// before. `None` if there are none.
    fn chain(levels: Vec<Node>) -> Option<Node> {
        let mut levels = levels;
        let mut node = levels.pop()?;
        while let Some(mut parent) = levels.pop() {
            parent.next = Some(Box::new(node));
            node = parent;
        }
        Some(node)
    }
}

impl Clone for Node {
    fn clone(&self) -> Self {
        let mut levels = Vec::new();
        let mut level = Some(self);
        while let Some(node) = level {
            levels.push(node.clone_level());
            level = node.next.as_deref();
        }
        Node::chain(levels).unwrap_or_else(|| self.clone_level())
    }
}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        let (mut a, mut b) = (self, other);
        loop {
            if !a.level_eq(b) {
                return false;
            }
            match (&a.next, &b.next) {
                (Some(x), Some(y)) => (a, b) = (x, y),
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl Drop for Node {
    /// Unlinks the trigger chain level by level: the default drop would recurse once per
    /// `ONBUILD` level.
    fn drop(&mut self) {
        let mut next = self.next.take();
        while let Some(mut node) = next {
            next = node.next.take();
        }
    }
}

/// A leading `--name[=value]` word, with one level of quotes and escapes removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RawFlag {
    /// `--from=a b` for `--from="a b"`.
    pub text: String,
    pub span: Span,
}

/// One argument and where it is. For the JSON form `text` is the decoded string and the
/// span covers its literal; for `ENV`/`LABEL` the `=` marker argument spans the `=`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Arg {
    pub text: String,
    pub span: Span,
}

/// Parses `source` into syntax nodes. Fails on invalid directives, non-string JSON
/// arrays, malformed `ENV`/`LABEL`, unterminated heredocs, or a file with no
/// instructions; reports all of them.
pub fn parse_ast(source: &str) -> Result<Ast, Diagnostics> {
    let (mut ast, mut diags, _) = parse_ast_lenient(source);
    if diags.is_empty() {
        return Ok(ast);
    }
    diags.extend(std::mem::take(&mut ast.warnings));
    Err(diags)
}

/// Like [`parse_ast`] but always returns the nodes, with the errors found (warnings
/// are in the `Ast`) and, per node, whether it had a syntax error, so the typed layer
/// can go on and report more problems in one run.
pub(crate) fn parse_ast_lenient(source: &str) -> (Ast, Diagnostics, Vec<bool>) {
    let mut diags = Diagnostics::new();
    let mut broken = Vec::new();
    let (mut lexer, directives) = Lexer::new(source, &mut diags);
    let escape = lexer.escape();
    let mut nodes = Vec::new();
    while let Some(line) = lexer.next_logical() {
        let errors_before = diags.len();
        let mut node = split_instruction(&line, 0, line.text.len(), escape, &mut diags);
        node.original = line.text.clone();
        node.span = line.span;
        node.start_line = line.start_line;
        node.end_line = line.end_line;
        if line.has_empty_continuation {
            diags.push(Diagnostic::warning(
                Code::EmptyContinuationLine,
                line.span,
                format!("empty continuation line found in: {}", line.text),
            ));
        }
        if can_contain_heredoc(&node) && line.text.contains("<<") {
            for marker in markers_in_line(&line.text) {
                match lexer.read_heredoc(&marker.name, marker.chomp) {
                    Ok(body) => {
                        node.end_line = body.end_line;
                        node.span = node.span.to(body.terminator);
                        node.heredocs.push(Heredoc {
                            name: marker.name,
                            fd: marker.fd,
                            expand: marker.expand,
                            chomp: marker.chomp,
                            content: body.content,
                            span: body.span,
                        });
                    }
                    Err(eof) => {
                        node.end_line = eof.end_line;
                        diags.push(
                            Diagnostic::error(
                                Code::InvalidHeredoc,
                                line.span,
                                format!("unterminated heredoc `{}`", marker.name),
                            )
                            .with_label("the file ends before the terminator line")
                            .with_help(format!(
                                "end the heredoc with a line containing only `{}`",
                                marker.name
                            )),
                        );
                        break;
                    }
                }
            }
        }
        broken.push(
            diags
                .iter()
                .skip(errors_before)
                .any(|d| d.severity == Severity::Error),
        );
        nodes.push(node);
    }
    if nodes.is_empty() && !diags.has_errors() {
        diags.push(
            Diagnostic::error(
                Code::EmptyDockerfile,
                Span::empty(0),
                "the Dockerfile has no instructions",
            )
            .with_help("a Dockerfile needs at least a `FROM` instruction"),
        );
    }
    let warnings = diags.take_warnings();
    let ast = Ast {
        directives,
        escape,
        nodes,
        warnings,
    };
    (ast, diags, broken)
}

fn can_contain_heredoc(node: &Node) -> bool {
    let target = match node.keyword.to_ascii_lowercase().as_str() {
        "onbuild" => match &node.next {
            Some(next) => next,
            None => return false,
        },
        _ => node,
    };
    matches!(
        target.keyword.to_ascii_lowercase().as_str(),
        "run" | "copy" | "add"
    ) && !target.json
}

/// BuildKit's `[\t\v\f\r ]`: what separates the keyword and split-form arguments.
fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Trims Unicode whitespace from both ends of `text[start..end]`.
fn trim_range(text: &str, start: usize, end: usize) -> (usize, usize) {
    let s = &text[start..end];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if lead == s.len() {
        return (end, end);
    }
    (start + lead, end - trail)
}

/// Splits the instruction in `line.text[start..end]` into a node, with its `ONBUILD`
/// triggers however deeply they nest. Errors go to `diags`; a best-effort node is still
/// returned.
///
/// BuildKit's parser recurses once per `ONBUILD` level; this loops, one level at a time
/// (each level's work is proportional to its own keyword and flags), then links the
/// levels, so the depth costs neither stack nor quadratic time.
fn split_instruction(
    line: &LogicalLine,
    start: usize,
    end: usize,
    escape: char,
    diags: &mut Diagnostics,
) -> Node {
    let mut levels = Vec::new();
    let mut range = Some((start, end));
    while let Some((start, end)) = range {
        // `original` is kept for the instruction and its trigger (see `Node::original`).
        let keep_original = levels.len() < 2;
        let (node, trigger) = split_level(line, start, end, escape, keep_original, diags);
        levels.push(node);
        range = trigger;
    }
    // The loop ran at least once.
    Node::chain(levels).unwrap_or_else(|| split_level(line, start, end, escape, true, diags).0)
}

/// Splits one level of `line.text[start..end]`: the node without its trigger, and for
/// `ONBUILD` the range of the trigger, if it has one.
fn split_level(
    line: &LogicalLine,
    start: usize,
    end: usize,
    escape: char,
    keep_original: bool,
    diags: &mut Diagnostics,
) -> (Node, Option<(usize, usize)>) {
    let text = line.text.as_str();
    let (ts, te) = trim_range(text, start, end);
    let kw_end = text[ts..te].find(is_split_space).map_or(te, |i| ts + i);
    let rest_start = text[kw_end..te]
        .find(|c| !is_split_space(c))
        .map_or(te, |i| kw_end + i);
    let keyword = text[ts..kw_end].to_owned();
    let (args_from, raw_flags) = extract_flags(text, rest_start, te, escape);
    let (as_, ae) = trim_range(text, args_from, te);
    let span_of = |a: usize, b: usize| line.source_span(a, b);

    let mut node = Node {
        keyword: keyword.clone(),
        keyword_span: span_of(ts, kw_end),
        flags: raw_flags
            .into_iter()
            .map(|(t, a, b)| RawFlag {
                text: t,
                span: span_of(a, b),
            })
            .collect(),
        args: Vec::new(),
        json: false,
        next: None,
        heredocs: Vec::new(),
        original: if keep_original {
            text[ts..te].to_owned()
        } else {
            String::new()
        },
        span: span_of(ts, te),
        args_span: span_of(as_, ae),
        start_line: line.start_line,
        end_line: line.end_line,
    };
    let args = &text[as_..ae];
    let arg = |t: &str, a: usize, b: usize| Arg {
        text: t.to_owned(),
        span: span_of(a, b),
    };

    match keyword.to_ascii_lowercase().as_str() {
        "from" | "expose" => node.args = split_words(text, as_, ae, &arg),
        "add" | "copy" | "volume" => {
            if !json_args(&mut node, line, as_, ae, diags) {
                node.args = split_words(text, as_, ae, &arg);
            }
        }
        "run" | "cmd" | "entrypoint" | "shell" => {
            if !json_args(&mut node, line, as_, ae, diags) && !args.is_empty() {
                node.args = vec![arg(args, as_, ae)];
            }
        }
        "maintainer" | "user" | "workdir" | "stopsignal" => {
            if !args.is_empty() {
                node.args = vec![arg(args, as_, ae)];
            }
        }
        "arg" => {
            node.args = words(text, as_, ae, escape)
                .into_iter()
                .map(|(w, a, b)| arg(&w, a, b))
                .collect();
        }
        "env" | "label" => {
            node.args = key_values(&keyword, line, as_, ae, escape, diags);
        }
        "healthcheck" => healthcheck_args(&mut node, line, as_, ae, diags),
        "onbuild" if !args.is_empty() => return (node, Some((as_, ae))),
        "onbuild" => {}
        _ => node.args = vec![arg("", as_, as_)],
    }
    (node, None)
}

/// Splits `text[start..end]` at runs of `[\t\v\f\r ]`.
fn split_words(
    text: &str,
    start: usize,
    end: usize,
    arg: &dyn Fn(&str, usize, usize) -> Arg,
) -> Vec<Arg> {
    let mut out = Vec::new();
    let mut word_start = None;
    for (i, c) in text[start..end].char_indices() {
        let at = start + i;
        match (is_split_space(c), word_start) {
            (true, Some(ws)) => {
                out.push(arg(&text[ws..at], ws, at));
                word_start = None;
            }
            (false, None) => word_start = Some(at),
            _ => {}
        }
    }
    if let Some(ws) = word_start {
        out.push(arg(&text[ws..end], ws, end));
    }
    out
}

/// Fills `node.args` from a JSON array of strings, if `text[start..end]` is one.
/// Returns false if it is not JSON. A JSON array with other elements is an error.
fn json_args(
    node: &mut Node,
    line: &LogicalLine,
    start: usize,
    end: usize,
    diags: &mut Diagnostics,
) -> bool {
    match json::parse(&line.text[start..end]) {
        JsonArray::NotJson => false,
        JsonArray::NotStrings { start: a, end: b } => {
            diags.push(
                Diagnostic::error(
                    Code::InvalidJson,
                    line.source_span(start + a, start + b),
                    format!(
                        "the JSON form of {} takes an array of strings",
                        node.keyword.to_uppercase()
                    ),
                )
                .with_label("not a string")
                .with_help("quote every element, e.g. [\"sh\", \"-c\", \"echo hi\"]"),
            );
            node.json = true;
            true
        }
        JsonArray::Strings(items) => {
            node.json = true;
            node.args = items
                .into_iter()
                .map(|(value, a, b)| Arg {
                    text: value,
                    span: line.source_span(start + a, start + b),
                })
                .collect();
            true
        }
    }
}

/// BuildKit's `extractBuilderFlags`: reads leading `--` words with one level of quotes
/// and escapes removed. Returns where the arguments start and each flag with its range.
/// (BuildKit reads this byte by byte, turning non-ASCII bytes into Latin-1 characters;
/// here flags keep their UTF-8 text.)
fn extract_flags(
    text: &str,
    start: usize,
    end: usize,
    escape: char,
) -> (usize, Vec<(String, usize, usize)>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    // Read lazily: only the flags are looked at, not the (possibly long) rest.
    let mut chars = text[start..end]
        .char_indices()
        .map(|(i, c)| (start + i, c))
        .peekable();
    let mut flags = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = start;
    let mut blank_ok = false;
    loop {
        let Some(&(at, c)) = chars.peek() else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                flags.push((word, word_start, end));
            }
            return (end, flags);
        };
        match phase {
            Phase::Spaces => {
                if c.is_whitespace() {
                    chars.next();
                    continue;
                }
                if !text[at..end].starts_with("--") {
                    return (at, flags);
                }
                phase = Phase::Word;
                word_start = at;
                continue;
            }
            Phase::Word => {
                if c.is_whitespace() {
                    if word == "--" {
                        return (at, flags);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push((std::mem::take(&mut word), word_start, at));
                    }
                    word.clear();
                    blank_ok = false;
                    phase = Phase::Spaces;
                } else if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    blank_ok = true;
                } else if c == escape {
                    chars.next();
                    if let Some(&(_, next)) = chars.peek() {
                        word.push(next);
                    }
                } else {
                    word.push(c);
                }
            }
            Phase::Quote(q) => {
                if c == q {
                    phase = Phase::Word;
                } else if c == escape {
                    chars.next();
                    if let Some(&(_, next)) = chars.peek() {
                        word.push(next);
                    }
                } else {
                    word.push(c);
                }
            }
        }
        chars.next();
    }
}

/// BuildKit's `parseWords`: words separated by unquoted Unicode whitespace, quotes and
/// escape tokens kept, an escape token at the very end dropped.
pub(crate) fn words(
    text: &str,
    start: usize,
    end: usize,
    escape: char,
) -> Vec<(String, usize, usize)> {
    let chars: Vec<(usize, char)> = text[start..end]
        .char_indices()
        .map(|(i, c)| (start + i, c))
        .collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let mut word_start = start;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while let Some(&(at, c)) = chars.get(i) {
        let last = i + 1 == chars.len();
        i += 1;
        if !in_word {
            if c.is_whitespace() {
                continue;
            }
            in_word = true;
            word_start = at;
        }
        match quote {
            None => {
                if c.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        out.push((std::mem::take(&mut word), word_start, at));
                    }
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    if last {
                        continue;
                    }
                    word.push(c);
                    word.push(chars[i].1);
                    i += 1;
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                if c == escape && q != '\'' {
                    if last {
                        continue;
                    }
                    word.push(c);
                    word.push(chars[i].1);
                    i += 1;
                    continue;
                }
                word.push(c);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        out.push((word, word_start, end));
    }
    out
}

/// `ENV`/`LABEL` arguments as (key, value, marker) triples: `"="` for the `k=v` form,
/// `""` for the legacy `k v` form.
fn key_values(
    keyword: &str,
    line: &LogicalLine,
    start: usize,
    end: usize,
    escape: char,
    diags: &mut Diagnostics,
) -> Vec<Arg> {
    let text = line.text.as_str();
    let span_of = |a: usize, b: usize| line.source_span(a, b);
    let arg = |t: &str, a: usize, b: usize| Arg {
        text: t.to_owned(),
        span: span_of(a, b),
    };
    let found = words(text, start, end, escape);
    let Some(first) = found.first() else {
        return Vec::new();
    };
    let upper = keyword.to_uppercase();
    if !first.0.contains('=') {
        // Legacy form: `ENV key value with spaces`.
        let key_end = text[start..end].find(is_split_space).map(|i| start + i);
        let Some(key_end) = key_end else {
            diags.push(
                Diagnostic::error(
                    Code::InvalidKeyValue,
                    span_of(start, end),
                    format!("{upper} must have two arguments"),
                )
                .with_label("missing a value")
                .with_help(format!("write `{upper} {}=<value>`", &text[start..end])),
            );
            return Vec::new();
        };
        let value_start = text[key_end..end]
            .find(|c| !is_split_space(c))
            .map_or(end, |i| key_end + i);
        return vec![
            arg(&text[start..key_end], start, key_end),
            arg(&text[value_start..end], value_start, end),
            arg("", end, end),
        ];
    }
    let mut out = Vec::new();
    for (w, a, b) in &found {
        let Some(eq) = w.find('=') else {
            diags.push(
                Diagnostic::error(
                    Code::InvalidKeyValue,
                    span_of(*a, *b),
                    format!("can't find `=` in `{w}`: {upper} takes name=value pairs"),
                )
                .with_label("expected name=value")
                .with_help(format!(
                    "write `{w}=<value>`, or use one {upper} per variable"
                )),
            );
            continue;
        };
        // Words keep their text as written, so `eq` is also the offset in the source
        // text relative to the word start.
        out.push(arg(&w[..eq], *a, a + eq));
        out.push(arg(&w[eq + 1..], a + eq + 1, *b));
        out.push(arg("=", a + eq, a + eq + 1));
    }
    out
}

/// `HEALTHCHECK NONE` / `HEALTHCHECK [flags] CMD <command>`: the type word, then the
/// rest in JSON or shell form.
fn healthcheck_args(
    node: &mut Node,
    line: &LogicalLine,
    start: usize,
    end: usize,
    diags: &mut Diagnostics,
) {
    let text = line.text.as_str();
    if start >= end {
        return;
    }
    let is_space = |c: char| c.is_ascii_whitespace() || c == '\x0b';
    let sep = text[start..end].find(is_space).map_or(end, |i| start + i);
    let next = text[sep..end]
        .find(|c| !is_space(c))
        .map_or(end, |i| sep + i);
    node.args.push(Arg {
        text: text[start..sep].to_owned(),
        span: line.source_span(start, sep),
    });
    if next < end && !json_args_append(node, line, next, end, diags) {
        node.args.push(Arg {
            text: text[next..end].to_owned(),
            span: line.source_span(next, end),
        });
    }
}

fn json_args_append(
    node: &mut Node,
    line: &LogicalLine,
    start: usize,
    end: usize,
    diags: &mut Diagnostics,
) -> bool {
    let head = std::mem::take(&mut node.args);
    let is_json = json_args(node, line, start, end, diags);
    let tail = std::mem::replace(&mut node.args, head);
    node.args.extend(tail);
    is_json
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(src: &str) -> Vec<String> {
        parse_ast(src)
            .unwrap()
            .nodes
            .iter()
            .map(Node::dump)
            .collect()
    }

    #[test]
    fn argument_rules() {
        assert_eq!(
            dump("FROM a AS b\nCOPY --from=\"x y\" -- a b\nARG abc=\"1 2\" d\n"),
            [
                r#"(from "a" "AS" "b")"#,
                r#"(copy ["--from=x y"] "a" "b")"#,
                r#"(arg "abc=\"1 2\"" "d")"#,
            ]
        );
        assert_eq!(
            dump("ENV a=b c=\"d e\"\nLABEL k v  w\nCMD [\"a\", \"b\"]\nRUN ['a']\n"),
            [
                r#"(env "a" "b" "=" "c" "\"d e\"" "=")"#,
                r#"(label "k" "v  w" "")"#,
                r#"(cmd "a" "b")"#,
                r#"(run "['a']")"#,
            ]
        );
        assert_eq!(
            dump("ONBUILD copy --x=1 a b\nHEALTHCHECK --retries=3 CMD [\"a\"]\nFOO bar\n"),
            [
                r#"(onbuild (copy ["--x=1"] "a" "b"))"#,
                r#"(healthcheck ["--retries=3"] "CMD" "a")"#,
                r#"(foo "")"#,
            ]
        );
    }

    #[test]
    fn spans_point_into_the_source() {
        let src = "FROM a\nCOPY --chown=1:1 \\\n  x y\n";
        let ast = parse_ast(src).unwrap();
        let copy = &ast.nodes[1];
        assert_eq!(copy.flags[0].span.text(src), "--chown=1:1");
        assert_eq!(copy.args[0].span.text(src), "x");
        assert_eq!(copy.args_span.text(src), "x y");
        let env = parse_ast("ENV k=v").unwrap();
        assert_eq!(env.nodes[0].args[1].span, Span::new(6, 7));
    }

    #[test]
    fn errors_are_collected() {
        let err = parse_ast("ENV a\nCMD [1]\nLABEL x=1 y\n").unwrap_err();
        let codes: Vec<_> = err.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            [
                Code::InvalidKeyValue,
                Code::InvalidJson,
                Code::InvalidKeyValue
            ]
        );
        assert_eq!(parse_ast("# only\n\n").unwrap_err().len(), 1);
    }

    /// A trigger chain far deeper than a thread's stack could recurse through parses,
    /// clones, compares and drops, keeping `original` for the first two levels only.
    #[test]
    fn deep_onbuild_chains_use_no_recursion() {
        let depth = 100_000;
        let src = format!("{}RUN x\n", "ONBUILD ".repeat(depth));
        let ast = parse_ast(&src).unwrap();
        let node = &ast.nodes[0];
        let trigger = node.next.as_deref().unwrap();
        assert_eq!(trigger.original, src[8..src.len() - 1]);
        assert_eq!(trigger.next.as_deref().unwrap().original, "");
        let mut levels = 0;
        let mut level = Some(node);
        while let Some(n) = level {
            levels += 1;
            level = n.next.as_deref();
        }
        assert_eq!(levels, depth + 1);
        let copy = ast.clone();
        assert_eq!(copy, ast);
        let other = parse_ast(&format!("{}RUN y\n", "ONBUILD ".repeat(depth))).unwrap();
        assert_ne!(other, ast);
    }

    #[test]
    fn heredocs_attach_to_their_instruction() {
        let src = "FROM a\nRUN <<A cat - <<B\na\nA\nb\nB\nCMD x\n";
        let ast = parse_ast(src).unwrap();
        let run = &ast.nodes[1];
        assert_eq!(run.heredocs.len(), 2);
        assert_eq!(run.heredocs[1].content, "b\n");
        assert_eq!((run.start_line, run.end_line), (2, 6));
        assert_eq!(ast.nodes[2].dump(), r#"(cmd "x")"#);
        assert!(parse_ast("RUN <<EOF\nx\n").is_err());
    }
}
