//! What a build needs, and which stages a Dockerfile can build: the data behind BuildKit's
//! `outline` and `targets` subrequests (`docker buildx build --call=outline|targets`).
//!
//! Responsible for:
//! - [`outline()`]: the build args the target uses, with their values and descriptions, and
//!   the secrets and SSH sockets its `RUN --mount`s ask for, over the stages the target
//!   needs (after pruning, as [`plan()`](crate::plan()) keeps them).
//! - [`targets()`]: the stages one can pass to `--target`, with descriptions.
//! - Descriptions, as BuildKit takes them: among the comment lines above an instruction (since
//!   the previous instruction; an empty `#` line starts over; parser directives do not count),
//!   the first one that starts with the name and a space gives the rest of the line. So
//!   `# VERSION the release to package` describes `ARG VERSION`, and `# build compiles the
//!   binary` describes `FROM ... AS build`.
//!
//! Not responsible for: rendering (the CLI prints tables or BuildKit's JSON), the base
//! image's `ENV` (unknown without fetching it, so a default that refers to a variable the
//! Dockerfile does not set is reported as written), lint checks.
//!
//! Where kiln differs from BuildKit, on purpose:
//! - A global `ARG` counts as used by a `FROM` line that refers to it even when it has no
//!   value (BuildKit lists only the ones that had a value), since it is a knob of the build.
//! - Stages without a name are listed by [`targets()`] only when they are the default target:
//!   the others cannot be chosen with `--target`.
//! - Locations point at the exact text (the `ARG` declaration, the `--mount` flag) rather than
//!   at whole lines.

mod mount;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::diagnostic::Diagnostics;
use crate::dockerfile::Dockerfile;
use crate::instructions::{ArgDecl, Instruction, InstructionKind, StageName};
use crate::plan::{
    ArgBinding, ArgValue, BuildPlan, PlanOptions, Stage, StageBase, StageId, StepKind, plan,
};
use crate::span::{LineIndex, Location, Span};
use crate::word::Word;
use mount::{MountRequest, mount_request};

/// What building the target needs from the caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outline {
    /// The target stage's name; `None` for an unnamed last stage.
    pub name: Option<StageName>,
    /// The target stage's description (see the module docs).
    pub description: Option<String>,
    /// The build args the target's stages use, in file order.
    pub args: Vec<OutlineArg>,
    /// `RUN --mount=type=secret` ids, in file order.
    pub secrets: Vec<OutlineMount>,
    /// `RUN --mount=type=ssh` ids, in file order.
    pub ssh: Vec<OutlineMount>,
}

/// A build arg the target uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutlineArg {
    pub name: String,
    /// The value the build would use: the `--build-arg`, else the default (expanded when
    /// every variable it refers to is known, else as written); `None` when unset.
    pub value: Option<String>,
    pub description: Option<String>,
    /// The declaration (`NAME=default`).
    pub location: Location,
}

/// A secret or SSH socket a `RUN --mount` asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutlineMount {
    /// The id to pass with `--secret id=...` / `--ssh id=...`.
    pub id: String,
    /// `required=true`: the step fails when the caller does not provide it.
    pub required: bool,
    /// The `--mount` flag.
    pub location: Location,
}

/// A stage that `--target` can select.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    pub id: StageId,
    /// `None` only for the default (last) stage when it has no name.
    pub name: Option<StageName>,
    /// Whether this stage is built when no `--target` is given (the last one).
    pub default: bool,
    pub description: Option<String>,
    /// The base as written in `FROM`, unexpanded.
    pub base: String,
    /// `FROM --platform=` as written, unexpanded.
    pub platform: Option<String>,
    /// The `FROM` instruction.
    pub location: Location,
}

/// The stages `--target` can select, in file order. `source` must be the text `df` was
/// parsed from (descriptions come from its comment lines).
pub fn targets(df: &Dockerfile, source: &str) -> Vec<Target> {
    let comments = DocComments::new(df, source);
    let froms: Vec<(usize, &Instruction)> = df
        .instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i.kind, InstructionKind::From(_)))
        .collect();
    let last = froms.len().saturating_sub(1);
    froms
        .iter()
        .enumerate()
        .filter_map(|(n, &(index, instruction))| {
            let InstructionKind::From(from) = &instruction.kind else {
                return None;
            };
            let default = n == last;
            if from.name.is_none() && !default {
                return None;
            }
            Some(Target {
                id: StageId(n),
                name: from.name.clone(),
                default,
                description: from
                    .name
                    .as_ref()
                    .and_then(|name| comments.describe(index, name.as_str())),
                base: from.image.raw().to_owned(),
                platform: from.platform.as_ref().map(|p| p.raw().to_owned()),
                location: instruction.location,
            })
        })
        .collect()
}

