//! Checks on single instructions and on a stage's instructions together:
//! `DuplicateStageName`, `MaintainerDeprecated`, `JSONArgsRecommended`,
//! `MultipleInstructionsDisallowed`, `LegacyKeyValueFormat`, `SecretsUsedInArgOrEnv`
//! and `NoEmptyContinuation`.
//!
//! Responsible for: BuildKit's conditions for these rules —
//! * `JSONArgsRecommended`: a shell-form `CMD`/`ENTRYPOINT` in a stage with no
//!   `SHELL` (set in the stage or in a stage it builds on; a base image is assumed to
//!   set none);
//! * `MultipleInstructionsDisallowed`: a second `CMD`, `ENTRYPOINT` or `HEALTHCHECK`
//!   in one stage, reported at the earlier one (the one that is ignored);
//! * `LegacyKeyValueFormat`: `ENV`/`LABEL key value` (no `=`), detected exactly as the
//!   parser decides it;
//! * `SecretsUsedInArgOrEnv`: an `ARG` (inside a stage) or `ENV` name with a
//!   `_`-separated part equal (without case) to `apikey`, `auth`, `credential(s)`,
//!   `key`, `password`, `pword`, `passwd`, `secret` or `token`, unless another part is
//!   `public` — BuildKit's patterns, so `API_URL` or `KEYCLOAK_HOST` are fine;
//! * `NoEmptyContinuation`: each empty continuation line the parser found (its
//!   `F0301` warning), with the same span.
//!
//! Not responsible for: variables (`variables`) or keyword case (`casing`).

use super::layout::{Base, Layout, keyword_as_written};
use super::{Findings, Rule, go_quote};
use crate::diagnostic::Code;
use crate::dockerfile::Dockerfile;
use crate::instructions::{CommandLine, Instruction, InstructionKind, KeyValue};
use crate::syntax::words;

const SECRET_TOKENS: &[&str] = &[
    "apikey",
    "auth",
    "credential",
    "credentials",
    "key",
    "password",
    "pword",
    "passwd",
    "secret",
    "token",
];
const ALLOWED_TOKENS: &[&str] = &["public"];

pub(super) fn check_empty_continuations(df: &Dockerfile, findings: &mut Findings) {
    for warning in df
        .warnings
        .iter()
        .filter(|d| d.code == Code::EmptyContinuationLine)
    {
        findings.push(
            Rule::NoEmptyContinuation,
            warning.span,
            "Empty continuation line".to_owned(),
            Some("remove the empty lines inside the instruction".to_owned()),
        );
    }
}

pub(super) fn check(layout: &Layout<'_>, escape: char, findings: &mut Findings) {
    duplicate_stage_names(layout, findings);
    // Whether a SHELL is in force at the end of each stage, for stages built on it.
    let mut shell_at_end: Vec<bool> = Vec::with_capacity(layout.stages.len());
    for stage in &layout.stages {
        let mut shell = match stage.base {
            Base::Stage(i) => shell_at_end.get(i).copied().unwrap_or(false),
            _ => false,
        };
        let mut last = UsedOnce::default();
        for &instruction in &stage.steps {
            match &instruction.kind {
                InstructionKind::Shell(_) => shell = true,
                InstructionKind::Cmd(c) => {
                    json_args(instruction, &c.command, c.span, shell, findings);
                    last.cmd = used_again(last.cmd, instruction, findings);
                }
                InstructionKind::Entrypoint(c) => {
                    json_args(instruction, &c.command, c.span, shell, findings);
                    last.entrypoint = used_again(last.entrypoint, instruction, findings);
                }
                InstructionKind::Healthcheck(_) => {
                    last.healthcheck = used_again(last.healthcheck, instruction, findings);
                }
                InstructionKind::Maintainer(_) => findings.push(
                    Rule::MaintainerDeprecated,
                    instruction.keyword_span,
                    "Maintainer instruction is deprecated in favor of using label".to_owned(),
                    Some("write `LABEL org.opencontainers.image.authors=\"...\"`".to_owned()),
                ),
                InstructionKind::Env(env) => {
                    legacy_key_value(instruction, &env.pairs, escape, findings);
                    for pair in &env.pairs {
                        secret_name("ENV", pair.key.raw(), pair.key.span(), findings);
                    }
                }
                InstructionKind::Label(label) => {
                    legacy_key_value(instruction, &label.pairs, escape, findings);
                }
                InstructionKind::Arg(arg) => {
                    for decl in &arg.args {
                        secret_name("ARG", &decl.name, decl.name_span, findings);
                    }
                }
                _ => {}
            }
        }
        shell_at_end.push(shell);
    }
}

