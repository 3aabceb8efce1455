//! From a [`Dockerfile`] to a [`BuildPlan`]: stages, their bases and dependencies,
//! global `ARG`s, `--target` and pruning.
//!
//! Responsible for: the `ARG`s before the first `FROM` (defaults expanded in order,
//! `--build-arg` overrides), expanding `FROM` images, `--platform` and `COPY --from`
//! with them, naming and numbering stages, resolving `FROM <stage>`, `COPY --from` and
//! `RUN --mount=from=` to stages, refusing cycles and undefined stage indexes,
//! choosing the target and keeping only the stages it needs, and the effective value
//! of every `ARG` inside a stage.
//! Not responsible for: expanding words inside a stage. Those stay [`Word`]s because
//! they need the base image's `ENV`, which only the engine knows.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::dockerfile::Dockerfile;
use crate::instructions::{
    AddCommand, ArgCommand, CmdCommand, CopyCommand, EntrypointCommand, EnvCommand, ExposeCommand,
    FromCommand, HealthcheckCommand, Instruction, InstructionKind, LabelCommand, MaintainerCommand,
    OnbuildCommand, RunCommand, ShellCommand, SourceContent, StageName, StopSignalCommand,
    UserCommand, VolumeCommand, WorkdirCommand,
};
use crate::span::{Location, Span};
use crate::suggest;
use crate::word::Word;

/// Inputs of planning that come from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--build-arg NAME=VALUE`. Values are used as given, never expanded.
    pub build_args: BTreeMap<String, String>,
    /// Args the builder defines (the platform args, see [`crate::args`]): visible in `FROM`
    /// lines without a declaration, and in a stage once declared; `--build-arg` and a
    /// declaration's default take precedence.
    pub automatic_args: BTreeMap<String, String>,
    /// `--target`: the stage to build; the last stage when `None`.
    pub target: Option<String>,
}

/// A stage's number: its position among the file's `FROM`s, from 0. Stable whether or
/// not other stages are pruned, so `COPY --from=1` and `StageId(1)` agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StageId(pub usize);

/// What to build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    /// The stages the target needs (the target included), in file order.
    pub stages: Vec<Stage>,
    /// Position of the target stage in `stages` (not a [`StageId`]).
    pub target: usize,
    /// The `ARG`s declared before the first `FROM`, with their values.
    pub global_args: Vec<GlobalArg>,
}

impl BuildPlan {
    pub fn target_stage(&self) -> &Stage {
        &self.stages[self.target]
    }

    /// The kept stage with this id, if it was not pruned.
    pub fn stage(&self, id: StageId) -> Option<&Stage> {
        // `stages` is in file order, so sorted by id.
        let i = self.stages.binary_search_by_key(&id, |s| s.id).ok()?;
        self.stages.get(i)
    }
}

/// An `ARG` before the first `FROM`. Unset when it has no default and no build arg.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GlobalArg {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub id: StageId,
    pub name: Option<StageName>,
    pub base: StageBase,
    /// `FROM --platform=`, expanded with the global `ARG`s.
    pub platform: Option<String>,
    pub steps: Vec<Step>,
    /// The `FROM` instruction.
    pub location: Location,
    /// The `FROM` line as written.
    pub original: String,
    /// Stages this one needs: its base, `COPY --from` and `RUN --mount=from=` sources.
    pub dependencies: Vec<StageId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum StageBase {
    /// `FROM scratch`: an empty file system.
    Scratch,
    /// An image reference after `ARG` expansion; `span` is the reference as written.
    Image { reference: String, span: Span },
    /// Another stage of the same file.
    Stage(StageId),
}

/// One instruction of a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub location: Location,
    /// The instruction as written, continuation lines joined (history `created_by`).
    pub original: String,
    pub kind: StepKind,
}

