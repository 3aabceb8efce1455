//! Instructions with one or a few plain words: `MAINTAINER`, `EXPOSE`, `USER`,
//! `WORKDIR`, `STOPSIGNAL`, `VOLUME`.
//!
//! Responsible for: argument counts and keeping the words (unexpanded, except
//! `MAINTAINER`, which BuildKit never expands).
//! Not responsible for: validating ports, users, paths or signals — those are only
//! known after expansion, in the engine.

use serde::Serialize;

use super::Ctx;
use super::flags::Flags;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::span::Span;
use crate::word::Word;

/// `MAINTAINER` (deprecated): the text as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MaintainerCommand {
    pub name: String,
    pub span: Span,
}

/// `EXPOSE`: each word may expand to several ports (`EXPOSE $PORTS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExposeCommand {
    pub ports: Vec<Word>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserCommand {
    pub user: Word,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkdirCommand {
    pub path: Word,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StopSignalCommand {
    pub signal: Word,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeCommand {
    pub paths: Vec<Word>,
    pub json: bool,
}

/// The single whole-text argument of `USER`, `WORKDIR`, `STOPSIGNAL`, `MAINTAINER`.
fn exactly_one(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<Word> {
    Flags::parse(ctx, &[], diags);
    match ctx.node.args.as_slice() {
        [arg] => Some(Word::new(&arg.text, arg.span, ctx.escape)),
        _ => {
            diags.push(ctx.arg_count_error("exactly one argument"));
            None
        }
    }
}

pub(super) fn parse_maintainer(
    ctx: &Ctx<'_>,
    diags: &mut Diagnostics,
) -> Option<MaintainerCommand> {
    exactly_one(ctx, diags).map(|w| MaintainerCommand {
        name: w.raw().to_owned(),
        span: w.span(),
    })
}

pub(super) fn parse_user(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<UserCommand> {
    exactly_one(ctx, diags).map(|user| UserCommand { user })
}

pub(super) fn parse_workdir(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<WorkdirCommand> {
    exactly_one(ctx, diags).map(|path| WorkdirCommand { path })
}

pub(super) fn parse_stopsignal(
    ctx: &Ctx<'_>,
    diags: &mut Diagnostics,
) -> Option<StopSignalCommand> {
    exactly_one(ctx, diags).map(|signal| StopSignalCommand { signal })
}

pub(super) fn parse_expose(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<ExposeCommand> {
    Flags::parse(ctx, &[], diags);
    if ctx.node.args.is_empty() {
        diags.push(ctx.arg_count_error("at least one argument"));
        return None;
    }
    let ports = ctx
        .node
        .args
        .iter()
        .map(|a| Word::new(&a.text, a.span, ctx.escape))
        .collect();
    Some(ExposeCommand { ports })
}

pub(super) fn parse_volume(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<VolumeCommand> {
    Flags::parse(ctx, &[], diags);
    if ctx.node.args.is_empty() {
        diags.push(ctx.arg_count_error("at least one argument"));
        return None;
    }
    let mut paths = Vec::new();
    for arg in &ctx.node.args {
        if arg.text.trim().is_empty() {
            diags.push(
                Diagnostic::error(
                    Code::WrongArgumentCount,
                    arg.span,
                    "VOLUME specified can not be an empty string",
                )
                .with_label("empty path"),
            );
            continue;
        }
        paths.push(Word::new(&arg.text, arg.span, ctx.escape));
    }
    Some(VolumeCommand {
        paths,
        json: ctx.node.json,
    })
}
