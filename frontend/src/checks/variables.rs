//! Checks that follow variables through the file: `UndefinedVar`,
//! `UndefinedArgInFrom` and `WorkdirRelativePath`.
//!
//! Responsible for: replaying BuildKit's variable scopes without running anything —
//! * the global scope of `FROM`: the `ARG`s before the first `FROM` and the automatic
//!   platform `ARG`s (`UndefinedArgInFrom` reports any other name a `FROM` image or
//!   `--platform` uses);
//! * each stage's scope: its base (an earlier stage's scope, `scratch`'s `PATH`, or
//!   the image `ENV` from [`CheckOptions::base_env`]), then `ARG`s and `ENV`s in order.
//!   Every word BuildKit expands in a stage is expanded with a recording lookup, as
//!   BuildKit's `ProcessWordWithMatches` records unmatched names; a name is reported
//!   unless an `ARG` of the stage (or of a stage it builds on) declared it, it is an
//!   automatic platform or proxy `ARG`, or BuildKit's SBOM `ARG`s. `${V:-default}`
//!   counts as a use of `V`, as in BuildKit. All words of one `ENV` see the scope
//!   before that `ENV` (`ENV A=1 B=$A` uses an undefined `A`), as in BuildKit;
//! * `WorkdirRelativePath` for the first `WORKDIR` of a stage (and of the stages it
//!   builds on), when its expanded path is known and relative.
//!
//! Not responsible for: commands run by a shell (`RUN`, `CMD`, `ENTRYPOINT`,
//! `HEALTHCHECK`) or `ONBUILD` triggers — nothing expands those at build time.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::layout::{AUTOMATIC_ARGS, Base, Layout, PROXY_ARGS, StageView, variable_span};
use super::{CheckOptions, Findings, Rule, go_quote};
use crate::expand::{self, expand_heredoc};
use crate::instructions::{Instruction, InstructionKind, SourceContent};
use crate::span::Span;
use crate::suggest;
use crate::word::Word;

/// `ARG`s BuildKit never puts into the environment.
const NON_ENV_ARGS: &[&str] = &["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// BuildKit's `PATH` for Linux when the image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A variable's value, when the checks can know it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Known(String),
    /// Set, but to something only the build knows (e.g. from an unknown base image).
    Unknown,
}

/// The variables of a stage at one instruction.
#[derive(Clone, Debug)]
struct Scope {
    env: BTreeMap<String, Value>,
    /// Names declared by `ARG` in the stage or the stages it builds on.
    declared: BTreeSet<String>,
    /// Whether the base image's `ENV` is known; if not, any name may be defined.
    base_known: bool,
    /// Whether a `WORKDIR` was set in this stage or the stages it builds on.
    workdir_set: bool,
}

impl Scope {
    fn with_env(entries: &[String], base_known: bool) -> Scope {
        let mut env: BTreeMap<String, Value> = entries
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_owned(), Value::Known(v.to_owned())),
                None => (e.clone(), Value::Known(String::new())),
            })
            .collect();
        env.entry("PATH".to_owned())
            .or_insert_with(|| Value::Known(DEFAULT_PATH.to_owned()));
        Scope {
            env,
            declared: BTreeSet::new(),
            base_known,
            workdir_set: false,
        }
    }

    /// Expands `text` in this scope. Returns the value if every variable it used has a
    /// known value, and the names it used that are not defined.
    fn expand(&self, text: &str, how: Expansion) -> (Option<String>, BTreeSet<String>) {
        let unmatched = RefCell::new(BTreeSet::new());
        let unknown = RefCell::new(false);
        let lookup = |name: &str| match self.env.get(name) {
            Some(Value::Known(v)) => Some(v.clone()),
            Some(Value::Unknown) => {
                *unknown.borrow_mut() = true;
                Some(String::new())
            }
            None => {
                unmatched.borrow_mut().insert(name.to_owned());
                None
            }
        };
        let result = match how {
            Expansion::Word(escape) => expand::expand(text, escape, &lookup),
            Expansion::Heredoc => expand_heredoc(text, &lookup),
        };
        let unmatched = unmatched.into_inner();
        let known = !unknown.into_inner() && (self.base_known || unmatched.is_empty());
        (result.ok().filter(|_| known), unmatched)
    }

    fn value_of(&self, text: &str, how: Expansion) -> Value {
        match self.expand(text, how).0 {
            Some(v) => Value::Known(v),
            None => Value::Unknown,
        }
    }
}