/// The typed content of a step. Words are unexpanded; see the crate docs for which
/// instructions expand which words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum StepKind {
    Run(RunCommand),
    Cmd(CmdCommand),
    Entrypoint(EntrypointCommand),
    Shell(ShellCommand),
    Label(LabelCommand),
    Maintainer(MaintainerCommand),
    Expose(ExposeCommand),
    Env(EnvCommand),
    Add(AddCommand),
    Copy(CopyStep),
    Volume(VolumeCommand),
    User(UserCommand),
    Workdir(WorkdirCommand),
    Arg(ArgStep),
    Onbuild(OnbuildCommand),
    StopSignal(StopSignalCommand),
    Healthcheck(HealthcheckCommand),
}

/// `COPY` with `--from` resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CopyStep {
    pub sources: Vec<Word>,
    pub contents: Vec<SourceContent>,
    pub dest: Word,
    pub from: Option<CopyFrom>,
    pub chown: Option<Word>,
    pub chmod: Option<Word>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<Word>,
    pub json: bool,
}

/// Where `COPY --from` copies from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum CopyFrom {
    Stage(StageId),
    /// An image reference, expanded with the global `ARG`s.
    Image(String),
}

/// `ARG` inside a stage: every name with the value it gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArgStep {
    pub args: Vec<ArgBinding>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArgBinding {
    pub name: String,
    pub default: Option<Word>,
    pub value: ArgValue,
}

/// The value an `ARG` takes, in BuildKit's order of precedence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ArgValue {
    /// Given with `--build-arg`; used as is.
    BuildArg(String),
    /// The declared default: expand it with the stage's variables at this step.
    Default(Word),
    /// No default here; inherits the value of the global `ARG` of the same name.
    Global(String),
    /// No value: the variable stays unset.
    Unset,
}

/// Plans the build of `df` for `opts`, reporting every problem found.
pub fn plan(df: &Dockerfile, opts: &PlanOptions) -> Result<BuildPlan, Diagnostics> {
    let mut diags = Diagnostics::new();
    let mut planner = Planner {
        opts,
        globals: Vec::new(),
        global_index: HashMap::new(),
        stages: Vec::new(),
        names: HashMap::new(),
    };
    planner.collect(df, &mut diags);
    if planner.stages.is_empty() {
        if !diags.has_errors() {
            let span = df
                .instructions
                .last()
                .map_or(Span::empty(0), |i| i.location.span);
            diags.push(
                Diagnostic::error(
                    Code::NoStage,
                    span,
                    "the Dockerfile has no FROM instruction",
                )
                .with_help("start a stage with `FROM <image>`"),
            );
        }
        return Err(diags);
    }
    let stages = planner.resolve(&mut diags);
    check_cycles(&stages, &mut diags);
    let target = planner.target(&stages, &mut diags);
    if diags.has_errors() {
        return Err(diags);
    }
    let Some(target) = target else {
        return Err(diags);
    };
    let needed = reachable(&stages, target);
    let kept: Vec<Stage> = stages.into_iter().filter(|s| needed[s.id.0]).collect();
    let target = kept.iter().position(|s| s.id == target).unwrap_or(0);
    Ok(BuildPlan {
        stages: kept,
        target,
        global_args: planner.globals,
    })
}

/// A stage as collected, before references are resolved.
struct RawStage<'d> {
    from: &'d FromCommand,
    instruction: &'d Instruction,
    image: Option<String>,
    platform: Option<String>,
    steps: Vec<&'d Instruction>,
}

struct Planner<'o, 'd> {
    opts: &'o PlanOptions,
    globals: Vec<GlobalArg>,
    /// Index in `globals` of the last declaration of each name (the one in force).
    global_index: HashMap<String, usize>,
    stages: Vec<RawStage<'d>>,
    /// Each stage name and the first stage that has it, so references resolve without
    /// scanning the stages.
    names: HashMap<&'d StageName, StageId>,
}

