//! Typed instructions: each syntax node checked and turned into a value with meaning.
//!
//! Responsible for: recognising keywords case-insensitively (unknown ones are errors
//! with "did you mean"), checking flags and argument counts, and building one typed
//! value per instruction with the spans of its parts. Words that BuildKit expands with
//! `ENV`/`ARG` values are kept as unexpanded [`Word`]s.
//! Not responsible for: stages, `ARG` scoping or expansion (`plan`), or running anything.
//!
//! One file per instruction family: `from`, `command` (RUN, CMD, ENTRYPOINT, SHELL),
//! `copy` (COPY, ADD), `env` (ENV, LABEL, ARG), `simple` (MAINTAINER, EXPOSE, USER,
//! WORKDIR, STOPSIGNAL, VOLUME), `healthcheck`, `onbuild`.

mod command;
mod copy;
mod env;
pub(crate) mod flags;
mod from;
mod healthcheck;
pub mod mount;
mod onbuild;
mod simple;

use serde::Serialize;

pub use command::{CmdCommand, CommandLine, EntrypointCommand, RunCommand, ShellCommand};
pub use copy::{AddCommand, CopyCommand, SourceContent};
pub use env::{ArgCommand, ArgDecl, EnvCommand, KeyValue, LabelCommand};
pub use flags::Flag;
pub use from::{FromCommand, StageName, StageNameError};
pub use healthcheck::{HealthcheckCommand, HealthcheckTest};
pub use onbuild::OnbuildCommand;
pub use simple::{
    ExposeCommand, MaintainerCommand, StopSignalCommand, UserCommand, VolumeCommand, WorkdirCommand,
};

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::span::{LineIndex, Location, Span};
use crate::suggest;
use crate::syntax::Node;

/// Every Dockerfile instruction keyword, as BuildKit spells it in messages.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// One instruction of the Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// Where the instruction is, heredoc bodies included.
    pub location: Location,
    pub keyword_span: Span,
    /// The instruction text with continuation lines joined (what BuildKit records as
    /// the history entry's `created_by`).
    pub original: String,
    pub kind: InstructionKind,
}

/// The typed content of an instruction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum InstructionKind {
    From(FromCommand),
    Run(RunCommand),
    Cmd(CmdCommand),
    Entrypoint(EntrypointCommand),
    Shell(ShellCommand),
    Label(LabelCommand),
    Maintainer(MaintainerCommand),
    Expose(ExposeCommand),
    Env(EnvCommand),
    Add(AddCommand),
    Copy(CopyCommand),
    Volume(VolumeCommand),
    User(UserCommand),
    Workdir(WorkdirCommand),
    Arg(ArgCommand),
    Onbuild(OnbuildCommand),
    StopSignal(StopSignalCommand),
    Healthcheck(HealthcheckCommand),
}

impl InstructionKind {
    /// The keyword in upper case (`COPY`).
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::From(_) => "FROM",
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Add(_) => "ADD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
        }
    }
}

/// What the typed builders get: the node plus the file's context.
pub(crate) struct Ctx<'a> {
    pub node: &'a Node,
    /// The line starts of the whole source, to locate instructions.
    pub lines: &'a LineIndex<'a>,
    pub escape: char,
    /// Upper-case keyword, for messages.
    pub name: &'static str,
}

impl Ctx<'_> {
    /// "X requires ..." at the arguments (or just after the keyword if there are none).
    pub fn arg_count_error(&self, requirement: &str) -> Diagnostic {
        let span = if self.node.args_span.is_empty() {
            self.node.keyword_span
        } else {
            self.node.args_span
        };
        Diagnostic::error(
            Code::WrongArgumentCount,
            span,
            format!("{} requires {requirement}", self.name),
        )
    }
}

/// Turns a syntax node into a typed instruction; problems go to `diags`. `lines` indexes
/// the source the node was parsed from (one index for the whole file, so locating every
/// instruction costs about constant time each).
pub(crate) fn from_node(
    node: &Node,
    lines: &LineIndex<'_>,
    escape: char,
    diags: &mut Diagnostics,
) -> Option<Instruction> {
    let upper = node.keyword.to_ascii_uppercase();
    let Some(&name) = KEYWORDS.iter().find(|k| **k == upper) else {
        diags.push(unknown_instruction(node));
        return None;
    };
    let ctx = Ctx {
        node,
        lines,
        escape,
        name,
    };
    let errors_before = diags.len();
    let kind = match name {
        "FROM" => from::parse(&ctx, diags).map(InstructionKind::From),
        "RUN" => command::parse_run(&ctx, diags).map(InstructionKind::Run),
        "CMD" => command::parse_cmd(&ctx, diags).map(InstructionKind::Cmd),
        "ENTRYPOINT" => command::parse_entrypoint(&ctx, diags).map(InstructionKind::Entrypoint),
        "SHELL" => command::parse_shell(&ctx, diags).map(InstructionKind::Shell),
        "LABEL" => env::parse_label(&ctx, diags).map(InstructionKind::Label),
        "ENV" => env::parse_env(&ctx, diags).map(InstructionKind::Env),
        "ARG" => env::parse_arg(&ctx, diags).map(InstructionKind::Arg),
        "ADD" => copy::parse_add(&ctx, diags).map(InstructionKind::Add),
        "COPY" => copy::parse_copy(&ctx, diags).map(InstructionKind::Copy),
        "MAINTAINER" => simple::parse_maintainer(&ctx, diags).map(InstructionKind::Maintainer),
        "EXPOSE" => simple::parse_expose(&ctx, diags).map(InstructionKind::Expose),
        "USER" => simple::parse_user(&ctx, diags).map(InstructionKind::User),
        "WORKDIR" => simple::parse_workdir(&ctx, diags).map(InstructionKind::Workdir),
        "STOPSIGNAL" => simple::parse_stopsignal(&ctx, diags).map(InstructionKind::StopSignal),
        "VOLUME" => simple::parse_volume(&ctx, diags).map(InstructionKind::Volume),
        "HEALTHCHECK" => healthcheck::parse(&ctx, diags).map(InstructionKind::Healthcheck),
        "ONBUILD" => onbuild::parse(&ctx, diags).map(InstructionKind::Onbuild),
        _ => None,
    };
    if diags.len() > errors_before {
        return None;
    }
    Some(Instruction {
        location: lines.location(node.span),
        keyword_span: node.keyword_span,
        original: node.original.clone(),
        kind: kind?,
    })
}

fn unknown_instruction(node: &Node) -> Diagnostic {
    let span = if node.keyword_span.is_empty() {
        node.span
    } else {
        node.keyword_span
    };
    let d = Diagnostic::error(
        Code::UnknownInstruction,
        span,
        format!("unknown instruction `{}`", node.keyword),
    )
    .with_label("not a Dockerfile instruction");
    match suggest::closest(&node.keyword, KEYWORDS.iter().copied()) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d,
    }
}
