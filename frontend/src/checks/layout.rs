//! The shape of a Dockerfile as the checks see it: global `ARG`s, stages and their
//! bases, and small helpers about how instructions were written.
//!
//! Responsible for: splitting the instructions into the global `ARG`s (before the
//! first `FROM`) and stages, expanding each `FROM` image with the global `ARG`s and
//! resolving it to an earlier stage, `scratch` or an image — without failing, so the
//! checks also run on files that `plan` rejects (e.g. duplicate stage names) — and
//! recovering the text of keywords and stage names as written.
//! Not responsible for: `--target` or pruning (checks cover every stage, like
//! `docker build --check`), or reporting anything.

use std::collections::BTreeMap;

use crate::dockerfile::Dockerfile;
use crate::instructions::{ArgCommand, FromCommand, Instruction, InstructionKind};
use crate::span::Span;

/// The `ARG`s BuildKit defines in the global scope by itself.
pub(super) const AUTOMATIC_ARGS: &[&str] = &[
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

/// The proxy variables BuildKit passes to `RUN` without an `ARG` (see [`crate::args`]).
pub(super) const PROXY_ARGS: &[&str] = &crate::args::PROXY_ARGS;

/// The whole file.
pub(super) struct Layout<'d> {
    /// `ARG` instructions before the first `FROM`.
    pub global_args: Vec<&'d Instruction>,
    /// Global `ARG` values after build-arg overrides (`None`: declared, no value).
    pub globals: BTreeMap<String, Option<String>>,
    pub stages: Vec<StageView<'d>>,
}

/// One stage.
pub(super) struct StageView<'d> {
    pub from_instruction: &'d Instruction,
    pub from: &'d FromCommand,
    pub base: Base,
    /// The instructions after `FROM`, in order.
    pub steps: Vec<&'d Instruction>,
}

/// What a stage starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Base {
    Scratch,
    /// An earlier stage, by position.
    Stage(usize),
    /// An image reference after global-`ARG` expansion.
    Image(String),
    /// The reference could not be expanded.
    Unresolved,
}

impl<'d> Layout<'d> {
    pub(super) fn of(df: &'d Dockerfile, build_args: &BTreeMap<String, String>) -> Self {
        let mut layout = Layout {
            global_args: Vec::new(),
            globals: BTreeMap::new(),
            stages: Vec::new(),
        };
        for instruction in &df.instructions {
            match &instruction.kind {
                InstructionKind::From(from) => {
                    let base = layout.base_of(from);
                    layout.stages.push(StageView {
                        from_instruction: instruction,
                        from,
                        base,
                        steps: Vec::new(),
                    });
                }
                InstructionKind::Arg(arg) if layout.stages.is_empty() => {
                    layout.global_args.push(instruction);
                    layout.add_globals(arg, build_args);
                }
                _ => {
                    if let Some(stage) = layout.stages.last_mut() {
                        stage.steps.push(instruction);
                    }
                }
            }
        }
        layout
    }

    fn add_globals(&mut self, arg: &ArgCommand, build_args: &BTreeMap<String, String>) {
        for decl in &arg.args {
            let value = match (build_args.get(&decl.name), &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => {
                    let lookup = |name: &str| self.global_value(name, build_args);
                    default.expand(&lookup).ok()
                }
                (None, None) => None,
            };
            self.globals.insert(decl.name.clone(), value);
        }
    }

    /// A global's value as BuildKit sees it: declared `ARG`s, then the automatic
    /// platform `ARG`s when the engine passed them as build args.
    pub(super) fn global_value(
        &self,
        name: &str,
        build_args: &BTreeMap<String, String>,
    ) -> Option<String> {
        match self.globals.get(name) {
            Some(value) => value.clone(),
            None if AUTOMATIC_ARGS.contains(&name) => build_args.get(name).cloned(),
            None => None,
        }
    }

    fn base_of(&self, from: &FromCommand) -> Base {
        let lookup = |name: &str| self.globals.get(name).cloned().flatten();
        let Ok(image) = from.image.expand(&lookup) else {
            return Base::Unresolved;
        };
        if image.eq_ignore_ascii_case("scratch") {
            return Base::Scratch;
        }
        let earlier = self
            .stages
            .iter()
            .position(|s| s.from.name.as_ref().is_some_and(|n| n.matches(&image)));
        match earlier {
            Some(i) => Base::Stage(i),
            None => Base::Image(image),
        }
    }
}

/// The keyword as written (`copy`, `COPY`, `Copy`).
pub(super) fn keyword_as_written(instruction: &Instruction) -> &str {
    instruction.original.split_whitespace().next().unwrap_or("")
}

/// Whitespace-separated tokens of the instruction text with their byte offsets.
pub(super) fn tokens(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

/// The source span of `original[offset..offset + len]`, when the instruction is on
/// one line so the text maps one to one onto the source; `None` otherwise.
pub(super) fn span_in_original(
    instruction: &Instruction,
    offset: usize,
    len: usize,
) -> Option<Span> {
    let loc = instruction.location;
    let start = loc.span.start + offset;
    (loc.line == loc.end_line && offset + len <= instruction.original.len())
        .then(|| Span::new(start, start + len))
}

/// Where `$name` / `${name...}` is inside a word, as a source span, if the word's raw
/// text maps one to one onto its span; else the whole word's span.
pub(super) fn variable_span(raw: &str, span: Span, name: &str) -> Span {
    if raw.len() != span.len() {
        return span;
    }
    let is_name_char = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(at) = raw[from..].find('$').map(|i| from + i) {
        from = at + 1;
        let rest = &raw[at + 1..];
        let (braced, body) = match rest.strip_prefix('{') {
            Some(body) => (true, body),
            None => (false, rest),
        };
        let Some(after) = body.strip_prefix(name) else {
            continue;
        };
        if after.starts_with(is_name_char) {
            continue;
        }
        let len = if braced {
            after
                .find('}')
                .map_or(raw.len() - at, |i| 2 + name.len() + i + 1)
        } else {
            1 + name.len()
        };
        return Span::new(span.start + at, span.start + at + len);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_variables_in_words() {
        let raw = "a${HOME}/$H/${H:-x}";
        let span = Span::new(10, 10 + raw.len());
        assert_eq!(variable_span(raw, span, "H"), Span::new(19, 21));
        assert_eq!(variable_span(raw, span, "HOME"), Span::new(11, 18));
        assert_eq!(variable_span(raw, Span::new(0, 3), "H"), Span::new(0, 3));
    }

    #[test]
    fn tokens_keep_offsets() {
        assert_eq!(
            tokens(" FROM  a as\tb"),
            [(1, "FROM"), (7, "a"), (9, "as"), (12, "b")]
        );
    }
}
