//! `FROM [--platform=<p>] <image> [AS <name>]` and the [`StageName`] type.
//!
//! Responsible for: the shape of a `FROM` line and validating stage names.
//! Not responsible for: expanding the image with global `ARG`s or resolving stage
//! references (`plan`).

use std::fmt;

use serde::Serialize;
use thiserror::Error;

use super::Ctx;
use super::flags::{FlagKind, Flags};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::span::Span;
use crate::word::Word;

/// `FROM`: the start of a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FromCommand {
    /// The base: an image reference, a stage name or `scratch`, unexpanded.
    pub image: Word,
    pub platform: Option<Word>,
    pub name: Option<StageName>,
    pub name_span: Option<Span>,
}

/// A stage name. Names are compared without case, so the name is kept lower-cased;
/// it starts with a letter and continues with letters, digits, `-`, `_` and `.`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StageName(String);

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error(
    "invalid stage name `{name}`: it must start with a letter and contain only letters, digits, `-`, `_` and `.`"
)]
pub struct StageNameError {
    pub name: String,
}

impl StageName {
    pub fn new(name: &str) -> Result<Self, StageNameError> {
        let lower = name.to_ascii_lowercase();
        let mut chars = lower.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if valid {
            Ok(Self(lower))
        } else {
            Err(StageNameError {
                name: name.to_owned(),
            })
        }
    }

    /// The lower-cased name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` names this stage (compared without case).
    pub fn matches(&self, text: &str) -> bool {
        self.0.eq_ignore_ascii_case(text)
    }
}

impl fmt::Display for StageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(super) fn parse(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<FromCommand> {
    let flags = Flags::parse(ctx, &[("platform", FlagKind::String)], diags);
    let args = &ctx.node.args;
    let (name, name_span) = match args.len() {
        1 => (None, None),
        3 if args[1].text.eq_ignore_ascii_case("as") => match StageName::new(&args[2].text) {
            Ok(name) => (Some(name), Some(args[2].span)),
            Err(e) => {
                diags.push(
                    Diagnostic::error(Code::InvalidStageName, args[2].span, e.to_string())
                        .with_label("not a valid stage name"),
                );
                return None;
            }
        },
        3 => {
            diags.push(
                Diagnostic::error(
                    Code::InvalidFrom,
                    args[1].span,
                    format!("expected `AS` in FROM, found `{}`", args[1].text),
                )
                .with_help("write `FROM <image> AS <name>`"),
            );
            return None;
        }
        n => {
            let d = ctx
                .arg_count_error("either one or three arguments")
                .with_help("write `FROM <image>` or `FROM <image> AS <name>`");
            let d = if n > 3 {
                Diagnostic {
                    label: Some(format!("{n} arguments")),
                    ..d
                }
            } else {
                d
            };
            diags.push(Diagnostic {
                code: Code::InvalidFrom,
                ..d
            });
            return None;
        }
    };
    Some(FromCommand {
        image: Word::new(&args[0].text, args[0].span, ctx.escape),
        platform: flags.string("platform"),
        name,
        name_span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names() {
        assert_eq!(
            StageName::new("Build-1.x_y").unwrap().as_str(),
            "build-1.x_y"
        );
        assert!(StageName::new("1abc").is_err());
        assert!(StageName::new("a/b").is_err());
        assert!(StageName::new("").is_err());
        assert!(StageName::new("abc").unwrap().matches("ABC"));
    }
}
