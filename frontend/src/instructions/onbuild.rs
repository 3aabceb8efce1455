//! `ONBUILD <instruction>`: a trigger stored in the image for its children.
//!
//! Responsible for: parsing the trigger as a full instruction (so mistakes are found
//! now, not in a child build), refusing `ONBUILD ONBUILD`, `ONBUILD FROM` and
//! `ONBUILD MAINTAINER`, and keeping the trigger text BuildKit stores.
//! Not responsible for: running triggers (the engine does, when a build uses an image
//! that has them). Trigger words are not expanded now.

use serde::Serialize;

use super::{Ctx, Instruction, from_node};
use crate::diagnostic::{Code, Diagnostic, Diagnostics};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OnbuildCommand {
    /// The trigger as it goes into the image config's `OnBuild` list: the text after
    /// `ONBUILD`, with heredoc bodies appended as BuildKit does.
    pub expression: String,
    pub trigger: Box<Instruction>,
}

pub(super) fn parse(ctx: &Ctx<'_>, diags: &mut Diagnostics) -> Option<OnbuildCommand> {
    super::flags::Flags::parse(ctx, &[], diags);
    let Some(next) = &ctx.node.next else {
        diags.push(
            ctx.arg_count_error("at least one argument")
                .with_help("write `ONBUILD <instruction>`"),
        );
        return None;
    };
    let keyword = next.keyword.to_ascii_uppercase();
    let refused = match keyword.as_str() {
        "ONBUILD" => Some("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned()),
        "FROM" | "MAINTAINER" => Some(format!("{keyword} isn't allowed as an ONBUILD trigger")),
        _ => None,
    };
    if let Some(message) = refused {
        diags.push(
            Diagnostic::error(Code::InvalidOnbuild, next.keyword_span, message)
                .with_label("not allowed here"),
        );
        return None;
    }
    let mut trigger_node = (**next).clone();
    trigger_node.heredocs = ctx.node.heredocs.clone();
    trigger_node.span = ctx.node.span;
    trigger_node.original = next.original.clone();
    let trigger = from_node(&trigger_node, ctx.lines, ctx.escape, diags)?;
    let mut expression = next.original.clone();
    for heredoc in &ctx.node.heredocs {
        expression.push('\n');
        expression.push_str(&heredoc.content);
        expression.push_str(&heredoc.name);
    }
    Some(OnbuildCommand {
        expression,
        trigger: Box::new(trigger),
    })
}
