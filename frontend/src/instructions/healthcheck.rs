//! `HEALTHCHECK NONE` and `HEALTHCHECK [--interval ...] CMD <command>`.
//!
//! Responsible for: the test type, the command form, and the flags with Go duration
//! syntax (`1m30s`) and BuildKit's limits (not negative; 0 or at least 1ms).
//! Not responsible for: running health checks.

use std::time::Duration;

use serde::Serialize;

use super::Ctx;
use super::command::CommandLine;
use super::flags::{FlagKind, Flags};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::word::Word;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum HealthcheckCommand {
    /// `HEALTHCHECK NONE`: disable any health check inherited from the base image.
    None,
    Cmd(HealthcheckTest),
}

/// `HEALTHCHECK CMD ...`. Options left out keep the image's (or Docker's) defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthcheckTest {
    /// Exec form becomes `["CMD", ...]` in the image config, shell form `["CMD-SHELL", s]`.
    pub test: CommandLine,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

const FLAGS: &[(&str, FlagKind)] = &[
    ("interval", FlagKind::String),
    ("timeout", FlagKind::String),
    ("start-period", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("retries", FlagKind::String),
];

pub(super) fn parse(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<HealthcheckCommand> {
    let args = &ctx.node.args;
    let Some(kind) = args.first() else {
        diags.push(
            ctx.arg_count_error("at least one argument")
                .with_help("write `HEALTHCHECK CMD <command>` or `HEALTHCHECK NONE`"),
        );
        return None;
    };
    let rest = &args[1..];
    if kind.text.eq_ignore_ascii_case("none") {
        // Like BuildKit, flags are not looked at for NONE.
        if let Some(extra) = rest.first() {
            diags.push(
                Diagnostic::error(
                    Code::InvalidHealthcheck,
                    extra.span.to(rest[rest.len() - 1].span),
                    "HEALTHCHECK NONE takes no arguments",
                )
                .with_label("unexpected"),
            );
            return None;
        }
        return Some(HealthcheckCommand::None);
    }
    let flags = Flags::parse(ctx, FLAGS, diags);
    if !kind.text.eq_ignore_ascii_case("cmd") {
        diags.push(
            Diagnostic::error(
                Code::InvalidHealthcheck,
                kind.span,
                format!("unknown type `{}` in HEALTHCHECK", kind.text),
            )
            .with_label("expected CMD or NONE")
            .with_help("write `HEALTHCHECK CMD <command>`"),
        );
        return None;
    }
    let test = if ctx.node.json {
        CommandLine::Exec(rest.iter().map(|a| a.text.clone()).collect())
    } else {
        CommandLine::Shell(
            rest.iter()
                .map(|a| a.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        )
    };
    let empty = match &test {
        CommandLine::Exec(v) => v.is_empty(),
        CommandLine::Shell(s) => s.is_empty(),
    };
    if empty {
        diags.push(
            Diagnostic::error(
                Code::InvalidHealthcheck,
                kind.span,
                "missing command after HEALTHCHECK CMD",
            )
            .with_label("no command"),
        );
        return None;
    }
    let mut duration = |name: &str| {
        let word = flags.string(name)?;
        interval(name, &word, diags)
    };
    let interval_ = duration("interval");
    let timeout = duration("timeout");
    let start_period = duration("start-period");
    let start_interval = duration("start-interval");
    let retries = flags
        .string("retries")
        .and_then(|w| match w.raw().parse::<i64>() {
            Ok(n) if n >= 0 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
            Ok(n) => {
                diags.push(Diagnostic::error(
                    Code::InvalidFlagValue,
                    w.span(),
                    format!("--retries cannot be negative ({n})"),
                ));
                None
            }
            Err(_) => {
                diags.push(Diagnostic::error(
                    Code::InvalidFlagValue,
                    w.span(),
                    format!("--retries must be a whole number, not `{}`", w.raw()),
                ));
                None
            }
        });
    Some(HealthcheckCommand::Cmd(HealthcheckTest {
        test,
        interval: interval_,
        timeout,
        start_period,
        start_interval,
        retries,
    }))
}

/// BuildKit's `parseOptInterval`: a Go duration, not negative, 0 or at least 1ms.
fn interval(name: &str, word: &Word, diags: &mut Diagnostics) -> Option<Duration> {
    let fail = |diags: &mut Diagnostics, msg: String| {
        diags.push(
            Diagnostic::error(Code::InvalidFlagValue, word.span(), msg)
                .with_help("use a duration such as `30s`, `1m30s` or `500ms`"),
        );
        None
    };
    match parse_go_duration(word.raw()) {
        Some((true, d)) if !d.is_zero() => fail(
            diags,
            format!("--{name} cannot be negative (`{}`)", word.raw()),
        ),
        Some((_, d)) if !d.is_zero() && d < Duration::from_millis(1) => fail(
            diags,
            format!("--{name} cannot be less than 1ms (`{}`)", word.raw()),
        ),
        Some((_, d)) => Some(d),
        None => fail(
            diags,
            format!("invalid duration `{}` for --{name}", word.raw()),
        ),
    }
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+` or `0`.
/// Returns (negative, magnitude).
pub(crate) fn parse_go_duration(s: &str) -> Option<(bool, Duration)> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some((negative, Duration::ZERO));
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * nanos_per;
    }
    if total > u64::MAX as f64 {
        return None;
    }
    Some((negative, Duration::from_nanos(total.round() as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s| parse_go_duration(s).map(|(neg, d)| (neg, d.as_millis()));
        assert_eq!(d("30s"), Some((false, 30_000)));
        assert_eq!(d("1m30s"), Some((false, 90_000)));
        assert_eq!(d("1.5h"), Some((false, 5_400_000)));
        assert_eq!(d("-2ms"), Some((true, 2)));
        assert_eq!(d("0"), Some((false, 0)));
        assert_eq!(d("10"), None);
        assert_eq!(d("5x"), None);
        assert_eq!(d(""), None);
    }
}
