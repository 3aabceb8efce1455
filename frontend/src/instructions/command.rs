//! `RUN`, `CMD`, `ENTRYPOINT` and `SHELL`: commands in exec (JSON) or shell form.
//!
//! Responsible for: the form of the command, `RUN`'s flags (kept as checked
//! `--name=value` pairs, and typed with [`super::mount`] where their values contain no
//! `$`; problems in those are reported here) and heredocs.
//! Not responsible for: running anything, or the `--mount` syntax itself (`mount`).

use serde::Serialize;

use super::Ctx;
use super::flags::{Flag, FlagKind, Flags};
use super::mount::{
    Mount, NetworkMode, RunMount, SecurityMode, TypedFlag, is_static, static_value,
};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::heredoc::Heredoc;
use crate::span::Span;
use crate::word::Word;

/// A command as written: exec form (`["a", "b"]`, run directly) or shell form (run
/// with the stage's `SHELL`, by default `/bin/sh -c`). Neither is expanded by kiln;
/// the shell does that at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum CommandLine {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunCommand {
    pub command: CommandLine,
    pub command_span: Span,
    /// `--mount`, `--network`, `--security`, checked by name; values unexpanded.
    pub flags: Vec<Flag>,
    /// Each `--mount`, in order, typed when its value has no `$`.
    pub mounts: Vec<RunMount>,
    /// `--network`, typed when its value has no `$`.
    pub network: Option<TypedFlag<NetworkMode>>,
    /// `--security`, typed when its value has no `$`.
    pub security: Option<TypedFlag<SecurityMode>>,
    /// Heredocs in shell form, with their bodies.
    pub heredocs: Vec<Heredoc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CmdCommand {
    pub command: CommandLine,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntrypointCommand {
    pub command: CommandLine,
    pub span: Span,
}

/// `SHELL ["executable", "parameters"]`: JSON form only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShellCommand {
    pub shell: Vec<String>,
    pub span: Span,
}

const RUN_FLAGS: &[(&str, FlagKind)] = &[
    ("mount", FlagKind::Strings),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
];

/// BuildKit's `handleJSONArgs`: JSON elements as they are, or the shell-form text.
fn command_line(ctx: &Ctx<'_>) -> CommandLine {
    if ctx.node.json {
        CommandLine::Exec(ctx.node.args.iter().map(|a| a.text.clone()).collect())
    } else {
        let text: Vec<&str> = ctx.node.args.iter().map(|a| a.text.as_str()).collect();
        CommandLine::Shell(text.join(" "))
    }
}

fn no_flags(ctx: &Ctx<'_>, diags: &mut Diagnostics) {
    Flags::parse(ctx, &[], diags);
}

pub(super) fn parse_run(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<RunCommand> {
    let flags = Flags::parse(ctx, RUN_FLAGS, diags);
    if ctx.node.args.is_empty() && !ctx.node.json {
        diags.push(
            ctx.arg_count_error("at least one argument")
                .with_help("write `RUN <command>` or `RUN [\"executable\", \"arg\"]`"),
        );
        return None;
    }
    let mounts = flags
        .strings("mount")
        .into_iter()
        .map(|raw| {
            typed(raw, diags, |w| {
                Mount::parse_word(w, &|_| None).map_err(|e| e.to_diagnostic(w))
            })
        })
        .collect();
    let network = flags.string("network").map(|raw| {
        typed(raw, diags, |w| {
            NetworkMode::parse(&expanded(w)?).map_err(|e| e.to_diagnostic(w))
        })
    });
    let security = flags.string("security").map(|raw| {
        typed(raw, diags, |w| {
            SecurityMode::parse(&expanded(w)?).map_err(|e| e.to_diagnostic(w))
        })
    });
    Some(RunCommand {
        command: command_line(ctx),
        command_span: ctx.node.args_span,
        flags: flags.into_vec(),
        mounts,
        network,
        security,
        heredocs: ctx.node.heredocs.clone(),
    })
}

/// Reads a flag value with `parse` when it has no `$` (BuildKit expands `RUN` flag
/// values with the stage's variables, which only the engine knows); problems go to
/// `diags`.
fn typed<T>(
    raw: Word,
    diags: &mut Diagnostics,
    parse: impl Fn(&Word) -> Result<T, Diagnostic>,
) -> TypedFlag<T> {
    let parsed = if is_static(&raw) {
        parse(&raw).map_err(|d| diags.push(d)).ok()
    } else {
        None
    };
    TypedFlag { raw, parsed }
}

/// A `$`-free flag value with its quotes and escapes removed.
fn expanded(word: &Word) -> Result<String, Diagnostic> {
    static_value(word)
        .map_err(|e| Diagnostic::error(Code::ExpansionFailed, word.span(), e.to_string()))
}

pub(super) fn parse_cmd(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<CmdCommand> {
    no_flags(ctx, diags);
    Some(CmdCommand {
        command: command_line(ctx),
        span: ctx.node.args_span,
    })
}

pub(super) fn parse_entrypoint(
    ctx: &Ctx<'_>,
    diags: &mut Diagnostics,
) -> Option<EntrypointCommand> {
    no_flags(ctx, diags);
    Some(EntrypointCommand {
        command: command_line(ctx),
        span: ctx.node.args_span,
    })
}

pub(super) fn parse_shell(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<ShellCommand> {
    no_flags(ctx, diags);
    match command_line(ctx) {
        CommandLine::Exec(shell) if !shell.is_empty() => Some(ShellCommand {
            shell,
            span: ctx.node.args_span,
        }),
        CommandLine::Exec(_) => {
            diags.push(ctx.arg_count_error("at least one argument"));
            None
        }
        CommandLine::Shell(_) => {
            diags.push(
                Diagnostic::error(
                    Code::JsonFormRequired,
                    ctx.node.args_span,
                    "SHELL requires the arguments to be in JSON form",
                )
                .with_help("write e.g. `SHELL [\"/bin/bash\", \"-c\"]`"),
            );
            None
        }
    }
}