fn duplicate_stage_names(layout: &Layout<'_>, findings: &mut Findings) {
    for (i, stage) in layout.stages.iter().enumerate() {
        let (Some(name), Some(span)) = (&stage.from.name, stage.from.name_span) else {
            continue;
        };
        let earlier = layout.stages[..i]
            .iter()
            .find(|s| s.from.name.as_ref() == Some(name));
        if let Some(earlier) = earlier {
            findings.push(
                Rule::DuplicateStageName,
                span,
                format!(
                    "Duplicate stage name {}, stage names should be unique",
                    go_quote(name.as_str())
                ),
                Some(format!(
                    "line {} already names a stage `{name}`; give each stage a different name",
                    earlier.from_instruction.location.line
                )),
            );
        }
    }
}

fn json_args(
    instruction: &Instruction,
    command: &CommandLine,
    args_span: crate::span::Span,
    shell_set: bool,
    findings: &mut Findings,
) {
    if shell_set || !matches!(command, CommandLine::Shell(_)) {
        return;
    }
    let keyword = keyword_as_written(instruction);
    findings.push(
        Rule::JSONArgsRecommended,
        args_span,
        format!(
            "JSON arguments recommended for {keyword} to prevent unintended behavior related to OS signals"
        ),
        Some(format!(
            "write `{} [\"executable\", \"arg\"]`, or set `SHELL` explicitly to keep the shell form",
            keyword.to_uppercase()
        )),
    );
}

/// The last `CMD`, `ENTRYPOINT` and `HEALTHCHECK` seen in the stage.
#[derive(Default)]
struct UsedOnce<'d> {
    cmd: Option<&'d Instruction>,
    entrypoint: Option<&'d Instruction>,
    healthcheck: Option<&'d Instruction>,
}

/// Reports `previous` (which `current` overrides) and returns the new last one.
fn used_again<'d>(
    previous: Option<&'d Instruction>,
    current: &'d Instruction,
    findings: &mut Findings,
) -> Option<&'d Instruction> {
    if let Some(previous) = previous {
        let keyword = keyword_as_written(current);
        findings.push(
            Rule::MultipleInstructionsDisallowed,
            previous.keyword_span,
            format!(
                "Multiple {keyword} instructions should not be used in the same stage because only the last one will be used"
            ),
            Some(format!(
                "line {} overrides this one; remove one of them",
                current.location.line
            )),
        );
    }
    Some(current)
}

/// `ENV key value`: the parser's rule is that the first word has no `=`.
fn legacy_key_value(
    instruction: &Instruction,
    pairs: &[KeyValue],
    escape: char,
    findings: &mut Findings,
) {
    let keyword = keyword_as_written(instruction);
    let args = instruction.original[keyword.len()..].trim_start();
    let first = words(args, 0, args.len(), escape);
    let legacy = first.first().is_some_and(|(w, _, _)| !w.contains('='));
    let [pair] = pairs else { return };
    if !legacy {
        return;
    }
    let value = pair.value.raw();
    let fixed = if value.contains(char::is_whitespace) && !value.starts_with(['"', '\'']) {
        format!("{keyword} {}=\"{value}\"", pair.key.raw())
    } else {
        format!("{keyword} {}={value}", pair.key.raw())
    };
    findings.push(
        Rule::LegacyKeyValueFormat,
        pair.span,
        format!(
            "\"{keyword} key=value\" should be used instead of legacy \"{keyword} key value\" format"
        ),
        Some(format!("write `{fixed}`")),
    );
}

fn secret_name(instruction: &str, name: &str, span: crate::span::Span, findings: &mut Findings) {
    let parts = || name.split('_').map(str::to_lowercase);
    let secret = parts().any(|p| SECRET_TOKENS.contains(&p.as_str()));
    let allowed = parts().any(|p| ALLOWED_TOKENS.contains(&p.as_str()));
    if secret && !allowed {
        findings.push(
            Rule::SecretsUsedInArgOrEnv,
            span,
            format!(
                "Do not use ARG or ENV instructions for sensitive data ({instruction} {})",
                go_quote(name)
            ),
            Some(
                "values of ARG and ENV are kept in the image; pass secrets with `RUN --mount=type=secret`"
                    .to_owned(),
            ),
        );
    }
}