impl<'d> Planner<'_, 'd> {
    fn global(&self, name: &str) -> Option<String> {
        match self.global_index.get(name) {
            Some(&i) => self.globals[i].value.clone(),
            None => self.opts.automatic_args.get(name).cloned(),
        }
    }

    fn expand_global(&self, word: &Word, diags: &mut Diagnostics) -> Option<String> {
        let lookup = |name: &str| self.global(name);
        match word.expand(&lookup) {
            Ok(v) => Some(v),
            Err(e) => {
                diags.push(e.to_diagnostic(word.span()));
                None
            }
        }
    }

    fn collect(&mut self, df: &'d Dockerfile, diags: &mut Diagnostics) {
        for instruction in &df.instructions {
            match &instruction.kind {
                InstructionKind::From(from) => self.start_stage(from, instruction, diags),
                InstructionKind::Arg(arg) if self.stages.is_empty() => {
                    self.global_arg(arg, diags);
                }
                kind => match self.stages.last_mut() {
                    Some(stage) => stage.steps.push(instruction),
                    None => diags.push(
                        Diagnostic::error(
                            Code::NoStage,
                            instruction.keyword_span,
                            format!("{} before the first FROM", kind.keyword()),
                        )
                        .with_label("no build stage has started here")
                        .with_help("only ARG may come before the first FROM"),
                    ),
                },
            }
        }
    }

    fn global_arg(&mut self, arg: &ArgCommand, diags: &mut Diagnostics) {
        for decl in &arg.args {
            let value = match (self.opts.build_args.get(&decl.name), &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => self.expand_global(default, diags),
                (None, None) => self.opts.automatic_args.get(&decl.name).cloned(),
            };
            self.global_index
                .insert(decl.name.clone(), self.globals.len());
            self.globals.push(GlobalArg {
                name: decl.name.clone(),
                value,
            });
        }
    }

    fn start_stage(
        &mut self,
        from: &'d FromCommand,
        instruction: &'d Instruction,
        diags: &mut Diagnostics,
    ) {
        if let Some(name) = &from.name
            && let Some(previous) = self.name_stage(name)
        {
            let before = self.stages[previous.0].instruction.location.line;
            diags.push(
                Diagnostic::error(
                    Code::DuplicateStageName,
                    from.name_span.unwrap_or(instruction.keyword_span),
                    format!("duplicate stage name `{name}`"),
                )
                .with_label(format!("already used on line {before}"))
                .with_help("give each stage a different name"),
            );
        }
        let image = self.expand_global(&from.image, diags);
        if image.as_deref() == Some("") {
            diags.push(
                Diagnostic::error(
                    Code::EmptyBaseName,
                    from.image.span(),
                    format!("base name `{}` is empty after expansion", from.image.raw()),
                )
                .with_label("expands to nothing")
                .with_help("give the ARG a default or pass it with --build-arg"),
            );
        }
        let platform = from
            .platform
            .as_ref()
            .and_then(|p| self.expand_global(p, diags));
        self.stages.push(RawStage {
            from,
            instruction,
            image,
            platform,
            steps: Vec::new(),
        });
    }

    /// Records that the stage about to be pushed is named `name`, unless an earlier stage
    /// has that name already: returns that stage then (the first one keeps the name).
    fn name_stage(&mut self, name: &'d StageName) -> Option<StageId> {
        let id = StageId(self.stages.len());
        match self.names.entry(name) {
            Entry::Occupied(first) => Some(*first.get()),
            Entry::Vacant(slot) => {
                slot.insert(id);
                None
            }
        }
    }

    /// The first stage named `text` (compared without case, as [`StageName::matches`]
    /// does: a text that is no valid stage name names no stage).
    fn stage_by_name(&self, text: &str) -> Option<StageId> {
        let name = StageName::new(text).ok()?;
        self.names.get(&name).copied()
    }

    /// `--from` / `from=` value: an index, a stage name, or an image.
    fn reference(&self, word: &Word, diags: &mut Diagnostics) -> Option<CopyFrom> {
        let value = self.expand_global(word, diags)?;
        if let Ok(index) = value.parse::<usize>() {
            if index < self.stages.len() {
                return Some(CopyFrom::Stage(StageId(index)));
            }
            diags.push(
                Diagnostic::error(
                    Code::UndefinedStage,
                    word.span(),
                    format!("invalid stage index {index}"),
                )
                .with_label(format!(
                    "the Dockerfile has {} stage(s), numbered from 0",
                    self.stages.len()
                )),
            );
            return None;
        }
        Some(match self.stage_by_name(&value) {
            Some(id) => CopyFrom::Stage(id),
            None => CopyFrom::Image(value),
        })
    }

    fn resolve(&self, diags: &mut Diagnostics) -> Vec<Stage> {
        let mut out = Vec::with_capacity(self.stages.len());
        for (i, raw) in self.stages.iter().enumerate() {
            let image = raw.image.clone().unwrap_or_default();
            let base = if image.eq_ignore_ascii_case("scratch") {
                StageBase::Scratch
            } else if let Some(id) = self.stage_by_name(&image) {
                StageBase::Stage(id)
            } else {
                StageBase::Image {
                    reference: image,
                    span: raw.from.image.span(),
                }
            };
            let mut dependencies = Vec::new();
            if let StageBase::Stage(id) = base {
                dependencies.push(id);
            }
            let mut steps = Vec::with_capacity(raw.steps.len());
            for instruction in &raw.steps {
                let kind = self.step_kind(instruction, &mut dependencies, diags);
                if let Some(kind) = kind {
                    steps.push(Step {
                        location: instruction.location,
                        original: instruction.original.clone(),
                        kind,
                    });
                }
            }
            dependencies.sort();
            dependencies.dedup();
            out.push(Stage {
                id: StageId(i),
                name: raw.from.name.clone(),
                base,
                platform: raw.platform.clone(),
                steps,
                location: raw.instruction.location,
                original: raw.instruction.original.clone(),
                dependencies,
            });
        }
        out
    }

    fn step_kind(
        &self,
        instruction: &Instruction,
        dependencies: &mut Vec<StageId>,
        diags: &mut Diagnostics,
    ) -> Option<StepKind> {
        Some(match &instruction.kind {
            InstructionKind::From(_) => return None,
            InstructionKind::Run(run) => {
                for flag in run.flags.iter().filter(|f| f.name == "mount") {
                    let Some(value) = &flag.value else { continue };
                    if let Some(from) = mount_from(value)
                        && let Some(CopyFrom::Stage(id)) = self.reference(&from, diags)
                    {
                        dependencies.push(id);
                    }
                }
                StepKind::Run(run.clone())
            }
            InstructionKind::Copy(copy) => {
                let from = match &copy.from {
                    Some(word) => Some(self.reference(word, diags)?),
                    None => None,
                };
                if let Some(CopyFrom::Stage(id)) = from {
                    dependencies.push(id);
                }
                StepKind::Copy(copy_step(copy, from))
            }
            InstructionKind::Arg(arg) => StepKind::Arg(ArgStep {
                args: arg
                    .args
                    .iter()
                    .map(|decl| ArgBinding {
                        name: decl.name.clone(),
                        default: decl.default.clone(),
                        value: match (self.opts.build_args.get(&decl.name), &decl.default) {
                            (Some(v), _) => ArgValue::BuildArg(v.clone()),
                            (None, Some(d)) => ArgValue::Default(d.clone()),
                            (None, None) => self
                                .global(&decl.name)
                                .map_or(ArgValue::Unset, ArgValue::Global),
                        },
                    })
                    .collect(),
            }),
            InstructionKind::Cmd(c) => StepKind::Cmd(c.clone()),
            InstructionKind::Entrypoint(c) => StepKind::Entrypoint(c.clone()),
            InstructionKind::Shell(c) => StepKind::Shell(c.clone()),
            InstructionKind::Label(c) => StepKind::Label(c.clone()),
            InstructionKind::Maintainer(c) => StepKind::Maintainer(c.clone()),
            InstructionKind::Expose(c) => StepKind::Expose(c.clone()),
            InstructionKind::Env(c) => StepKind::Env(c.clone()),
            InstructionKind::Add(c) => StepKind::Add(c.clone()),
            InstructionKind::Volume(c) => StepKind::Volume(c.clone()),
            InstructionKind::User(c) => StepKind::User(c.clone()),
            InstructionKind::Workdir(c) => StepKind::Workdir(c.clone()),
            InstructionKind::Onbuild(c) => StepKind::Onbuild(c.clone()),
            InstructionKind::StopSignal(c) => StepKind::StopSignal(c.clone()),
            InstructionKind::Healthcheck(c) => StepKind::Healthcheck(c.clone()),
        })
    }

    fn target(&self, stages: &[Stage], diags: &mut Diagnostics) -> Option<StageId> {
        let Some(wanted) = &self.opts.target else {
            return stages.last().map(|s| s.id);
        };
        if let Some(id) = self.stage_by_name(wanted) {
            return Some(id);
        }
        let names: Vec<&str> = stages
            .iter()
            .filter_map(|s| s.name.as_ref().map(StageName::as_str))
            .collect();
        let help = match suggest::closest(wanted, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if names.is_empty() => "the Dockerfile has no named stages".to_owned(),
            None => format!("the stages are named {}", quoted_list(&names)),
        };
        let span = stages.last().map_or(Span::empty(0), |s| s.location.span);
        diags.push(
            Diagnostic::error(
                Code::UnknownTarget,
                Span::new(span.start, span.start),
                format!("target stage `{wanted}` could not be found"),
            )
            .with_help(help),
        );
        None
    }
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn copy_step(copy: &CopyCommand, from: Option<CopyFrom>) -> CopyStep {
    CopyStep {
        sources: copy.sources.clone(),
        contents: copy.contents.clone(),
        dest: copy.dest.clone(),
        from,
        chown: copy.chown.clone(),
        chmod: copy.chmod.clone(),
        link: copy.link,
        parents: copy.parents,
        exclude: copy.exclude.clone(),
        json: copy.json,
    }
}

