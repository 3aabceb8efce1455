//! `ENV`, `LABEL` and `ARG`: name/value declarations.
//!
//! Responsible for: the `k=v` and legacy `k v` forms (split by `syntax`), blank-name
//! checks, and `ARG name[=default]`.
//! Not responsible for: expansion or `ARG` scoping (`plan` and the engine).

use serde::Serialize;

use super::Ctx;
use super::flags::Flags;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::span::Span;
use crate::word::Word;

/// `key=value`; both sides are expanded by BuildKit, so both are words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: Word,
    pub value: Word,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvCommand {
    pub pairs: Vec<KeyValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabelCommand {
    pub pairs: Vec<KeyValue>,
}

/// One name of an `ARG` instruction (`ARG a=1 b` declares two).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub name_span: Span,
    /// The default as written (quotes kept), expanded when the step runs.
    pub default: Option<Word>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArgCommand {
    pub args: Vec<ArgDecl>,
}

fn pairs(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<Vec<KeyValue>> {
    Flags::parse(ctx, &[], diags);
    if ctx.node.args.is_empty() {
        diags.push(
            ctx.arg_count_error("at least one argument")
                .with_help(format!("write `{} <name>=<value>`", ctx.name)),
        );
        return None;
    }
    let mut out = Vec::new();
    for triple in ctx.node.args.chunks(3) {
        let [key, value, _] = triple else { continue };
        if key.text.is_empty() {
            diags.push(
                Diagnostic::error(
                    Code::InvalidKeyValue,
                    key.span.to(value.span),
                    format!("{} names can not be blank", ctx.name),
                )
                .with_label("no name before `=`"),
            );
            continue;
        }
        out.push(KeyValue {
            key: Word::new(&key.text, key.span, ctx.escape),
            value: Word::new(&value.text, value.span, ctx.escape),
            span: key.span.to(value.span),
        });
    }
    Some(out)
}

pub(super) fn parse_env(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<EnvCommand> {
    pairs(ctx, diags).map(|pairs| EnvCommand { pairs })
}

pub(super) fn parse_label(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<LabelCommand> {
    pairs(ctx, diags).map(|pairs| LabelCommand { pairs })
}

pub(super) fn parse_arg(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<ArgCommand> {
    Flags::parse(ctx, &[], diags);
    if ctx.node.args.is_empty() {
        diags.push(
            ctx.arg_count_error("at least one argument")
                .with_help("write `ARG <name>[=<default>]`"),
        );
        return None;
    }
    let mut args = Vec::new();
    for arg in &ctx.node.args {
        let (name, default) = match arg.text.split_once('=') {
            Some((name, value)) => {
                let at = arg.span.start + name.len() + 1;
                let span = Span::new(at.min(arg.span.end), arg.span.end);
                (name, Some(Word::new(value, span, ctx.escape)))
            }
            None => (arg.text.as_str(), None),
        };
        if name.is_empty() {
            diags.push(
                Diagnostic::error(Code::InvalidArg, arg.span, "ARG names can not be blank")
                    .with_label("no name before `=`"),
            );
            continue;
        }
        args.push(ArgDecl {
            name: name.to_owned(),
            name_span: Span::new(
                arg.span.start,
                (arg.span.start + name.len()).min(arg.span.end),
            ),
            default,
        });
    }
    Some(ArgCommand { args })
}
