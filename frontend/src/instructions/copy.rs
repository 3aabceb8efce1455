//! `COPY` and `ADD`: sources, destination, flags and heredoc (inline) sources.
//!
//! Responsible for: splitting arguments into sources and destination (JSON or split
//! form), checking the flags each instruction takes, and turning heredoc sources into
//! inline file contents as BuildKit does.
//! Not responsible for: resolving `--from` to a stage (`plan`), expanding words, or
//! reading the build context.

use serde::Serialize;

use super::Ctx;
use super::flags::{FlagKind, Flags};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::heredoc::{Heredoc, parse_marker};
use crate::span::Span;
use crate::word::Word;

/// A source given inline as a heredoc: a file named `path` containing `data`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceContent {
    /// The heredoc name, used as the file name.
    pub path: String,
    /// The body, chomped for `<<-`.
    pub data: String,
    /// Whether `$VAR`s in `data` are expanded (the name was not quoted).
    pub expand: bool,
    /// The `<<NAME` argument.
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CopyCommand {
    /// Paths in the context (or in `--from`), unexpanded; heredoc sources are in
    /// `contents` instead.
    pub sources: Vec<Word>,
    pub contents: Vec<SourceContent>,
    pub dest: Word,
    /// `--from`: a stage name or index, or an image; unexpanded.
    pub from: Option<Word>,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<Word>,
    /// The arguments were in JSON form.
    pub json: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AddCommand {
    /// Paths in the context or URLs, unexpanded.
    pub sources: Vec<Word>,
    pub contents: Vec<SourceContent>,
    pub dest: Word,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    pub link: bool,
    pub exclude: Vec<Word>,
    pub keep_git_dir: bool,
    pub checksum: Option<Word>,
    /// `--unpack`: `None` means the default (unpack local archives only).
    pub unpack: Option<bool>,
    pub json: bool,
}

const COPY_FLAGS: &[(&str, FlagKind)] = &[
    ("from", FlagKind::String),
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("parents", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
];

const ADD_FLAGS: &[(&str, FlagKind)] = &[
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
    ("keep-git-dir", FlagKind::Bool),
    ("checksum", FlagKind::String),
    ("unpack", FlagKind::Bool),
];

struct SourcesAndDest {
    sources: Vec<Word>,
    contents: Vec<SourceContent>,
    dest: Word,
}

/// BuildKit's `parseSourcesAndDest`: the last argument is the destination; a source
/// that is a heredoc marker becomes inline content.
fn sources_and_dest(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<SourcesAndDest> {
    let args = &ctx.node.args;
    let Some((dest, sources)) = args.split_last().filter(|(_, s)| !s.is_empty()) else {
        diags.push(
            ctx.arg_count_error("at least two arguments: a source and a destination")
                .with_help(format!("write `{} <src>... <dest>`", ctx.name)),
        );
        return None;
    };
    let heredocs_allowed = !ctx.node.json;
    if heredocs_allowed && parse_marker(&dest.text).is_some() {
        diags.push(
            Diagnostic::error(
                Code::InvalidHeredoc,
                dest.span,
                format!("{} cannot use a heredoc as a destination", ctx.name),
            )
            .with_label("the destination must be a path"),
        );
        return None;
    }
    let mut out = SourcesAndDest {
        sources: Vec::new(),
        contents: Vec::new(),
        dest: Word::new(&dest.text, dest.span, ctx.escape),
    };
    for src in sources {
        let marker = heredocs_allowed.then(|| parse_marker(&src.text)).flatten();
        match marker {
            Some(marker) => {
                let body = ctx.node.heredocs.iter().find(|h| h.name == marker.name);
                out.contents.push(SourceContent {
                    path: marker.name,
                    data: body.map(Heredoc::chomped_content).unwrap_or_default(),
                    expand: marker.expand,
                    span: src.span,
                });
            }
            None => out.sources.push(Word::new(&src.text, src.span, ctx.escape)),
        }
    }
    Some(out)
}

pub(super) fn parse_copy(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<CopyCommand> {
    let flags = Flags::parse(ctx, COPY_FLAGS, diags);
    let sd = sources_and_dest(ctx, diags)?;
    Some(CopyCommand {
        sources: sd.sources,
        contents: sd.contents,
        dest: sd.dest,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        parents: flags.bool("parents").unwrap_or(false),
        exclude: flags.strings("exclude"),
        json: ctx.node.json,
    })
}

pub(super) fn parse_add(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<AddCommand> {
    let flags = Flags::parse(ctx, ADD_FLAGS, diags);
    let sd = sources_and_dest(ctx, diags)?;
    Some(AddCommand {
        sources: sd.sources,
        contents: sd.contents,
        dest: sd.dest,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        exclude: flags.strings("exclude"),
        keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
        checksum: flags.string("checksum"),
        unpack: flags.bool("unpack"),
        json: ctx.node.json,
    })
}
