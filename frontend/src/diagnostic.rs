//! Diagnostics about Dockerfile text: what went wrong, where, and how to fix it.
//!
//! Responsible for: the [`Diagnostic`] value (stable [`Code`], [`Severity`], message,
//! span, label, help), the [`Diagnostics`] collection that carries several of them out
//! of one run, and the two renderings — the multi-line snippet with an underline
//! ([`Diagnostics::render`]) and the single line ([`Diagnostic::one_line`]).
//! Not responsible for: deciding what is an error (the lexer, parser and planner do),
//! colour, or writing anywhere (the CLI prints the returned strings).
//!
//! # Codes
//!
//! | range | area |
//! | --- | --- |
//! | `F01xx` | parsing: directives, lines, instructions, flags, arguments |
//! | `F02xx` | planning: stages, targets, global `ARG` expansion |
//! | `F03xx` | warnings that do not stop a build |
//! | `F04xx` | `.dockerignore` files |
//! | rule name | build checks (`warning[FromAsCasing]`), see [`crate::checks`] |
//!
//! A code is never reused for a different meaning; see [`Code`] for the list.

use std::fmt;

use serde::Serialize;

use crate::checks::Rule;
use crate::span::{LineIndex, Span, line_bounds, line_column};

/// Stable identifier of a kind of diagnostic, rendered as `F0104`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub enum Code {
    /// F0101: the keyword is not a Dockerfile instruction.
    UnknownInstruction,
    /// F0102: a parser directive has an invalid value (`# escape=x`).
    InvalidDirective,
    /// F0103: a parser directive appears twice.
    DuplicateDirective,
    /// F0104: a `--flag` the instruction does not take.
    UnknownFlag,
    /// F0105: too few or too many arguments.
    WrongArgumentCount,
    /// F0106: a JSON array whose elements are not all strings.
    InvalidJson,
    /// F0107: malformed `key=value` pairs in `ENV`/`LABEL`.
    InvalidKeyValue,
    /// F0108: the file contains no instructions.
    EmptyDockerfile,
    /// F0109: a flag without its value, with a bad value, or given twice.
    InvalidFlagValue,
    /// F0110: heredoc errors (unterminated body, heredoc where none is allowed).
    InvalidHeredoc,
    /// F0111: malformed `FROM`.
    InvalidFrom,
    /// F0112: malformed `ARG`.
    InvalidArg,
    /// F0113: malformed `HEALTHCHECK`.
    InvalidHealthcheck,
    /// F0114: malformed `ONBUILD` trigger.
    InvalidOnbuild,
    /// F0115: an instruction that requires the JSON (exec) form got the shell form.
    JsonFormRequired,
    /// F0116: a stage name that is not a valid name.
    InvalidStageName,
    /// F0117: a malformed `# check=` directive or `BUILDKIT_DOCKERFILE_CHECK` value.
    InvalidCheckOption,
    /// F0118: a `RUN --mount` value that is not a valid mount specification.
    InvalidMount,
    /// F0201: no `FROM`, or an instruction other than `ARG` before the first `FROM`.
    NoStage,
    /// F0202: two stages with the same name.
    DuplicateStageName,
    /// F0203: `--target` names no stage.
    UnknownTarget,
    /// F0204: a stage index that does not exist (`COPY --from=7`).
    UndefinedStage,
    /// F0205: stages that depend on each other in a cycle.
    StageCycle,
    /// F0206: a word that could not be expanded (`${V:?unset}`, unterminated quote).
    ExpansionFailed,
    /// F0207: a base image name that is empty after `ARG` expansion.
    EmptyBaseName,
    /// F0301: an empty line inside a continued instruction, as BuildKit's parser
    /// reports it (in `Dockerfile::warnings`). Users see it through the checks, as
    /// [`Rule::NoEmptyContinuation`] with the same span.
    EmptyContinuationLine,
    /// F0401: a `.dockerignore` line that is not a valid pattern (`[`, a bare `!`).
    InvalidIgnorePattern,
    /// A build check finding, rendered with the rule's name (`FromAsCasing`).
    Check(Rule),
}