/// Plans `df` for `opts` and reports what the target needs. `source` must be the text `df`
/// was parsed from. Fails with the planner's diagnostics when the Dockerfile does not plan.
pub fn outline(df: &Dockerfile, source: &str, opts: &PlanOptions) -> Result<Outline, Diagnostics> {
    let plan = plan(df, opts)?;
    let comments = DocComments::new(df, source);
    let by_start: BTreeMap<usize, usize> = df
        .instructions
        .iter()
        .enumerate()
        .map(|(i, ins)| (ins.location.span.start, i))
        .collect();
    let lines = LineIndex::new(source);
    let globals = Globals::new(df, &plan, &comments, opts, &lines);

    let mut collector = Collector {
        df,
        lines: &lines,
        plan: &plan,
        by_start: &by_start,
        comments: &comments,
        globals: &globals,
        envs: BTreeMap::new(),
        scans: BTreeMap::new(),
        visited: BTreeSet::new(),
        args: BTreeMap::new(),
        secrets: BTreeMap::new(),
        ssh: BTreeMap::new(),
    };
    collector.scan_all();
    collector.visit(plan.target_stage().id);

    let target = plan.target_stage();
    let description = target.name.as_ref().and_then(|name| {
        let index = by_start.get(&target.location.span.start)?;
        comments.describe(*index, name.as_str())
    });
    let by_line = |l: &Location| (l.line, l.span.start);
    let mut args: Vec<OutlineArg> = collector.args.into_values().collect();
    args.sort_by_key(|a| by_line(&a.location));
    let mut secrets: Vec<OutlineMount> = collector.secrets.into_values().collect();
    secrets.sort_by_key(|m| by_line(&m.location));
    let mut ssh: Vec<OutlineMount> = collector.ssh.into_values().collect();
    ssh.sort_by_key(|m| by_line(&m.location));
    Ok(Outline {
        name: target.name.clone(),
        description,
        args,
        secrets,
        ssh,
    })
}

/// The comment lines above each instruction, collected as BuildKit's parser does.
struct DocComments {
    /// Per instruction (same index as `Dockerfile::instructions`).
    lines: Vec<Vec<String>>,
}

impl DocComments {
    fn new(df: &Dockerfile, source: &str) -> Self {
        let directives: Vec<Span> = [
            &df.directives.syntax,
            &df.directives.escape,
            &df.directives.check,
        ]
        .into_iter()
        .flatten()
        .map(|d| d.span)
        .collect();
        let mut previous_end = 0;
        let lines = df
            .instructions
            .iter()
            .map(|instruction| {
                let start = instruction.location.span.start;
                let gap_start = previous_end.min(start);
                previous_end = previous_end.max(instruction.location.span.end);
                let mut comments = Vec::new();
                let mut offset = gap_start;
                for line in source.get(gap_start..start).unwrap_or("").split('\n') {
                    let line_span = Span::new(offset, offset + line.len());
                    offset += line.len() + 1;
                    let text = line.strip_prefix('\u{feff}').unwrap_or(line).trim_start();
                    let Some(comment) = text.strip_prefix('#') else {
                        continue;
                    };
                    // A directive line is not a comment (BuildKit drops it from the list).
                    let is_directive = directives
                        .iter()
                        .any(|d| d.start < line_span.end && line_span.start < d.end);
                    if is_directive {
                        continue;
                    }
                    let comment = comment.trim();
                    if comment.is_empty() {
                        comments.clear();
                    } else {
                        comments.push(comment.to_owned());
                    }
                }
                comments
            })
            .collect();
        Self { lines }
    }

    /// BuildKit's `getComment`: the rest of the first comment line that starts with
    /// `name` and a space.
    fn describe(&self, instruction: usize, name: &str) -> Option<String> {
        self.lines.get(instruction)?.iter().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_owned)
        })
    }
}

