//! From Dockerfile bytes to logical lines.
//!
//! Responsible for: the byte order mark, line ends (`\n`, `\r\n`), parser directives at
//! the top of the file (`# syntax=`, `# escape=`, `# check=`), comment and blank lines,
//! line continuations with the escape token (skipping comment and empty lines inside a
//! continued instruction, as BuildKit does), and reading raw heredoc bodies when the
//! parser asks for them. Every logical line remembers which source bytes it was joined
//! from, so spans in the joined text map back to the file.
//! Not responsible for: splitting a line into keyword, flags and arguments (`syntax`),
//! or deciding whether a line has heredocs (`heredoc`).

use serde::Serialize;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::span::Span;

/// The escape token used when no `# escape=` directive is given.
pub const DEFAULT_ESCAPE: char = '\\';

/// One parser directive (`# name=value`) from the top of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Directive {
    pub value: String,
    /// The whole directive line.
    pub span: Span,
    pub value_span: Span,
}

/// The parser directives found at the top of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Directives {
    pub syntax: Option<Directive>,
    pub escape: Option<Directive>,
    pub check: Option<Directive>,
}

/// A physical line: `start..end` is its text without the line end; `raw_end` is where
/// its `\n` (or the end of the file) is, so `start..raw_end` keeps a trailing `\r`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PhysicalLine {
    pub start: usize,
    pub end: usize,
    pub raw_end: usize,
    pub number: u32,
}

/// A contiguous piece of the joined text that comes from `source_start..` in the file.
#[derive(Clone, Copy, Debug)]
struct Segment {
    text_start: usize,
    source_start: usize,
    len: usize,
}

/// An instruction's text with continuation lines joined, and the map back to the file.
#[derive(Clone, Debug)]
pub(crate) struct LogicalLine {
    pub text: String,
    /// In text order: `text_start`s never decrease and each segment starts where the
    /// one before ends, so offsets are looked up by binary search.
    segments: Vec<Segment>,
    /// Index of the last empty segment, if any (see `source_offset`).
    last_empty: Option<usize>,
    /// From the first character of the instruction to the end of its last joined line.
    pub span: Span,
    pub start_line: u32,
    /// Last physical line consumed, counting skipped comment and blank lines.
    pub end_line: u32,
    pub has_empty_continuation: bool,
}

impl LogicalLine {
    fn push(&mut self, source_start: usize, piece: &str) {
        if piece.is_empty() {
            self.last_empty = Some(self.segments.len());
        }
        self.segments.push(Segment {
            text_start: self.text.len(),
            source_start,
            len: piece.len(),
        });
        self.text.push_str(piece);
    }

    /// Source offset of joined-text offset `at` (the start of a character).
    ///
    /// The segment is the last one that contains `at`, or else the last empty one that
    /// starts at or before it, or else the last one.
    pub fn source_offset(&self, at: usize) -> usize {
        // Segments starting at or before `at` are a prefix; the last of them contains
        // `at` if any segment does.
        let before = self.segments.partition_point(|s| s.text_start <= at);
        let seg = match before.checked_sub(1).map(|i| &self.segments[i]) {
            Some(s) if at < s.text_start + s.len || s.len == 0 => Some(s),
            // `at` is past the end of every segment: the last empty one, or the last.
            _ => self
                .last_empty
                .map(|i| &self.segments[i])
                .filter(|s| s.text_start <= at)
                .or_else(|| self.segments.last()),
        };
        match seg {
            Some(s) => s.source_start + (at - s.text_start).min(s.len),
            None => self.span.start,
        }
    }

    /// Source offset just after joined-text offset `at - 1` (the end of a range).
    fn source_end_offset(&self, at: usize) -> usize {
        if at == 0 {
            return self.source_offset(0);
        }
        // The first segment that ends at or after `at`, if it starts before `at`: the
        // first with `text_start < at && at <= end` (empty ones never qualify).
        let first_end = self.segments.partition_point(|s| s.text_start + s.len < at);
        let seg = self
            .segments
            .get(first_end)
            .filter(|s| s.text_start < at && at <= s.text_start + s.len);
        match seg {
            Some(s) => s.source_start + (at - s.text_start),
            None => self.source_offset(at),
        }
    }

    /// The source span of the joined-text range `start..end`.
    pub fn source_span(&self, start: usize, end: usize) -> Span {
        let s = self.source_offset(start);
        if end <= start {
            return Span::empty(s);
        }
        Span::new(s, self.source_end_offset(end).max(s))
    }
}

/// Reads a Dockerfile line by line. Directives are read by [`Lexer::new`].
pub(crate) struct Lexer<'a> {
    source: &'a str,
    pos: usize,
    next_line: u32,
    escape: char,
}

