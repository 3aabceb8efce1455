//! Which checks run and how their findings count: the `# check=` parser directive and
//! the `BUILDKIT_DOCKERFILE_CHECK` build argument.
//!
//! Responsible for: reading BuildKit's check settings — `skip=Rule1,Rule2` or
//! `skip=all`, `error=true|false`, `experimental=...` — separated by `;`, with
//! BuildKit's precedence (the build argument replaces the directive as a whole), and
//! reporting what is wrong with them as diagnostics pointing into the directive.
//! Not responsible for: finding the directive in the file (the lexer records it with
//! BuildKit's placement rules: only at the top, before any instruction, comment or
//! blank line), or running the checks.
//!
//! Differences from BuildKit, all on the lenient side: an unknown key is a warning
//! (BuildKit fails the build), an unknown rule name in `skip=` is a warning with a
//! suggestion (BuildKit ignores it), and any number of `;`-separated parts is read
//! (BuildKit splits into at most three). A part without `=` or an `error=` value that is
//! not a boolean is an error-severity diagnostic, as BuildKit fails on those; the part
//! is ignored and the rest still applies. `experimental=` is accepted and has no
//! effect: none of kiln's checks is experimental.

use crate::checks::rule::{Rule, UNIMPLEMENTED_BUILDKIT_RULES};
use crate::diagnostic::{Code, Diagnostic};
use crate::lexer::Directives;
use crate::span::Span;
use crate::suggest;

/// The build argument BuildKit reads check settings from.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// Rules turned off by `skip=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// `skip=all`.
    All,
    /// `skip=A,B`; empty when nothing is skipped.
    Rules(Vec<Rule>),
}

impl Default for Skip {
    fn default() -> Self {
        Skip::Rules(Vec::new())
    }
}

impl Skip {
    pub fn skips(&self, rule: Rule) -> bool {
        match self {
            Skip::All => true,
            Skip::Rules(rules) => rules.contains(&rule),
        }
    }
}

/// The check settings in force for one build.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip: Skip,
    /// `error=true`: any finding fails the build.
    pub error: bool,
}

/// Where the settings text came from, to point diagnostics at it.
#[derive(Clone, Copy, Debug)]
enum Origin {
    /// The `# check=` directive; the span of its value.
    Directive(Span),
    BuildArg,
}

impl Origin {
    fn span(self, start: usize, end: usize) -> Span {
        match self {
            Origin::Directive(value) => Span::new(value.start + start, value.start + end),
            Origin::BuildArg => Span::empty(0),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Origin::Directive(_) => "the `# check=` directive",
            Origin::BuildArg => "the build argument BUILDKIT_DOCKERFILE_CHECK",
        }
    }
}

/// The settings for a build: from the `BUILDKIT_DOCKERFILE_CHECK` build argument if
/// given, else from the `# check=` directive, else the defaults. Problems with the
/// settings are returned as diagnostics.
pub fn resolve(directives: &Directives, build_arg: Option<&str>) -> (CheckConfig, Vec<Diagnostic>) {
    match (build_arg, &directives.check) {
        (Some(text), _) => parse(text, Origin::BuildArg),
        (None, Some(directive)) => parse(&directive.value, Origin::Directive(directive.value_span)),
        (None, None) => (CheckConfig::default(), Vec::new()),
    }
}