/// A global `ARG` (before the first `FROM`); the last declaration of a name wins.
struct GlobalInfo {
    arg: OutlineArg,
    /// Globals its default refers to: used whenever this one is.
    deps: BTreeSet<String>,
}

struct Globals {
    by_name: BTreeMap<String, GlobalInfo>,
}

impl Globals {
    fn new(
        df: &Dockerfile,
        plan: &BuildPlan,
        comments: &DocComments,
        opts: &PlanOptions,
        lines: &LineIndex<'_>,
    ) -> Self {
        let decls = df
            .instructions
            .iter()
            .enumerate()
            .take_while(|(_, i)| !matches!(i.kind, InstructionKind::From(_)))
            .filter_map(|(index, i)| match &i.kind {
                InstructionKind::Arg(arg) => Some((index, arg)),
                _ => None,
            })
            .flat_map(|(index, arg)| arg.args.iter().map(move |decl| (index, decl)));
        let mut by_name: BTreeMap<String, GlobalInfo> = BTreeMap::new();
        // The plan keeps one value per declaration, in the same order.
        for ((index, decl), planned) in decls.zip(&plan.global_args) {
            let mut deps = BTreeSet::new();
            if !opts.build_args.contains_key(&decl.name)
                && let Some(default) = &decl.default
            {
                deps = referenced(default);
                if deps.remove(&decl.name)
                    && let Some(previous) = by_name.get(&decl.name)
                {
                    deps.extend(previous.deps.iter().cloned());
                }
            }
            let arg = OutlineArg {
                name: decl.name.clone(),
                value: planned.value.clone(),
                description: comments.describe(index, &decl.name),
                location: lines.location(decl_span(decl)),
            };
            by_name.insert(decl.name.clone(), GlobalInfo { arg, deps });
        }
        Self { by_name }
    }

    /// `name` and, transitively, the globals its default refers to.
    fn with_deps(&self, name: &str, out: &mut BTreeSet<String>) {
        if !out.insert(name.to_owned()) {
            return;
        }
        if let Some(info) = self.by_name.get(name) {
            for dep in &info.deps {
                self.with_deps(dep, out);
            }
        }
    }
}

/// The variables of a stage as far as the Dockerfile tells: `Some(value)` when known,
/// `None` when set to something only the engine knows. A name that is absent is unset if
/// `complete` (the stage chain starts from `scratch`), else it may come from the base image.
#[derive(Clone, Debug, Default)]
struct KnownEnv {
    vars: BTreeMap<String, Option<String>>,
    complete: bool,
}

impl KnownEnv {
    /// The expansion of `word` when every variable it refers to is known.
    fn expand(&self, word: &Word) -> Option<String> {
        let known = referenced(word)
            .iter()
            .all(|name| match self.vars.get(name) {
                Some(value) => value.is_some(),
                None => self.complete,
            });
        if !known {
            return None;
        }
        let lookup = |name: &str| self.vars.get(name).cloned().flatten();
        word.expand(&lookup).ok()
    }
}

/// What one stage contributes, before merging over the stages the target needs.
#[derive(Default)]
struct StageScan {
    /// Globals its `FROM` refers to or its `ARG`s inherit (with their dependencies).
    used_globals: BTreeSet<String>,
    /// Its own `ARG` declarations; the last of a name wins.
    args: BTreeMap<String, OutlineArg>,
    /// The first mount of each id wins.
    secrets: BTreeMap<String, OutlineMount>,
    ssh: BTreeMap<String, OutlineMount>,
}

struct Collector<'a> {
    df: &'a Dockerfile,
    /// The line starts of the source `df` was parsed from.
    lines: &'a LineIndex<'a>,
    plan: &'a BuildPlan,
    by_start: &'a BTreeMap<usize, usize>,
    comments: &'a DocComments,
    globals: &'a Globals,
    /// Each stage's variables after its last step, for the stages built on it.
    envs: BTreeMap<StageId, KnownEnv>,
    scans: BTreeMap<StageId, StageScan>,
    visited: BTreeSet<StageId>,
    /// By name: the first stage visited (the target, then what it needs) wins.
    args: BTreeMap<String, OutlineArg>,
    secrets: BTreeMap<String, OutlineMount>,
    ssh: BTreeMap<String, OutlineMount>,
}