impl Code {
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::UnknownInstruction => "F0101",
            Code::InvalidDirective => "F0102",
            Code::DuplicateDirective => "F0103",
            Code::UnknownFlag => "F0104",
            Code::WrongArgumentCount => "F0105",
            Code::InvalidJson => "F0106",
            Code::InvalidKeyValue => "F0107",
            Code::EmptyDockerfile => "F0108",
            Code::InvalidFlagValue => "F0109",
            Code::InvalidHeredoc => "F0110",
            Code::InvalidFrom => "F0111",
            Code::InvalidArg => "F0112",
            Code::InvalidHealthcheck => "F0113",
            Code::InvalidOnbuild => "F0114",
            Code::JsonFormRequired => "F0115",
            Code::InvalidStageName => "F0116",
            Code::InvalidCheckOption => "F0117",
            Code::InvalidMount => "F0118",
            Code::NoStage => "F0201",
            Code::DuplicateStageName => "F0202",
            Code::UnknownTarget => "F0203",
            Code::UndefinedStage => "F0204",
            Code::StageCycle => "F0205",
            Code::ExpansionFailed => "F0206",
            Code::EmptyBaseName => "F0207",
            Code::EmptyContinuationLine => "F0301",
            Code::InvalidIgnorePattern => "F0401",
            Code::Check(rule) => rule.name(),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem found in a Dockerfile, pointing at the exact text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    /// Lowercase, no trailing period: `unknown flag `--chmodd` for COPY`.
    pub message: String,
    pub span: Span,
    /// Short text printed under the underline.
    pub label: Option<String>,
    /// A suggestion, printed as `= help: ...`.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: Severity::Error,
            message: message.into(),
            span,
            label: None,
            help: None,
        }
    }

    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, span, message)
        }
    }

    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// `Dockerfile:7:6: unknown flag `--chmodd` for COPY`, for tools that want one line.
    pub fn one_line(&self, file_name: &str, source: &str) -> String {
        let (line, column) = line_column(source, self.span.start);
        format!("{file_name}:{line}:{column}: {}", self.message)
    }

    /// The multi-line rendering of this one diagnostic (see [`Diagnostics::render`]).
    /// To render many diagnostics of one source, use [`Diagnostic::render_indexed`]
    /// (or [`Diagnostics::render`]), which do not rescan the source for each.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let header = format!("{}[{}]", self.severity.as_str(), self.code);
        render_snippet(
            &header,
            &self.message,
            file_name,
            source,
            self.span,
            self.label.as_deref(),
            self.help.as_deref(),
        )
    }

    /// [`Diagnostic::render`] with the line starts of the source already indexed.
    pub fn render_indexed(&self, file_name: &str, lines: &LineIndex<'_>) -> String {
        let header = format!("{}[{}]", self.severity.as_str(), self.code);
        Snippet {
            header: &header,
            message: &self.message,
            file_name,
            source: lines.source(),
            span: self.span,
            label: self.label.as_deref(),
            help: self.help.as_deref(),
        }
        .render(
            lines.line_column(self.span.start),
            lines.line_bounds(self.span.start),
        )
    }
}

/// Renders `header: message`, the `--> file:line:col` line, the source line with `span`
/// underlined (and `label` after the carets) and an optional `= help:` line. Diagnostics use
/// it, and so does the engine for failures of a step at a known location, so both look alike.
pub fn render_snippet(
    header: &str,
    message: &str,
    file_name: &str,
    source: &str,
    span: Span,
    label: Option<&str>,
    help: Option<&str>,
) -> String {
    Snippet {
        header,
        message,
        file_name,
        source,
        span,
        label,
        help,
    }
    .render(
        line_column(source, span.start),
        line_bounds(source, span.start),
    )
}

/// The parts of a [`render_snippet`] rendering.
struct Snippet<'a> {
    header: &'a str,
    message: &'a str,
    file_name: &'a str,
    source: &'a str,
    span: Span,
    label: Option<&'a str>,
    help: Option<&'a str>,
}