#[derive(Clone, Copy)]
enum Expansion {
    /// A word, with the file's escape token.
    Word(char),
    /// A `COPY`/`ADD` heredoc body (quotes not special, `\` escapes).
    Heredoc,
}

pub(super) fn check(layout: &Layout<'_>, opts: &CheckOptions<'_>, findings: &mut Findings) {
    let mut ends: Vec<Scope> = Vec::with_capacity(layout.stages.len());
    for stage in &layout.stages {
        undefined_args_in_from(layout, stage, opts, findings);
        let scope = match &stage.base {
            Base::Scratch => Scope::with_env(&[], true),
            Base::Stage(i) => ends
                .get(*i)
                .cloned()
                .unwrap_or_else(|| Scope::with_env(&[], false)),
            Base::Image(reference) => match opts.base_env.and_then(|f| f(reference)) {
                Some(entries) => Scope::with_env(&entries, true),
                None => Scope::with_env(&[], false),
            },
            Base::Unresolved => Scope::with_env(&[], false),
        };
        let mut walker = StageWalker {
            scope,
            layout,
            opts,
            findings: &mut *findings,
        };
        for &instruction in &stage.steps {
            walker.step(instruction);
        }
        ends.push(walker.scope);
    }
}

/// `FROM` words may only use global `ARG`s and the automatic platform `ARG`s.
fn undefined_args_in_from(
    layout: &Layout<'_>,
    stage: &StageView<'_>,
    opts: &CheckOptions<'_>,
    findings: &mut Findings,
) {
    let known: Vec<&str> = layout
        .globals
        .keys()
        .map(String::as_str)
        .chain(AUTOMATIC_ARGS.iter().copied())
        .collect();
    let words = std::iter::once(&stage.from.image).chain(stage.from.platform.as_ref());
    for word in words {
        let used = RefCell::new(BTreeSet::new());
        let lookup = |name: &str| {
            used.borrow_mut().insert(name.to_owned());
            layout.global_value(name, &opts.build_args)
        };
        // Errors are the planner's to report; the names used so far still count.
        let _ = word.expand(&lookup);
        for name in used.into_inner() {
            if known.contains(&name.as_str()) {
                continue;
            }
            let mut message = format!("FROM argument '{name}' is not declared");
            if let Some(s) = suggest::closest(&name, known.iter().copied()) {
                message.push_str(&format!(" (did you mean {s}?)"));
            }
            findings.push(
                Rule::UndefinedArgInFrom,
                variable_span(word.raw(), word.span(), &name),
                message,
                Some(format!(
                    "declare it with `ARG {name}` before the first FROM"
                )),
            );
        }
    }
}

struct StageWalker<'a, 'l, 'o, 'd> {
    scope: Scope,
    layout: &'l Layout<'d>,
    opts: &'o CheckOptions<'o>,
    findings: &'a mut Findings,
}

impl StageWalker<'_, '_, '_, '_> {
    fn step(&mut self, instruction: &Instruction) {
        match &instruction.kind {
            InstructionKind::Arg(arg) => {
                for decl in &arg.args {
                    self.arg(&decl.name, decl.default.as_ref());
                }
            }
            InstructionKind::Env(env) => {
                // Every word is expanded before any of the new values is set.
                let mut values = Vec::with_capacity(env.pairs.len());
                for pair in &env.pairs {
                    self.report(&pair.key);
                    self.report(&pair.value);
                    let escape = pair.value.escape();
                    let key = self.scope.expand(pair.key.raw(), Expansion::Word(escape)).0;
                    let value = self
                        .scope
                        .value_of(pair.value.raw(), Expansion::Word(escape));
                    values.push((key.unwrap_or_else(|| pair.key.raw().to_owned()), value));
                }
                self.scope.env.extend(values);
            }
            InstructionKind::Label(label) => {
                for pair in &label.pairs {
                    self.report(&pair.key);
                    self.report(&pair.value);
                }
            }
            InstructionKind::Workdir(workdir) => {
                self.report(&workdir.path);
                self.workdir(&workdir.path);
            }
            InstructionKind::Copy(copy) => {
                let words = copy.sources.iter().chain([&copy.dest]);
                let flags = copy.chown.iter().chain(&copy.chmod).chain(&copy.exclude);
                words.chain(flags).for_each(|w| self.report(w));
                self.report_heredocs(&copy.contents);
            }
            InstructionKind::Add(add) => {
                let words = add.sources.iter().chain([&add.dest]);
                let flags = add.chown.iter().chain(&add.chmod).chain(&add.exclude);
                words
                    .chain(flags)
                    .chain(&add.checksum)
                    .for_each(|w| self.report(w));
                self.report_heredocs(&add.contents);
            }
            InstructionKind::Run(run) => {
                for flag in &run.flags {
                    if let Some(value) = &flag.value {
                        self.report(value);
                    }
                }
            }
            InstructionKind::Expose(expose) => expose.ports.iter().for_each(|w| self.report(w)),
            InstructionKind::Volume(volume) => volume.paths.iter().for_each(|w| self.report(w)),
            InstructionKind::User(user) => self.report(&user.user),
            InstructionKind::StopSignal(stop) => self.report(&stop.signal),
            InstructionKind::From(_)
            | InstructionKind::Cmd(_)
            | InstructionKind::Entrypoint(_)
            | InstructionKind::Shell(_)
            | InstructionKind::Maintainer(_)
            | InstructionKind::Onbuild(_)
            | InstructionKind::Healthcheck(_) => {}
        }
    }

