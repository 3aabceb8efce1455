//! kiln's Dockerfile frontend: Dockerfile text in, [`BuildPlan`] out.
//!
//! The frontend is pure: it takes `&str`, returns `Result<_, Diagnostics>`, does no I/O,
//! reads no environment or clock, and is not async. It keeps going after an error so a
//! run reports as many problems as it can, each pointing at the exact text.
//!
//! # Layers
//!
//! 1. [`lexer`]: byte order mark, line ends, parser directives (`# syntax=`,
//!    `# escape=`, `# check=`), comments, continuation lines, heredoc bodies.
//! 2. [`syntax`]: each instruction as keyword, flags and arguments with spans, exactly
//!    like BuildKit's parser (checked byte for byte against its corpus with
//!    [`syntax::Node::dump`]).
//! 3. [`instructions`]: typed instructions; unknown keywords and flags are errors with
//!    "did you mean". [`parse`] runs layers 1–3.
//! 4. [`plan()`]: stages, global `ARG`s, `--target`, pruning → [`BuildPlan`].
//!
//! [`dump()`] renders layer 2 in the format of BuildKit's parser corpus (one line per
//! instruction), for conformance tests and debugging.
//!
//! [`expand`] implements BuildKit's word expansion; [`Word::expand`] applies it.
//!
//! [`outline()`] and [`targets()`] report what a build needs (build args, secrets, SSH) and
//! which stages it can build, for `kiln build --call=outline|targets`.
//!
//! [`check()`] runs BuildKit's build checks (`# check=` and `BUILDKIT_DOCKERFILE_CHECK`
//! honoured); [`args`] names BuildKit's predefined platform and proxy args.
//!
//! [`dockerignore`] reads `.dockerignore` files and matches context paths with Docker's
//! rules (pure as well: the engine reads the file and walks the context).
//!
//! # Which words are expanded, and by whom
//!
//! As in BuildKit, `$VAR`s are replaced (with the stage's `ENV` and `ARG` values) in
//! the words of `ADD`, `COPY` (sources, destination, `--chown`, `--chmod`, `--exclude`,
//! `--checksum`), `ENV` and `LABEL` (keys and values), `ARG` defaults, `EXPOSE`
//! (each word may give several ports), `STOPSIGNAL`, `USER`, `VOLUME`, `WORKDIR`, and
//! `RUN` flag values (`--mount`, `--network`, `--security`). `ONBUILD` triggers are
//! expanded when they run in a child build. These all stay unexpanded [`Word`]s in the
//! plan: the engine calls [`Word::expand`] (or [`Word::expand_words`] for `EXPOSE`)
//! with a lookup over the stage's variables at that step. `RUN` flag values without a
//! `$` are also typed at parse time ([`instructions::mount`]: [`Mount`], [`NetworkMode`],
//! [`SecurityMode`]) and their errors reported then; the others are typed by the engine
//! with [`Mount::parse_word`] (each field's value expanded on its own, as BuildKit does).
//!
//! The plan itself expands, with the global `ARG`s only (those before the first
//! `FROM`, after `--build-arg` overrides): `FROM` images, `FROM --platform`,
//! `COPY --from` and `RUN --mount=from=` (to find stage dependencies).
//!
//! Never expanded by kiln: `RUN`, `CMD`, `ENTRYPOINT`, `HEALTHCHECK` commands (the
//! shell does that at run time), `SHELL`, `MAINTAINER`.
//!
//! # Not supported yet
//!
//! * Flag values are read as UTF-8 characters, not BuildKit's byte-wise Latin-1 quirk.
//!
//! # Diagnostic codes
//!
//! `F01xx` parsing, `F02xx` planning, `F03xx` warnings, `F04xx` `.dockerignore`; build checks
//! are named by their BuildKit rule (`warning[FromAsCasing]`, see [`checks`]); see
//! [`diagnostic::Code`].

pub mod args;
pub mod checks;
pub mod diagnostic;
mod dockerfile;
pub mod dockerignore;
mod dump;
pub mod expand;
pub mod heredoc;
pub mod instructions;
mod json;
pub mod lexer;
pub mod outline;
mod plan;
pub mod span;
mod suggest;
pub mod syntax;
mod word;

pub use checks::{CheckError, CheckOptions, CheckReport, CheckWarning, Rule, check};
pub use diagnostic::{Code, Diagnostic, Diagnostics, Severity};
pub use dockerfile::{Dockerfile, parse};
pub use dump::dump;
pub use expand::{ExpandError, expand, expand_words};
pub use expand::{PatternError, expand_heredoc};
pub use heredoc::Heredoc;
pub use instructions::mount::{Mount, MountError, NetworkMode, SecurityMode};
pub use instructions::{CommandLine, Instruction, InstructionKind, StageName};
pub use lexer::{Directive, Directives};
pub use outline::{Outline, OutlineArg, OutlineMount, Target, outline, targets};
pub use plan::{
    ArgBinding, ArgStep, ArgValue, BuildPlan, CopyFrom, CopyStep, GlobalArg, PlanOptions, Stage,
    StageBase, StageId, Step, StepKind, plan,
};
pub use span::{LineIndex, Location, Span};
pub use word::Word;