impl Collector<'_> {
    fn instruction(&self, span: Span) -> Option<(usize, &Instruction)> {
        let index = *self.by_start.get(&span.start)?;
        Some((index, &self.df.instructions[index]))
    }

    /// Scans every kept stage in file order, so a base stage's variables are known
    /// before the stages built on it.
    fn scan_all(&mut self) {
        for stage in &self.plan.stages {
            let (scan, env) = self.scan(stage);
            self.scans.insert(stage.id, scan);
            self.envs.insert(stage.id, env);
        }
    }

    /// Merges `id` and then, once each, the stages it needs: its base first.
    fn visit(&mut self, id: StageId) {
        if !self.visited.insert(id) {
            return;
        }
        let Some(stage) = self.plan.stage(id) else {
            return;
        };
        if let Some(scan) = self.scans.remove(&id) {
            for name in &scan.used_globals {
                if let Some(info) = self.globals.by_name.get(name)
                    && !scan.args.contains_key(name)
                {
                    self.args
                        .entry(name.clone())
                        .or_insert_with(|| info.arg.clone());
                }
            }
            for (name, arg) in scan.args {
                self.args.entry(name).or_insert(arg);
            }
            for (id, mount) in scan.secrets {
                self.secrets.entry(id).or_insert(mount);
            }
            for (id, mount) in scan.ssh {
                self.ssh.entry(id).or_insert(mount);
            }
        }
        let mut next: Vec<StageId> = Vec::new();
        if let StageBase::Stage(base) = stage.base {
            next.push(base);
        }
        next.extend(stage.dependencies.iter().copied());
        for dep in next {
            self.visit(dep);
        }
    }

    fn scan(&self, stage: &Stage) -> (StageScan, KnownEnv) {
        let mut scan = StageScan::default();
        if let Some((_, from)) = self.instruction(stage.location.span)
            && let InstructionKind::From(cmd) = &from.kind
        {
            let words = std::iter::once(&cmd.image).chain(cmd.platform.as_ref());
            for name in words.flat_map(referenced) {
                if self.globals.by_name.contains_key(&name) {
                    self.globals.with_deps(&name, &mut scan.used_globals);
                }
            }
        }
        let mut env = match stage.base {
            StageBase::Stage(id) => self.envs.get(&id).cloned().unwrap_or_default(),
            StageBase::Scratch => KnownEnv {
                complete: true,
                ..KnownEnv::default()
            },
            StageBase::Image { .. } => KnownEnv::default(),
        };
        for step in &stage.steps {
            let Some((index, instruction)) = self.instruction(step.location.span) else {
                continue;
            };
            match (&step.kind, &instruction.kind) {
                (StepKind::Arg(arg), InstructionKind::Arg(decls)) => {
                    for (binding, decl) in arg.args.iter().zip(&decls.args) {
                        self.scan_arg(binding, decl, index, &mut env, &mut scan);
                    }
                }
                (StepKind::Env(cmd), _) => {
                    for pair in &cmd.pairs {
                        if let Some(key) = env.expand(&pair.key) {
                            let value = env.expand(&pair.value);
                            env.vars.insert(key, value);
                        }
                    }
                }
                (StepKind::Run(run), _) => {
                    for flag in run.flags.iter().filter(|f| f.name == "mount") {
                        let Some(value) = &flag.value else { continue };
                        // Each field's value is expanded on its own, as BuildKit does;
                        // one with an unknown variable is taken as written.
                        let field = |v: &str| {
                            let word = Word::new(v, value.span(), value.escape());
                            Ok(env.expand(&word).unwrap_or_else(|| v.to_owned()))
                        };
                        let location = self.lines.location(flag.span);
                        let (map, id, required) = match mount_request(value.raw(), &field) {
                            Some(MountRequest::Secret { id, required }) => {
                                (&mut scan.secrets, id, required)
                            }
                            Some(MountRequest::Ssh { id, required }) => {
                                (&mut scan.ssh, id, required)
                            }
                            None => continue,
                        };
                        map.entry(id.clone()).or_insert(OutlineMount {
                            id,
                            required,
                            location,
                        });
                    }
                }
                _ => {}
            }
        }
        (scan, env)
    }

    /// One name of a stage's `ARG`, as BuildKit's `dispatchArg` records it.
    fn scan_arg(
        &self,
        binding: &ArgBinding,
        decl: &ArgDecl,
        instruction: usize,
        env: &mut KnownEnv,
        scan: &mut StageScan,
    ) {
        let value = match &binding.value {
            ArgValue::BuildArg(v) => {
                env.vars.insert(binding.name.clone(), Some(v.clone()));
                Some(v.clone())
            }
            ArgValue::Default(word) => {
                let expanded = env.expand(word);
                env.vars.insert(binding.name.clone(), expanded.clone());
                Some(expanded.unwrap_or_else(|| word.raw().to_owned()))
            }
            // Inherited from a global: BuildKit lists the global's declaration (and an
            // automatic platform arg not at all).
            ArgValue::Global(v) => {
                env.vars.insert(binding.name.clone(), Some(v.clone()));
                if self.globals.by_name.contains_key(&binding.name) {
                    self.globals
                        .with_deps(&binding.name, &mut scan.used_globals);
                }
                return;
            }
            // No value: the variable keeps whatever it had (BuildKit sets nothing).
            ArgValue::Unset => None,
        };
        scan.args.insert(
            binding.name.clone(),
            OutlineArg {
                name: binding.name.clone(),
                value,
                description: self.comments.describe(instruction, &binding.name),
                location: self.lines.location(decl_span(decl)),
            },
        );
    }
}

