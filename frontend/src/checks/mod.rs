//! Build checks: BuildKit's Dockerfile lint rules, by their names, with their
//! messages and documentation links (`docker build --check`).
//!
//! Responsible for: running every [`Rule`] over a parsed [`Dockerfile`], honouring the
//! `# check=` directive and the `BUILDKIT_DOCKERFILE_CHECK` build argument
//! ([`config`]), and returning the findings as warning [`Diagnostic`]s whose code is
//! the rule (`warning[FromAsCasing]: ...`).
//! Not responsible for: failing the build (the caller does, when
//! [`CheckReport::failure`] says so), printing, or knowing the base images: their
//! `ENV` comes from [`CheckOptions::base_env`], which only the engine can answer.
//!
//! # Files
//!
//! `rule` (names, descriptions, URLs), `config` (skip/error settings), `layout`
//! (stages and bases), `casing` (ConsistentInstructionCasing, FromAsCasing,
//! StageNameCasing), `instructions` (DuplicateStageName, MaintainerDeprecated,
//! JSONArgsRecommended, MultipleInstructionsDisallowed, LegacyKeyValueFormat,
//! SecretsUsedInArgOrEnv, NoEmptyContinuation), `variables` (UndefinedVar,
//! UndefinedArgInFrom, WorkdirRelativePath).
//!
//! # Unknown base images
//!
//! A variable used in a stage may be defined by the base image's `ENV`. When
//! [`CheckOptions::base_env`] is absent or answers `None` for a stage's base image,
//! `UndefinedVar` reports nothing in that stage (or in stages built on it): every
//! variable could come from the image, and a lint that cries wolf gets skipped. Stages
//! on `scratch` are fully checked. For the same reason `WorkdirRelativePath` is not
//! reported when the path uses a variable whose value is unknown, and
//! `JSONArgsRecommended` assumes a base image sets no `SHELL` (true of nearly all).

mod casing;
pub mod config;
mod instructions;
mod layout;
pub mod rule;
mod variables;

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::dockerfile::Dockerfile;
use crate::span::Span;

pub use config::{CHECK_BUILD_ARG, CheckConfig, Skip};
pub use rule::Rule;

/// The `ENV` of a base image, as `KEY=VALUE` entries (the image config's `Env`), or
/// `None` when it is not known. Called with the reference after global-`ARG` expansion.
pub type BaseEnvLookup<'a> = &'a dyn Fn(&str) -> Option<Vec<String>>;

/// Inputs of the checks that do not come from the Dockerfile.
#[derive(Clone, Default)]
pub struct CheckOptions<'a> {
    /// `--build-arg NAME=VALUE`, as for planning; `BUILDKIT_DOCKERFILE_CHECK` here
    /// overrides the `# check=` directive.
    pub build_args: BTreeMap<String, String>,
    /// The engine's answer to "what `ENV` does this base image have?".
    pub base_env: Option<BaseEnvLookup<'a>>,
}

impl fmt::Debug for CheckOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckOptions")
            .field("build_args", &self.build_args)
            .field("base_env", &self.base_env.map(|_| "<lookup>"))
            .finish()
    }
}

/// One finding of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckWarning {
    pub rule: Rule,
    /// Severity [`Warning`](crate::Severity::Warning), code [`Code::Check`], BuildKit's
    /// message, a span on the offending text and a `help:` on how to fix it.
    pub diagnostic: Diagnostic,
}

/// What the checks found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Findings of rules not skipped, in file order.
    pub warnings: Vec<CheckWarning>,
    /// `error=true`: the build must fail if there are warnings.
    pub errors_as_failures: bool,
    /// Rules turned off by `skip=` (every rule for `skip=all`).
    pub skipped: Vec<Rule>,
    /// Problems with the check settings themselves (malformed `# check=`, unknown
    /// option or rule names). Error-severity ones are those BuildKit fails the build on.
    pub config_problems: Vec<Diagnostic>,
}

/// Why checks fail a build.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CheckError {
    /// `error=true` and some rules found something (BuildKit's message).
    #[error("lint violation found for rules: {}", rule_list(.rules))]
    Violations { rules: Vec<Rule> },
}

fn rule_list(rules: &[Rule]) -> String {
    rules
        .iter()
        .map(|r| r.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl CheckReport {
    /// `Some` when the build must fail: `error=true` and at least one warning.
    pub fn failure(&self) -> Option<CheckError> {
        if !self.errors_as_failures || self.warnings.is_empty() {
            return None;
        }
        let mut rules: Vec<Rule> = self.warnings.iter().map(|w| w.rule).collect();
        rules.sort();
        rules.dedup();
        Some(CheckError::Violations { rules })
    }

    /// The configuration problems, then the warnings, ready to render.
    pub fn diagnostics(&self) -> Diagnostics {
        self.config_problems
            .iter()
            .cloned()
            .chain(self.warnings.iter().map(|w| w.diagnostic.clone()))
            .collect()
    }
}

/// Runs every build check over `df`.
pub fn check(df: &Dockerfile, opts: &CheckOptions<'_>) -> CheckReport {
    let (config, config_problems) = config::resolve(
        &df.directives,
        opts.build_args.get(CHECK_BUILD_ARG).map(String::as_str),
    );
    let layout = layout::Layout::of(df, &opts.build_args);
    let mut findings = Findings::default();
    instructions::check_empty_continuations(df, &mut findings);
    casing::check(&layout, &mut findings);
    instructions::check(&layout, df.escape, &mut findings);
    variables::check(&layout, opts, &mut findings);

    let mut warnings: Vec<CheckWarning> = findings
        .0
        .into_iter()
        .filter(|w| !config.skip.skips(w.rule))
        .collect();
    warnings.sort_by_key(|w| (w.diagnostic.span.start, w.rule));
    CheckReport {
        warnings,
        errors_as_failures: config.error,
        skipped: Rule::ALL
            .into_iter()
            .filter(|r| config.skip.skips(*r))
            .collect(),
        config_problems,
    }
}

/// Findings collected by the rule modules.
#[derive(Default)]
struct Findings(Vec<CheckWarning>);

impl Findings {
    fn push(&mut self, rule: Rule, span: Span, message: String, help: Option<String>) {
        self.0.push(CheckWarning {
            rule,
            diagnostic: Diagnostic::warning(Code::Check(rule), span, message).with_help_opt(help),
        });
    }
}

/// Go's `%q` for the names and paths quoted in BuildKit's messages.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