impl Snippet<'_> {
    /// Renders with the span's start at 1-based `(line, column)`, on the line `bounds`.
    fn render(self, (line, column): (u32, u32), bounds: Span) -> String {
        let Snippet {
            header,
            message,
            file_name,
            source,
            span,
            label,
            help,
        } = self;
        let text = bounds.text(source);
        let width = line.to_string().len();
        let arrow_pad = " ".repeat(width + 1);
        let gutter = " ".repeat(width + 2);

        // Underline from the span start to its end or the end of the line, at least one
        // character. Tabs before the span are copied so the carets line up in terminals.
        let start = span.start.clamp(bounds.start, bounds.end);
        let end = span.end.clamp(start, bounds.end);
        let indent: String = source[bounds.start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let carets = "^".repeat(source[start..end].chars().count().max(1));

        let mut out = format!(
            "{header}: {message}\n{arrow_pad}--> {file_name}:{line}:{column}\n{gutter}|\n {line} | {text}\n{gutter}| {indent}{carets}"
        );
        if let Some(label) = label {
            out.push(' ');
            out.push_str(label);
        }
        out.push('\n');
        if let Some(help) = help {
            out.push_str(&format!("{gutter}= help: {help}\n"));
        }
        out
    }
}

/// Several diagnostics from one run, in the order they were found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.0
    }

    /// Every diagnostic rendered as a snippet, separated by blank lines:
    ///
    /// ```text
    /// error[F0104]: unknown flag `--chmodd` for COPY
    ///   --> Dockerfile:7:6
    ///    |
    ///  7 | COPY --chmodd=755 app /usr/local/bin/
    ///    |      ^^^^^^^^ not a COPY flag
    ///    = help: did you mean `--chmod`?
    /// ```
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let lines = LineIndex::new(source);
        self.0
            .iter()
            .map(|d| d.render_indexed(file_name, &lines))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Splits off the warnings, leaving only errors in `self`.
    pub(crate) fn take_warnings(&mut self) -> Diagnostics {
        let (warnings, errors) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|d| d.severity == Severity::Warning);
        self.0 = errors;
        Diagnostics(warnings)
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(diagnostic: Diagnostic) -> Self {
        Diagnostics(vec![diagnostic])
    }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<I: IntoIterator<Item = Diagnostic>>(iter: I) -> Self {
        Diagnostics(iter.into_iter().collect())
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    /// Without the source at hand: the messages, one per line, with their codes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}[{}]: {}", d.severity.as_str(), d.code, d.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "FROM alpine\n\n\n\n\n\nCOPY --chmodd=755 app /usr/local/bin/\n";

    fn chmodd() -> Diagnostic {
        let start = SRC.find("--chmodd").unwrap();
        Diagnostic::error(
            Code::UnknownFlag,
            Span::new(start, start + 8),
            "unknown flag `--chmodd` for COPY",
        )
        .with_label("not a COPY flag")
        .with_help("did you mean `--chmod`?")
    }

    #[test]
    fn renders_the_style_guide_example() {
        let expected = "\
error[F0104]: unknown flag `--chmodd` for COPY
  --> Dockerfile:7:6
   |
 7 | COPY --chmodd=755 app /usr/local/bin/
   |      ^^^^^^^^ not a COPY flag
   = help: did you mean `--chmod`?
";
        assert_eq!(
            Diagnostics::from(chmodd()).render("Dockerfile", SRC),
            expected
        );
    }

    #[test]
    fn indexed_rendering_is_the_same() {
        let src = "\u{feff}FROM a\r\n\tRUN é x\n";
        let at = src.find('x').unwrap();
        let d = Diagnostic::error(Code::NoStage, Span::new(at, at + 1), "m").with_label("l");
        let lines = LineIndex::new(src);
        assert_eq!(d.render_indexed("D", &lines), d.render("D", src));
        assert!(d.render("D", src).contains("--> D:2:8\n"));
    }

    #[test]
    fn one_line_form() {
        assert_eq!(
            chmodd().one_line("Dockerfile", SRC),
            "Dockerfile:7:6: unknown flag `--chmodd` for COPY"
        );
    }

    #[test]
    fn wide_gutter_and_no_label() {
        let src = format!("{}RUN x\n", "\n".repeat(11));
        let at = src.find("RUN").unwrap();
        let d = Diagnostic::error(Code::NoStage, Span::new(at, at + 3), "no stage");
        let expected = "\
error[F0201]: no stage
   --> Dockerfile:12:1
    |
 12 | RUN x
    | ^^^
";
        assert_eq!(d.render("Dockerfile", &src), expected);
    }

    #[test]
    fn empty_span_at_end_of_line_gets_one_caret_and_tabs_align() {
        let src = "\tENV\r\n";
        let d = Diagnostic::error(Code::WrongArgumentCount, Span::empty(4), "x");
        assert!(d.render("D", src).contains(" 1 | \tENV\n   | \t   ^\n"));
    }
}