/// `NAME` or `NAME=default` as written.
fn decl_span(decl: &ArgDecl) -> Span {
    match &decl.default {
        Some(default) => decl.name_span.to(default.span()),
        None => decl.name_span,
    }
}

/// The names of the variables `word` refers to.
fn referenced(word: &Word) -> BTreeSet<String> {
    let names = RefCell::new(BTreeSet::new());
    let lookup = |name: &str| {
        names.borrow_mut().insert(name.to_owned());
        None
    };
    // Only the names matter; an expansion error (`${V:?}` unset) still recorded them.
    let _ = word.expand(&lookup);
    names.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn outline_of(src: &str, args: &[(&str, &str)], target: Option<&str>) -> Outline {
        let df = parse(src).unwrap();
        let opts = PlanOptions {
            build_args: args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            target: target.map(str::to_owned),
            ..PlanOptions::default()
        };
        outline(&df, src, &opts).unwrap()
    }

    fn arg_rows(o: &Outline) -> Vec<(&str, Option<&str>, Option<&str>)> {
        o.args
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    a.value.as_deref(),
                    a.description.as_deref(),
                )
            })
            .collect()
    }

    const MULTI: &str = "\
# syntax=docker/dockerfile:1

# ALPINE_VERSION the Alpine release to build on
ARG ALPINE_VERSION=3.20
ARG UNUSED_GLOBAL=x
# REGISTRY where images come from
ARG REGISTRY=docker.io
ARG BASE=${REGISTRY}/library/alpine

# builder compiles the app
FROM ${BASE}:${ALPINE_VERSION} AS builder
# GOFLAGS flags for go build
ARG GOFLAGS=-trimpath
RUN --mount=type=secret,id=netrc,required=true --mount=type=ssh make

# docs builds the manual
FROM scratch AS docs
ARG DOCS_FORMAT=html
RUN --mount=type=secret,id=docs-token make docs

