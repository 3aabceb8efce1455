//! Checking an instruction's `--flags` against the flags it takes (BuildKit's `BFlags`).
//!
//! Responsible for: unknown flags (with "did you mean"), missing values, boolean values,
//! flags given twice, and handing out typed values with spans.
//! Not responsible for: what a flag's value means (e.g. `--mount` syntax).

use serde::Serialize;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::span::Span;
use crate::suggest;
use crate::syntax::RawFlag;
use crate::word::Word;

use super::Ctx;

/// A `--name[=value]` flag of an instruction, value not yet expanded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub name: String,
    pub value: Option<Word>,
    /// The whole flag as written.
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--link` or `--link=true|false`.
    Bool,
    /// `--from=x`, at most once.
    String,
    /// `--exclude=x`, any number of times.
    Strings,
}

pub(crate) type FlagSpec = (&'static str, FlagKind);

/// The checked flags of one instruction.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    flags: Vec<(FlagKind, Flag)>,
}

impl Flags {
    /// Checks the flags of `ctx`'s node against `specs`; problems go to `diags` and the
    /// flag is dropped.
    pub fn parse(ctx: &Ctx<'_>, specs: &[FlagSpec], diags: &mut Diagnostics) -> Flags {
        let (instruction, escape) = (ctx.name, ctx.escape);
        let source = ctx.lines.source();
        let mut out = Flags::default();
        for flag in &ctx.node.flags {
            let body = flag.text.strip_prefix("--").unwrap_or(&flag.text);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let (name_span, value_span) = part_spans(flag, name, source);
            let Some(&(_, kind)) = specs.iter().find(|(n, _)| *n == name) else {
                diags.push(unknown_flag(instruction, name, name_span, specs));
                continue;
            };
            if kind != FlagKind::Strings && out.flags.iter().any(|(_, f)| f.name == name) {
                diags.push(
                    Diagnostic::error(
                        Code::InvalidFlagValue,
                        flag.span,
                        format!("duplicate flag specified: `--{name}`"),
                    )
                    .with_label("given again here"),
                );
                continue;
            }
            let word = value.map(|v| Word::new(v, value_span, escape));
            match (kind, value) {
                (FlagKind::Bool, Some("")) | (FlagKind::String | FlagKind::Strings, None) => {
                    diags.push(
                        Diagnostic::error(
                            Code::InvalidFlagValue,
                            flag.span,
                            format!("missing a value on flag `--{name}`"),
                        )
                        .with_help(format!("write `--{name}=<value>`")),
                    );
                    continue;
                }
                (FlagKind::Bool, Some(v))
                    if !matches!(v.to_ascii_lowercase().as_str(), "true" | "false") =>
                {
                    diags.push(
                        Diagnostic::error(
                            Code::InvalidFlagValue,
                            value_span,
                            format!("expecting boolean value for flag `--{name}`, not `{v}`"),
                        )
                        .with_help(format!(
                            "write `--{name}`, `--{name}=true` or `--{name}=false`"
                        )),
                    );
                    continue;
                }
                _ => {}
            }
            out.flags.push((
                kind,
                Flag {
                    name: name.to_owned(),
                    value: word,
                    span: flag.span,
                },
            ));
        }
        out
    }

    pub fn into_vec(self) -> Vec<Flag> {
        self.flags.into_iter().map(|(_, f)| f).collect()
    }

    pub fn string(&self, name: &str) -> Option<Word> {
        self.flags
            .iter()
            .find(|(_, f)| f.name == name)
            .and_then(|(_, f)| f.value.clone())
    }

    pub fn strings(&self, name: &str) -> Vec<Word> {
        self.flags
            .iter()
            .filter(|(_, f)| f.name == name)
            .filter_map(|(_, f)| f.value.clone())
            .collect()
    }

    /// `None` when the flag is absent.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.flags
            .iter()
            .find(|(_, f)| f.name == name)
            .map(|(_, f)| {
                f.value
                    .as_ref()
                    .is_none_or(|v| v.raw().eq_ignore_ascii_case("true"))
            })
    }
}

/// "a" or "an" before an upper-case keyword, as it is read aloud (`an ADD flag`).
fn article(keyword: &str) -> &'static str {
    if keyword.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    }
}

fn unknown_flag(instruction: &str, name: &str, span: Span, specs: &[FlagSpec]) -> Diagnostic {
    let d = Diagnostic::error(
        Code::UnknownFlag,
        span,
        format!("unknown flag `--{name}` for {instruction}"),
    )
    .with_label(format!("not {} {instruction} flag", article(instruction)));
    if specs.is_empty() {
        return d.with_help(format!("{instruction} takes no flags"));
    }
    match suggest::closest(name, specs.iter().map(|(n, _)| *n)) {
        Some(s) => d.with_help(format!("did you mean `--{s}`?")),
        None => {
            let all: Vec<String> = specs.iter().map(|(n, _)| format!("`--{n}`")).collect();
            d.with_help(format!("{instruction} takes {}", all.join(", ")))
        }
    }
}

/// The spans of `--name` and of the value after `=` in the source. The flag's text has
/// one level of quotes and escapes removed (and continuation lines joined), so its
/// offsets are those of the source only when the source spells `--name=` literally;
/// otherwise both parts point at the whole flag.
fn part_spans(flag: &RawFlag, name: &str, source: &str) -> (Span, Span) {
    let written = flag.span.text(source);
    let literal = written
        .strip_prefix("--")
        .and_then(|rest| rest.strip_prefix(name));
    match literal {
        Some(rest) => {
            let name_end = flag.span.end - rest.len();
            let value_span = match rest.strip_prefix('=') {
                Some(_) => Span::new(name_end + 1, flag.span.end),
                None => flag.span,
            };
            (Span::new(flag.span.start, name_end), value_span)
        }
        None => (flag.span, flag.span),
    }
}

#[cfg(test)]
mod tests {
    use crate::diagnostic::Code;

    fn flag_diagnostics(src: &str) -> Vec<(Code, &str)> {
        let diags = crate::parse(src).unwrap_err();
        diags
            .iter()
            .filter(|d| matches!(d.code, Code::UnknownFlag | Code::InvalidFlagValue))
            .map(|d| (d.code, d.span.text(src)))
            .collect()
    }

    /// Quotes and escapes are removed from a flag's text, so its parts are located in
    /// the source only where it spells them literally (a fuzzer found a span ending
    /// inside the `♥` of `ONBUILD --"♥`).
    #[test]
    fn part_spans_follow_the_source() {
        assert_eq!(
            flag_diagnostics("FROM a\nCOPY --chmodd=\"♥\" --link=\"é\" x y\n"),
            [
                (Code::UnknownFlag, "--chmodd"),
                (Code::InvalidFlagValue, "\"é\""),
            ]
        );
        assert_eq!(
            flag_diagnostics("FROM a\nCOPY --\"♥\" --li\\nk=x x y\n"),
            [
                (Code::UnknownFlag, "--\"♥\""),
                (Code::InvalidFlagValue, "--li\\nk=x"),
            ]
        );
    }
}