fn parse(text: &str, origin: Origin) -> (CheckConfig, Vec<Diagnostic>) {
    let mut config = CheckConfig::default();
    let mut problems = Vec::new();
    let mut offset = 0;
    for part in text.split(';') {
        let start = offset;
        offset += part.len() + 1;
        if part.trim().is_empty() {
            continue;
        }
        let span = origin.span(start, start + part.len());
        let Some((key, value)) = part.split_once('=') else {
            problems.push(
                Diagnostic::error(
                    Code::InvalidCheckOption,
                    span,
                    format!(
                        "invalid check option `{}` in {}",
                        part.trim(),
                        origin.describe()
                    ),
                )
                .with_label("expected key=value")
                .with_help("write e.g. `check=skip=JSONArgsRecommended;error=true`"),
            );
            continue;
        };
        let value_start = start + key.len() + 1;
        match key.trim() {
            "skip" => config.skip = parse_skip(value, value_start, origin, &mut problems),
            "error" => match parse_bool(value.trim()) {
                Some(b) => config.error = b,
                None => problems.push(
                    Diagnostic::error(
                        Code::InvalidCheckOption,
                        span,
                        format!(
                            "invalid value `{}` for check option `error` in {}",
                            value.trim(),
                            origin.describe()
                        ),
                    )
                    .with_label("not a boolean")
                    .with_help("write `error=true` or `error=false`"),
                ),
            },
            // kiln has no experimental checks, so there is nothing to enable.
            "experimental" => {}
            other => problems.push(
                Diagnostic::warning(
                    Code::InvalidCheckOption,
                    span,
                    format!(
                        "unknown check option `{other}` in {}; ignored",
                        origin.describe()
                    ),
                )
                .with_help_opt(
                    suggest::closest(other, ["skip", "error", "experimental"])
                        .map(|s| format!("did you mean `{s}`?")),
                ),
            ),
        }
    }
    (config, problems)
}

fn parse_skip(
    value: &str,
    value_start: usize,
    origin: Origin,
    problems: &mut Vec<Diagnostic>,
) -> Skip {
    if value.trim() == "all" {
        return Skip::All;
    }
    let mut rules = Vec::new();
    let mut offset = value_start;
    for item in value.split(',') {
        let start = offset + (item.len() - item.trim_start().len());
        offset += item.len() + 1;
        let name = item.trim();
        if name.is_empty() {
            continue;
        }
        match Rule::from_name(name) {
            Some(rule) => rules.push(rule),
            None if UNIMPLEMENTED_BUILDKIT_RULES.contains(&name) => {}
            None => problems.push(
                Diagnostic::warning(
                    Code::InvalidCheckOption,
                    origin.span(start, start + name.len()),
                    format!("unknown check `{name}` in skip list; ignored"),
                )
                .with_label("not a check name")
                .with_help_opt(
                    suggest::closest(name, Rule::ALL.iter().map(|r| r.name()))
                        .map(|s| format!("did you mean `{s}`? names are case-sensitive")),
                ),
            ),
        }
    }
    Skip::Rules(rules)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Severity;
    use crate::lexer::Directive;

    fn directive(value: &str) -> Directives {
        Directives {
            check: Some(Directive {
                value: value.to_owned(),
                span: Span::new(0, value.len() + 8),
                value_span: Span::new(8, 8 + value.len()),
            }),
            ..Directives::default()
        }
    }

    #[test]
    fn skip_and_error() {
        let (c, p) = resolve(
            &directive("skip=FromAsCasing, UndefinedVar ;error=true"),
            None,
        );
        assert!(p.is_empty());
        assert_eq!(
            c.skip,
            Skip::Rules(vec![Rule::FromAsCasing, Rule::UndefinedVar])
        );
        assert!(c.error);
        let (c, _) = resolve(&directive("skip=all"), None);
        assert!(c.skip.skips(Rule::UndefinedVar));
        let (c, p) = resolve(&directive("experimental=all; skip=CopyIgnoredFile"), None);
        assert_eq!(c, CheckConfig::default());
        assert!(p.is_empty());
    }

    #[test]
    fn build_arg_replaces_the_directive() {
        let (c, _) = resolve(&directive("skip=all;error=true"), Some("error=false"));
        assert_eq!(c, CheckConfig::default());
    }

    #[test]
    fn problems_point_into_the_directive() {
        let d = directive("skip=fromascasing;error=maybe;colour=red;bare");
        let (c, p) = resolve(&d, None);
        assert_eq!(c, CheckConfig::default());
        let got: Vec<_> = p
            .iter()
            .map(|d| (d.severity, d.span.start - 8, d.span.len()))
            .collect();
        assert_eq!(
            got,
            [
                (Severity::Warning, 5, 12),
                (Severity::Error, 18, 11),
                (Severity::Warning, 30, 10),
                (Severity::Error, 41, 4),
            ]
        );
        assert_eq!(
            p[0].help.as_deref(),
            Some("did you mean `FromAsCasing`? names are case-sensitive")
        );
    }
}