# release is what ships
FROM scratch AS release
# a comment that describes nothing
# VERSION the version stamped into the binary
ARG VERSION
COPY --from=builder /out/app /app
";

    #[test]
    fn outline_lists_what_the_target_needs() {
        let o = outline_of(MULTI, &[("VERSION", "1.2.3")], None);
        assert_eq!(o.name.as_ref().map(StageName::as_str), Some("release"));
        assert_eq!(o.description.as_deref(), Some("is what ships"));
        assert_eq!(
            arg_rows(&o),
            [
                (
                    "ALPINE_VERSION",
                    Some("3.20"),
                    Some("the Alpine release to build on")
                ),
                (
                    "REGISTRY",
                    Some("docker.io"),
                    Some("where images come from")
                ),
                ("BASE", Some("docker.io/library/alpine"), None),
                ("GOFLAGS", Some("-trimpath"), Some("flags for go build")),
                (
                    "VERSION",
                    Some("1.2.3"),
                    Some("the version stamped into the binary")
                ),
            ]
        );
        let secrets: Vec<(&str, bool)> = o
            .secrets
            .iter()
            .map(|s| (s.id.as_str(), s.required))
            .collect();
        assert_eq!(
            secrets,
            [("netrc", true)],
            "docs-token is in a pruned stage"
        );
        assert_eq!(o.ssh.len(), 1);
        assert_eq!(o.ssh[0].id, "default");
        assert!(!o.ssh[0].required);
        assert_eq!(o.secrets[0].location.line, 14);
        assert_eq!(
            o.secrets[0].location.span.text(MULTI),
            "--mount=type=secret,id=netrc,required=true"
        );
        assert_eq!(o.args[0].location.span.text(MULTI), "ALPINE_VERSION=3.20");
    }

    #[test]
    fn args_of_pruned_stages_are_left_out() {
        let o = outline_of(MULTI, &[], Some("docs"));
        assert_eq!(o.description.as_deref(), Some("builds the manual"));
        assert_eq!(arg_rows(&o), [("DOCS_FORMAT", Some("html"), None)]);
        assert_eq!(o.secrets[0].id, "docs-token");
        assert!(o.ssh.is_empty());
        let o = outline_of(MULTI, &[], None);
        assert!(!o.args.iter().any(|a| a.name == "UNUSED_GLOBAL"));
        assert_eq!(o.args.last().unwrap().value, None, "VERSION has no value");
    }

    #[test]
    fn redeclared_global_lists_the_global_declaration() {
        let src =
            "# V the version\nARG V=1\nFROM scratch\n# V shadowed description\nARG V\nARG P\n";
        let o = outline_of(src, &[], None);
        assert_eq!(
            arg_rows(&o),
            [("V", Some("1"), Some("the version")), ("P", None, None)]
        );
        assert_eq!(o.args[0].location.line, 2);
    }

    #[test]
    fn defaults_expand_only_with_known_variables() {
        // The base image's ENV is unknown: such a default is shown as written.
        let src = "FROM alpine\nARG D=${PATH}:/x\nARG E=${D}\n";
        let o = outline_of(src, &[], None);
        assert_eq!(
            arg_rows(&o),
            [("D", Some("${PATH}:/x"), None), ("E", Some("${D}"), None)]
        );
        // From scratch every variable is known, through stages built on each other.
        let src = "FROM scratch AS s\nARG A=a\nENV B=${A}b\nARG C=${B}c\nFROM s\nARG E=${C}e\n";
        let o = outline_of(src, &[], None);
        assert_eq!(
            arg_rows(&o),
            [
                ("A", Some("a"), None),
                ("C", Some("abc"), None),
                ("E", Some("abce"), None)
            ]
        );
    }

    #[test]
    fn comments_follow_buildkit_rules() {
        // A blank line does not separate a comment from its instruction; an empty `#` does,
        // and a directive is not a comment.
        let src = "# check=error=true\n# A from the top\n\nARG A=1\n# B first\n#\n# C after reset\nARG B=2 C=3\nFROM scratch\nARG A\nARG B\nARG C\n";
        let o = outline_of(src, &[], None);
        assert_eq!(
            arg_rows(&o),
            [
                ("A", Some("1"), Some("from the top")),
                ("B", Some("2"), None),
                ("C", Some("3"), Some("after reset")),
            ]
        );
    }

    #[test]
    fn targets_mark_the_default_and_skip_unnamed_stages() {
        let df = parse(MULTI).unwrap();
        let t = targets(&df, MULTI);
        let rows: Vec<(Option<&str>, bool, Option<&str>, &str)> = t
            .iter()
            .map(|t| {
                (
                    t.name.as_ref().map(StageName::as_str),
                    t.default,
                    t.description.as_deref(),
                    t.base.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    Some("builder"),
                    false,
                    Some("compiles the app"),
                    "${BASE}:${ALPINE_VERSION}"
                ),
                (Some("docs"), false, Some("builds the manual"), "scratch"),
                (Some("release"), true, Some("is what ships"), "scratch"),
            ]
        );
        assert_eq!(t[0].location.line, 11);

        let src = "FROM alpine\nFROM --platform=$BUILDPLATFORM busybox AS tools\nFROM scratch\n";
        let df = parse(src).unwrap();
        let t = targets(&df, src);
        assert_eq!(t.len(), 2, "the unnamed first stage cannot be targeted");
        assert_eq!(t[0].platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(
            (t[1].name.is_none(), t[1].default, t[1].id),
            (true, true, StageId(2))
        );
    }
}