impl<'a> Lexer<'a> {
    /// Starts a lexer and reads the parser directives at the top of `source`. Errors in
    /// directives go to `diagnostics`; the escape token falls back to `\` on error.
    pub fn new(source: &'a str, diagnostics: &mut Diagnostics) -> (Self, Directives) {
        let pos = if source.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        let mut lexer = Lexer {
            source,
            pos,
            next_line: 1,
            escape: DEFAULT_ESCAPE,
        };
        let directives = lexer.read_directives(diagnostics);
        (lexer, directives)
    }

    pub fn escape(&self) -> char {
        self.escape
    }

    fn peek_physical(&self) -> Option<PhysicalLine> {
        if self.pos >= self.source.len() {
            return None;
        }
        let rest = &self.source[self.pos..];
        let raw_end = rest.find('\n').map_or(self.source.len(), |i| self.pos + i);
        let mut end = raw_end;
        while end > self.pos && self.source.as_bytes()[end - 1] == b'\r' {
            end -= 1;
        }
        Some(PhysicalLine {
            start: self.pos,
            end,
            raw_end,
            number: self.next_line,
        })
    }

    fn next_physical(&mut self) -> Option<PhysicalLine> {
        let line = self.peek_physical()?;
        self.pos = if line.raw_end < self.source.len() {
            line.raw_end + 1
        } else {
            self.source.len()
        };
        self.next_line += 1;
        Some(line)
    }

    fn read_directives(&mut self, diagnostics: &mut Diagnostics) -> Directives {
        let mut directives = Directives::default();
        while let Some(line) = self.peek_physical() {
            let raw = &self.source[line.start..line.end];
            let lead = raw.len() - raw.trim_start().len();
            let Some(found) = parse_directive(raw.trim_start(), line.start + lead) else {
                break;
            };
            self.next_physical();
            let span = Span::new(line.start + lead, line.end);
            let slot = match found.name.as_str() {
                "syntax" => &mut directives.syntax,
                "escape" => &mut directives.escape,
                _ => &mut directives.check,
            };
            if slot.is_some() {
                diagnostics.push(
                    Diagnostic::error(
                        Code::DuplicateDirective,
                        span,
                        format!("only one `{}` parser directive can be used", found.name),
                    )
                    .with_label("repeated here"),
                );
                continue;
            }
            if found.name == "escape" {
                match found.value.as_str() {
                    "\\" => self.escape = '\\',
                    "`" => self.escape = '`',
                    other => diagnostics.push(
                        Diagnostic::error(
                            Code::InvalidDirective,
                            found.value_span,
                            format!("invalid escape token `{other}`"),
                        )
                        .with_label("must be ` or \\"),
                    ),
                }
            }
            *slot = Some(Directive {
                value: found.value,
                span,
                value_span: found.value_span,
            });
        }
        directives
    }

    /// The next instruction's joined text, or `None` at the end of the file.
    pub fn next_logical(&mut self) -> Option<LogicalLine> {
        let first = loop {
            let line = self.next_physical()?;
            let trimmed = self.source[line.start..line.end].trim_start();
            if !trimmed.is_empty() && !trimmed.starts_with('#') {
                break line;
            }
        };
        let raw = &self.source[first.start..first.end];
        let lead = raw.len() - raw.trim_start().len();
        let text = &raw[lead..];
        let mut logical = LogicalLine {
            text: String::new(),
            segments: Vec::new(),
            last_empty: None,
            span: Span::new(first.start + lead, first.end),
            start_line: first.number,
            end_line: first.number,
            has_empty_continuation: false,
        };
        let (cut, mut continues) = continuation(text, self.escape);
        logical.push(first.start + lead, &text[..cut]);

        while continues {
            let Some(line) = self.next_physical() else {
                break;
            };
            logical.end_line = line.number;
            let raw = &self.source[line.start..line.end];
            let trimmed = raw.trim_start();
            if trimmed.starts_with('#') {
                continue;
            }
            if trimmed.is_empty() {
                logical.has_empty_continuation = true;
                continue;
            }
            let (cut, more) = continuation(raw, self.escape);
            logical.push(line.start, &raw[..cut]);
            logical.span.end = line.end;
            continues = more;
        }
        Some(logical)
    }

    /// Reads one heredoc body up to its terminator line. Body lines are raw: no
    /// continuation, comments or directives; a `\r` before `\n` is kept in the content.
    /// With `chomp`, leading tabs are ignored when looking for the terminator.
    pub fn read_heredoc(&mut self, name: &str, chomp: bool) -> Result<HeredocBody, HeredocEof> {
        let start = self.pos;
        let mut content = String::new();
        while let Some(line) = self.next_physical() {
            let mut candidate = &self.source[line.start..line.end];
            if chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == name {
                return Ok(HeredocBody {
                    content,
                    span: Span::new(start, line.start),
                    terminator: Span::new(line.start, line.end),
                    end_line: line.number,
                });
            }
            content.push_str(&self.source[line.start..line.raw_end]);
            content.push('\n');
        }
        Err(HeredocEof {
            end_line: self.next_line.saturating_sub(1),
        })
    }
}