    /// BuildKit's `dispatchArg` for one name.
    fn arg(&mut self, name: &str, default: Option<&Word>) {
        let value = if let Some(given) = self.opts.build_args.get(name) {
            Some(Value::Known(given.clone()))
        } else if let Some(default) = default {
            self.report(default);
            Some(
                self.scope
                    .value_of(default.raw(), Expansion::Word(default.escape())),
            )
        } else {
            match self.layout.global_value(name, &self.opts.build_args) {
                Some(v) => Some(Value::Known(v)),
                // The platform ARGs always have a value, which only the engine knows.
                None if AUTOMATIC_ARGS.contains(&name)
                    && !self.layout.globals.contains_key(name) =>
                {
                    Some(Value::Unknown)
                }
                None => None,
            }
        };
        if let Some(value) = value
            && !NON_ENV_ARGS.contains(&name)
        {
            self.scope.env.insert(name.to_owned(), value);
        }
        self.scope.declared.insert(name.to_owned());
    }

    fn workdir(&mut self, path: &Word) {
        let first = !self.scope.workdir_set;
        self.scope.workdir_set = true;
        if !first {
            return;
        }
        let Some(expanded) = self
            .scope
            .expand(path.raw(), Expansion::Word(path.escape()))
            .0
        else {
            return;
        };
        if !is_absolute(&expanded) {
            self.findings.push(
                Rule::WorkdirRelativePath,
                path.span(),
                format!(
                    "Relative workdir {} can have unexpected results if the base image changes",
                    go_quote(&expanded)
                ),
                Some("set an absolute WORKDIR first, e.g. `WORKDIR /app`".to_owned()),
            );
        }
    }

    /// Reports the undefined variables `word` uses.
    fn report(&mut self, word: &Word) {
        let (_, unmatched) = self
            .scope
            .expand(word.raw(), Expansion::Word(word.escape()));
        for name in self.undefined(unmatched) {
            let span = variable_span(word.raw(), word.span(), &name);
            self.push_undefined(&name, span);
        }
    }

    fn report_heredocs(&mut self, contents: &[SourceContent]) {
        for content in contents.iter().filter(|c| c.expand) {
            let (_, unmatched) = self.scope.expand(&content.data, Expansion::Heredoc);
            for name in self.undefined(unmatched) {
                self.push_undefined(&name, content.span);
            }
        }
    }

    fn undefined(&self, unmatched: BTreeSet<String>) -> Vec<String> {
        if !self.scope.base_known {
            return Vec::new();
        }
        unmatched
            .into_iter()
            .filter(|n| {
                !self.scope.declared.contains(n)
                    && !NON_ENV_ARGS.contains(&n.as_str())
                    && !AUTOMATIC_ARGS.contains(&n.as_str())
                    && !PROXY_ARGS.contains(&n.as_str())
            })
            .collect()
    }

    fn push_undefined(&mut self, name: &str, span: Span) {
        let mut message = format!("Usage of undefined variable '${name}'");
        let suggestion = suggest::closest(name, self.scope.env.keys().map(String::as_str));
        let help = match suggestion {
            Some(s) => {
                message.push_str(&format!(" (did you mean ${s}?)"));
                format!("did you mean `${s}`?")
            }
            None => format!("declare it first with `ARG {name}` or `ENV {name}=...`"),
        };
        self.findings
            .push(Rule::UndefinedVar, span, message, Some(help));
    }
}

/// Absolute on Linux (`/x`), or a Windows path (`C:\x`, `\x`), which BuildKit checks
/// against the Windows rules for Windows images.
fn is_absolute(path: &str) -> bool {
    let bytes = path.as_bytes();
    path.starts_with(['/', '\\'])
        || (bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':')
}