/// The `from=` field of a `--mount` value (`type=cache,from=builder,target=/x`).
fn mount_from(value: &Word) -> Option<Word> {
    let raw = value.raw();
    let mut offset = 0;
    for field in raw.split(',') {
        let start = offset;
        offset += field.len() + 1;
        let Some((key, v)) = field.split_once('=') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case("from") {
            let at = value.span().start + start + key.len() + 1;
            let span = Span::new(
                at.min(value.span().end),
                (at + v.len()).min(value.span().end),
            );
            return Some(Word::new(v, span, value.escape()));
        }
    }
    None
}

/// Reports every cycle of stage dependencies once, at the stage where it is found.
///
/// A depth-first search in file order with an explicit stack (a chain of thousands of
/// stages must not overflow the thread's stack): a dependency that is still on the
/// stack closes a cycle.
fn check_cycles(stages: &[Stage], diags: &mut Diagnostics) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut marks = vec![Mark::New; stages.len()];
    // (stage, how many of its dependencies have been looked at)
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for root in 0..stages.len() {
        if marks[root] != Mark::New {
            continue;
        }
        marks[root] = Mark::Active;
        stack.push((root, 0));
        while let Some((i, next)) = stack.last_mut() {
            let Some(dep) = stages[*i].dependencies.get(*next) else {
                marks[*i] = Mark::Done;
                stack.pop();
                continue;
            };
            *next += 1;
            match marks[dep.0] {
                Mark::New => {
                    marks[dep.0] = Mark::Active;
                    stack.push((dep.0, 0));
                }
                Mark::Active => diags.push(cycle_error(&stages[dep.0])),
                Mark::Done => {}
            }
        }
    }
}

