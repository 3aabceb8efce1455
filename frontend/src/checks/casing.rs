//! How keywords and stage names are written: `ConsistentInstructionCasing`,
//! `FromAsCasing` and `StageNameCasing`.
//!
//! Responsible for: BuildKit's rules on case — every instruction keyword should follow
//! the majority's case (the keywords of `FROM` and of instructions inside stages are
//! counted, not global `ARG`s; a tie means upper case; a mixed-case keyword such as
//! `Run` counts for neither and is always reported), `AS` should be written in the
//! case of its `FROM` (unless `FROM` itself is mixed case), and stage names should be
//! lower case.
//! Not responsible for: instruction semantics.

use super::layout::{Layout, keyword_as_written, span_in_original, tokens};
use super::{Findings, Rule};
use crate::instructions::{FromCommand, Instruction, InstructionKind};

pub(super) fn check(layout: &Layout<'_>, findings: &mut Findings) {
    instruction_casing(layout, findings);
    for stage in &layout.stages {
        from_as_casing(stage.from_instruction, findings);
        stage_name_casing(stage.from_instruction, findings);
    }
}

fn is_self_consistent(s: &str) -> bool {
    s == s.to_lowercase() || s == s.to_uppercase()
}

fn instruction_casing(layout: &Layout<'_>, findings: &mut Findings) {
    let counted: Vec<&Instruction> = layout
        .stages
        .iter()
        .flat_map(|s| std::iter::once(s.from_instruction).chain(s.steps.iter().copied()))
        .collect();
    let (mut lower, mut upper) = (0usize, 0usize);
    for instruction in &counted {
        let keyword = keyword_as_written(instruction);
        if is_self_consistent(keyword) {
            if keyword == keyword.to_lowercase() {
                lower += 1;
            } else {
                upper += 1;
            }
        }
    }
    let majority_lower = lower > upper;
    for instruction in counted {
        let keyword = keyword_as_written(instruction);
        let (casing, fixed) = if majority_lower {
            ("lowercase", keyword.to_lowercase())
        } else {
            ("uppercase", keyword.to_uppercase())
        };
        if keyword != fixed {
            findings.push(
                Rule::ConsistentInstructionCasing,
                instruction.keyword_span,
                format!(
                    "Command '{keyword}' should match the case of the command majority ({casing})"
                ),
                Some(format!("write `{fixed}`")),
            );
        }
    }
}

/// `FROM image AS name` where `AS` is not in the case of `FROM`.
fn from_as_casing(instruction: &Instruction, findings: &mut Findings) {
    let InstructionKind::From(FromCommand { name: Some(_), .. }) = &instruction.kind else {
        return;
    };
    let words = tokens(&instruction.original);
    // The name and `AS` are the last two words (flag values come before the image).
    let [(_, from), .., (as_offset, as_word), _] = words.as_slice() else {
        return;
    };
    if words.len() < 4 || !as_word.eq_ignore_ascii_case("as") {
        return;
    }
    let from_lower = *from == from.to_lowercase();
    let from_upper = *from == from.to_uppercase();
    let expected = match (from_lower, from_upper) {
        (true, _) => as_word.to_lowercase(),
        (_, true) => as_word.to_uppercase(),
        // ConsistentInstructionCasing reports a mixed-case FROM.
        _ => return,
    };
    if *as_word == expected {
        return;
    }
    let span = span_in_original(instruction, *as_offset, as_word.len())
        .unwrap_or(instruction.keyword_span);
    findings.push(
        Rule::FromAsCasing,
        span,
        format!("'{as_word}' and '{from}' keywords' casing do not match"),
        Some(format!("write `{expected}`")),
    );
}

/// `FROM image AS Name`.
fn stage_name_casing(instruction: &Instruction, findings: &mut Findings) {
    let InstructionKind::From(from) = &instruction.kind else {
        return;
    };
    let (Some(name_span), Some((_, written))) = (
        from.name_span,
        tokens(&instruction.original).last().copied(),
    ) else {
        return;
    };
    let lower = written.to_lowercase();
    if written != lower {
        findings.push(
            Rule::StageNameCasing,
            name_span,
            format!("Stage name '{written}' should be lowercase"),
            Some(format!(
                "write `{lower}`; stage names are compared without case"
            )),
        );
    }
}
