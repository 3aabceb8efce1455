//! Fuzz target: Dockerfile text → syntax dump → typed parse → plan → word expansion.
//!
//! Drives the whole pure frontend the way `kiln build` does: [`frontend::dump`] (the
//! syntax layer), [`frontend::parse`] (the typed layer), [`frontend::plan`] (stages,
//! global `ARG`s, `--target`), then every word the engine expands, stage by stage, with
//! the variables an engine would have at that step (`ENV` and `ARG` values collected in
//! order). Diagnostics are rendered, since rendering slices the source by spans.
//!
//! Besides "no panic, no hang", it checks invariants that hold for any input:
//! * what the typed layer accepts, the syntax layer accepts, and its dump has one line
//!   per instruction;
//! * every span (diagnostics, stage locations, words) lies inside the source, on
//!   character boundaries.
//!
//! Values are capped at [`MAX_VALUE`] bytes before they are stored as variables:
//! `ENV A=$A$A` doubles `A` on every line, which is BuildKit's semantics too, so the
//! exponential growth of such files is the language's, not a bug to report.

#![no_main]

use std::collections::BTreeMap;

use frontend::{
    ArgValue, BuildPlan, Diagnostics, PlanOptions, Span, StageBase, StepKind, Word, dump, parse,
    plan,
};
use libfuzzer_sys::fuzz_target;

/// Longest variable value kept while walking a stage (see the module docs).
const MAX_VALUE: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    // The frontend takes `&str`: non-UTF-8 input is refused before it (by the CLI).
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
});

fn check(text: &str) {
    let dumped = dump(text);
    if let Err(diags) = &dumped {
        check_diagnostics(text, diags);
    }
    let dockerfile = match parse(text) {
        Ok(dockerfile) => dockerfile,
        Err(diags) => {
            check_diagnostics(text, &diags);
            return;
        }
    };
    let Ok(dumped) = dumped else {
        panic!("the typed layer accepted a file the syntax layer rejects");
    };
    assert!(dumped.ends_with('\n'), "a dump ends with a newline");
    assert!(
        dockerfile.instructions.len() <= dumped.lines().count(),
        "more typed instructions than syntax nodes"
    );
    check_diagnostics(text, &dockerfile.warnings);

    let mut options = PlanOptions::default();
    options
        .build_args
        .insert("FUZZ_BUILD_ARG".to_owned(), "${x}$y\\z".to_owned());
    let built = match plan(&dockerfile, &options) {
        Ok(built) => built,
        Err(diags) => {
            check_diagnostics(text, &diags);
            return;
        }
    };
    walk_plan(text, &built);

    // Choosing an earlier stage as the target exercises pruning.
    let first_named = built.stages.iter().find_map(|s| s.name.as_ref());
    if let Some(name) = first_named {
        options.target = Some(name.as_str().to_owned());
        match plan(&dockerfile, &options) {
            Ok(pruned) => walk_plan(text, &pruned),
            Err(diags) => check_diagnostics(text, &diags),
        }
    }
}

fn check_span(text: &str, span: Span, what: &str) {
    assert!(
        span.start <= span.end
            && span.end <= text.len()
            && text.is_char_boundary(span.start)
            && text.is_char_boundary(span.end),
        "{what} span {span:?} is not a range of the {}-byte source",
        text.len()
    );
}

fn check_diagnostics(text: &str, diags: &Diagnostics) {
    for diag in diags.iter() {
        check_span(text, diag.span, "diagnostic");
    }
    let rendered = diags.render("Dockerfile", text);
    assert!(diags.is_empty() || !rendered.is_empty());
}

/// A stage's variables as the engine sees them at one step.
#[derive(Default)]
struct Scope {
    vars: BTreeMap<String, String>,
}

impl Scope {
    fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        |name| self.vars.get(name).cloned()
    }

    fn expand(&self, text: &str, word: &Word) -> Option<String> {
        check_span(text, word.span(), "word");
        let value = word.expand(&self.lookup()).ok()?;
        // `expand_words` must agree with `expand` on whether the word is valid.
        assert!(
            word.expand_words(&self.lookup()).is_ok(),
            "expand_words failed where expand succeeded: {:?}",
            word.raw()
        );
        Some(value)
    }

    fn set(&mut self, name: String, value: String) {
        if value.len() <= MAX_VALUE {
            self.vars.insert(name, value);
        } else {
            self.vars.remove(&name);
        }
    }
}

fn walk_plan(text: &str, built: &BuildPlan) {
    assert!(built.target < built.stages.len());
    for stage in &built.stages {
        check_span(text, stage.location.span, "stage");
        if let StageBase::Image { span, .. } = &stage.base {
            check_span(text, *span, "base image");
        }
        for dep in &stage.dependencies {
            assert!(
                built.stage(*dep).is_some(),
                "a kept stage depends on a pruned one"
            );
        }
        let mut scope = Scope::default();
        for arg in &built.global_args {
            if let Some(value) = &arg.value {
                scope.set(arg.name.clone(), value.clone());
            }
        }
        for step in &stage.steps {
            check_span(text, step.location.span, "step");
            walk_step(text, &step.kind, &mut scope);
        }
    }
}

fn walk_step(text: &str, kind: &StepKind, scope: &mut Scope) {
    let words: Vec<&Word> = match kind {
        StepKind::Env(env) => {
            for pair in &env.pairs {
                let key = scope.expand(text, &pair.key);
                let value = scope.expand(text, &pair.value);
                if let (Some(key), Some(value)) = (key, value) {
                    scope.set(key, value);
                }
            }
            return;
        }
        StepKind::Arg(arg) => {
            for binding in &arg.args {
                let value = match &binding.value {
                    ArgValue::BuildArg(value) | ArgValue::Global(value) => Some(value.clone()),
                    ArgValue::Default(word) => scope.expand(text, word),
                    ArgValue::Unset => None,
                };
                if let Some(default) = &binding.default {
                    check_span(text, default.span(), "ARG default");
                }
                match value {
                    Some(value) => scope.set(binding.name.clone(), value),
                    None => {
                        scope.vars.remove(&binding.name);
                    }
                }
            }
            return;
        }
        StepKind::Label(label) => label
            .pairs
            .iter()
            .flat_map(|p| [&p.key, &p.value])
            .collect(),
        StepKind::Copy(copy) => copy
            .sources
            .iter()
            .chain([&copy.dest])
            .chain(copy.chown.iter())
            .chain(copy.chmod.iter())
            .chain(copy.exclude.iter())
            .collect(),
        StepKind::Add(add) => add
            .sources
            .iter()
            .chain([&add.dest])
            .chain(add.chown.iter())
            .chain(add.chmod.iter())
            .chain(add.exclude.iter())
            .chain(add.checksum.iter())
            .collect(),
        StepKind::Expose(expose) => {
            for port in &expose.ports {
                check_span(text, port.span(), "EXPOSE port");
                let _ = port.expand_words(&scope.lookup());
            }
            return;
        }
        StepKind::Volume(volume) => volume.paths.iter().collect(),
        StepKind::User(user) => vec![&user.user],
        StepKind::Workdir(workdir) => vec![&workdir.path],
        StepKind::StopSignal(signal) => vec![&signal.signal],
        StepKind::Run(run) => run.flags.iter().filter_map(|f| f.value.as_ref()).collect(),
        StepKind::Cmd(_)
        | StepKind::Entrypoint(_)
        | StepKind::Shell(_)
        | StepKind::Maintainer(_)
        | StepKind::Onbuild(_)
        | StepKind::Healthcheck(_) => Vec::new(),
    };
    for word in words {
        let _ = scope.expand(text, word);
    }
}