fn cycle_error(stage: &Stage) -> Diagnostic {
    let name = stage
        .name
        .as_ref()
        .map_or_else(|| format!("stage {}", stage.id.0), |n| format!("`{n}`"));
    Diagnostic::error(
        Code::StageCycle,
        stage.location.span,
        format!("circular dependency detected on stage {name}"),
    )
    .with_label("this stage depends on itself")
    .with_help("a stage named like an image it builds on refers to itself; rename the stage")
}

/// Which stages `target` needs (itself included), indexed by [`StageId`].
fn reachable(stages: &[Stage], target: StageId) -> Vec<bool> {
    let mut seen = vec![false; stages.len()];
    seen[target.0] = true;
    let mut queue = vec![target];
    while let Some(id) = queue.pop() {
        for dep in &stages[id.0].dependencies {
            if !seen[dep.0] {
                seen[dep.0] = true;
                queue.push(*dep);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn plan_of(
        src: &str,
        args: &[(&str, &str)],
        target: Option<&str>,
    ) -> Result<BuildPlan, Diagnostics> {
        let df = parse(src).unwrap();
        let opts = PlanOptions {
            build_args: args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            target: target.map(str::to_owned),
            ..PlanOptions::default()
        };
        plan(&df, &opts)
    }

    fn codes(d: &Diagnostics) -> Vec<Code> {
        d.iter().map(|d| d.code).collect()
    }

    #[test]
    fn global_args_expand_in_from() {
        let src = "ARG BASE=alpine\nARG TAG=${BASE}-3\nFROM ${BASE}:${TAG:-x}\n";
        let p = plan_of(src, &[], None).unwrap();
        let StageBase::Image { reference, .. } = &p.stages[0].base else {
            panic!()
        };
        assert_eq!(reference, "alpine:alpine-3");
        let p = plan_of(src, &[("TAG", "edge")], None).unwrap();
        let StageBase::Image { reference, .. } = &p.stages[0].base else {
            panic!()
        };
        assert_eq!(reference, "alpine:edge");
        assert_eq!(p.global_args[1].value.as_deref(), Some("edge"));
    }

    #[test]
    fn stages_bases_and_pruning() {
        let src = "FROM scratch AS Base\nFROM base AS build\nRUN x\nFROM alpine AS unused\n\
                   FROM busybox\nCOPY --from=BUILD /a /b\nCOPY --from=0 /c /d\nCOPY --from=nginx /e /f\n";
        let p = plan_of(src, &[], None).unwrap();
        let ids: Vec<usize> = p.stages.iter().map(|s| s.id.0).collect();
        assert_eq!(ids, [0, 1, 3]);
        assert_eq!(p.target, 2);
        assert_eq!(p.stages[0].base, StageBase::Scratch);
        assert_eq!(p.stages[1].base, StageBase::Stage(StageId(0)));
        let target = p.target_stage();
        assert_eq!(target.dependencies, [StageId(0), StageId(1)]);
        let froms: Vec<_> = target
            .steps
            .iter()
            .map(|s| match &s.kind {
                StepKind::Copy(c) => c.from.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(
            froms,
            [
                Some(CopyFrom::Stage(StageId(1))),
                Some(CopyFrom::Stage(StageId(0))),
                Some(CopyFrom::Image("nginx".into()))
            ]
        );
        let p = plan_of(src, &[], Some("unused")).unwrap();
        assert_eq!(p.stages.len(), 1);
        assert_eq!(p.target_stage().name.as_ref().unwrap().as_str(), "unused");
    }

    #[test]
    fn run_mount_from_is_a_dependency() {
        let src = "FROM a AS deps\nFROM b AS other\nFROM c\nRUN --mount=type=bind,from=deps,target=/d x\n";
        let p = plan_of(src, &[], None).unwrap();
        assert_eq!(p.stages.len(), 2);
        assert_eq!(p.target_stage().dependencies, [StageId(0)]);
    }

    #[test]
    fn arg_values_in_stages() {
        let src = "ARG V=global\nARG W\nFROM a\nARG V\nARG X=dflt\nARG Y\nARG W\n";
        let p = plan_of(src, &[("Y", "given")], None).unwrap();
        let values: Vec<ArgValue> = p.stages[0]
            .steps
            .iter()
            .map(|s| match &s.kind {
                StepKind::Arg(a) => a.args[0].value.clone(),
                _ => panic!(),
            })
            .collect();
        assert_eq!(values[0], ArgValue::Global("global".into()));
        assert!(matches!(&values[1], ArgValue::Default(w) if w.raw() == "dflt"));
        assert_eq!(values[2], ArgValue::BuildArg("given".into()));
        assert_eq!(values[3], ArgValue::Unset);
    }

    #[test]
    fn errors() {
        let err = plan_of("FROM a AS x\nFROM b AS X\n", &[], None).unwrap_err();
        assert_eq!(codes(&err), [Code::DuplicateStageName]);
        let err = plan_of("FROM a AS a\n", &[], None).unwrap_err();
        assert_eq!(codes(&err), [Code::StageCycle]);
        let err = plan_of(
            "FROM b AS a\nCOPY --from=c x y\nFROM a AS c\n",
            &[],
            Some("a"),
        )
        .unwrap_err();
        assert_eq!(codes(&err), [Code::StageCycle]);
        let err = plan_of("FROM a\nCOPY --from=3 x y\n", &[], None).unwrap_err();
        assert_eq!(codes(&err), [Code::UndefinedStage]);
        let err = plan_of("FROM a AS build\n", &[], Some("buld")).unwrap_err();
        assert_eq!(codes(&err), [Code::UnknownTarget]);
        assert_eq!(
            err.iter().next().unwrap().help.as_deref(),
            Some("did you mean `build`?")
        );
        let err = plan_of("RUN x\nARG A\n", &[], None).unwrap_err();
        assert_eq!(codes(&err), [Code::NoStage]);
        let err = plan_of("ARG A\n", &[], None).unwrap_err();
        assert_eq!(codes(&err), [Code::NoStage]);
        let err = plan_of("ARG A\nFROM ${A}\n", &[], None).unwrap_err();
        assert_eq!(codes(&err), [Code::EmptyBaseName]);
        let err = plan_of("ARG A\nFROM ${A:?required}\n", &[], None).unwrap_err();
        assert_eq!(codes(&err), [Code::ExpansionFailed]);
    }

    /// Stage chains far longer than a thread's stack could recurse through: each stage
    /// builds on the one before, and the last one also on itself.
    #[test]
    fn long_stage_chains_plan_without_recursion() {
        let n = 30_000;
        let mut src = String::from("FROM scratch AS s0\n");
        for i in 1..n {
            src.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
        }
        let p = plan_of(&src, &[], None).unwrap();
        assert_eq!(p.stages.len(), n);
        assert_eq!(
            p.stage(StageId(n - 1)).unwrap().base,
            StageBase::Stage(StageId(n - 2))
        );
        src.push_str(&format!("FROM s{n} AS s{n}\n"));
        let err = plan_of(&src, &[], Some("s0")).unwrap_err();
        assert_eq!(codes(&err), [Code::StageCycle]);
    }

    #[test]
    fn automatic_args_reach_from_and_declared_stage_args() {
        let df = crate::parse(
            "FROM --platform=$BUILDPLATFORM img:$TARGETARCH AS b\nARG TARGETOS\nARG UNDECLARED\n\
             FROM scratch\nARG TARGETARCH=override\n",
        )
        .unwrap();
        let opts = PlanOptions {
            automatic_args: [
                ("BUILDPLATFORM", "linux/amd64"),
                ("TARGETARCH", "amd64"),
                ("TARGETOS", "linux"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            target: Some("b".into()),
            ..PlanOptions::default()
        };
        let plan = plan(&df, &opts).unwrap();
        let stage = plan.target_stage();
        assert_eq!(stage.platform.as_deref(), Some("linux/amd64"));
        assert!(
            matches!(&stage.base, StageBase::Image { reference, .. } if reference == "img:amd64")
        );
        let StepKind::Arg(os) = &stage.steps[0].kind else {
            panic!("ARG step")
        };
        assert_eq!(os.args[0].value, ArgValue::Global("linux".into()));
        let StepKind::Arg(undeclared) = &stage.steps[1].kind else {
            panic!("ARG step")
        };
        assert_eq!(undeclared.args[0].value, ArgValue::Unset);
    }
}