/// A heredoc body as read from the file.
#[derive(Clone, Debug)]
pub(crate) struct HeredocBody {
    pub content: String,
    /// The body lines, without the terminator.
    pub span: Span,
    pub terminator: Span,
    pub end_line: u32,
}

/// The file ended before a heredoc's terminator line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeredocEof {
    pub end_line: u32,
}

struct FoundDirective {
    name: String,
    value: String,
    value_span: Span,
}

/// Matches `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` with a known name.
/// `offset` is the source offset of `line`.
fn parse_directive(line: &str, offset: usize) -> Option<FoundDirective> {
    let is_space = |c: char| matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ');
    let rest = line.strip_prefix('#')?.trim_start_matches(is_space);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let name = rest[..name_len].to_ascii_lowercase();
    if !matches!(name.as_str(), "syntax" | "escape" | "check") {
        return None;
    }
    let after = rest[name_len..].trim_start_matches(is_space);
    let value_part = after.strip_prefix('=')?.trim_start_matches(is_space);
    let value = value_part.trim_end_matches(is_space);
    if value.is_empty() {
        return None;
    }
    let value_start = offset + (line.len() - value_part.len());
    Some(FoundDirective {
        name,
        value: value.to_owned(),
        value_span: Span::new(value_start, value_start + value.len()),
    })
}

/// Where to cut `line` and whether it continues: it does when, ignoring trailing spaces
/// and tabs, it ends with the escape token not preceded by another escape token
/// (BuildKit's `([^E])E[ \t]*$|^E[ \t]*$`). Only the token and what follows are cut.
pub(crate) fn continuation(line: &str, escape: char) -> (usize, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape)
        && (before.is_empty() || !before.ends_with(escape))
    {
        return (before.len(), true);
    }
    (line.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(src: &str) -> Vec<String> {
        let mut diags = Diagnostics::new();
        let (mut lexer, _) = Lexer::new(src, &mut diags);
        assert!(diags.is_empty(), "{diags}");
        std::iter::from_fn(|| lexer.next_logical())
            .map(|l| l.text)
            .collect()
    }

    #[test]
    fn continuation_rules() {
        assert_eq!(continuation("RUN a \\", '\\'), (6, true));
        assert_eq!(continuation("a \\\\", '\\'), (4, false));
        assert_eq!(continuation("echo \\\\\\", '\\'), (8, false));
        assert_eq!(continuation("\\  \t", '\\'), (0, true));
        assert_eq!(continuation("c:\\x\\", '`'), (5, false));
    }

    #[test]
    fn joins_and_skips_comments_and_blanks() {
        let src = "# c\n  RUN a \\\n  b \\\n# inside\n\n   \n c\nCMD x\r\n";
        assert_eq!(lines(src), ["RUN a   b  c", "CMD x"]);
    }

    #[test]
    fn maps_spans_back_through_continuations() {
        let src = "RUN ab \\\n  cd\n";
        let mut diags = Diagnostics::new();
        let (mut lexer, _) = Lexer::new(src, &mut diags);
        let line = lexer.next_logical().unwrap();
        let at = line.text.find("cd").unwrap();
        assert_eq!(line.source_span(at, at + 2).text(src), "cd");
        assert_eq!(line.source_span(4, at + 2).text(src), "ab \\\n  cd");
        assert_eq!((line.start_line, line.end_line), (1, 2));
    }

    #[test]
    fn directives() {
        let src = "\u{feff}# syntax = docker/dockerfile:1\n#ESCAPE=`\nRUN a `\n b\n# escape=\\\n";
        let mut diags = Diagnostics::new();
        let (mut lexer, d) = Lexer::new(src, &mut diags);
        assert!(diags.is_empty());
        assert_eq!(d.syntax.unwrap().value, "docker/dockerfile:1");
        assert_eq!(lexer.escape(), '`');
        assert_eq!(lexer.next_logical().unwrap().text, "RUN a  b");
        assert!(lexer.next_logical().is_none());
    }

    #[test]
    fn directive_errors() {
        let mut diags = Diagnostics::new();
        let _ = Lexer::new("# escape=x\n# escape=`\nFROM a", &mut diags);
        let codes: Vec<_> = diags.iter().map(|d| d.code).collect();
        assert_eq!(codes, [Code::InvalidDirective, Code::DuplicateDirective]);
    }

    #[test]
    fn heredoc_body() {
        let src = "RUN <<EOF\nline\r\n\tEOF\nCMD x";
        let mut diags = Diagnostics::new();
        let (mut lexer, _) = Lexer::new(src, &mut diags);
        lexer.next_logical().unwrap();
        let body = lexer.read_heredoc("EOF", true).unwrap();
        assert_eq!(body.content, "line\r\n");
        assert_eq!(body.end_line, 3);
        assert_eq!(lexer.next_logical().unwrap().text, "CMD x");
        assert!(lexer.read_heredoc("EOF", false).is_err());
    }
}
