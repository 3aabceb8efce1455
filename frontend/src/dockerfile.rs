//! [`Dockerfile`]: the typed instructions of a whole file, and [`parse`].
//!
//! Responsible for: running the syntax layer and the typed layer over a whole file and
//! collecting every diagnostic of both.
//! Not responsible for: stages or expansion (`plan`).

use serde::Serialize;

use crate::diagnostic::Diagnostics;
use crate::instructions::{Instruction, from_node};
use crate::lexer::Directives;
use crate::span::LineIndex;
use crate::syntax::parse_ast_lenient;

/// A parsed Dockerfile: every instruction typed, in file order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    pub directives: Directives,
    /// The escape token in force (`\` unless `# escape=` says otherwise).
    pub escape: char,
    pub instructions: Vec<Instruction>,
    /// Findings that do not stop the build (e.g. empty continuation lines).
    pub warnings: Diagnostics,
}

/// Parses Dockerfile text into typed instructions, reporting every error found.
pub fn parse(source: &str) -> Result<Dockerfile, Diagnostics> {
    let (ast, mut diags, broken) = parse_ast_lenient(source);
    let lines = LineIndex::new(source);
    let instructions = ast
        .nodes
        .iter()
        .zip(broken)
        .filter(|(_, broken)| !broken)
        .filter_map(|(node, _)| from_node(node, &lines, ast.escape, &mut diags))
        .collect();
    if !diags.is_empty() {
        // Report in file order, whichever layer found the problem.
        let mut all = diags.into_vec();
        all.sort_by_key(|d| d.span.start);
        let mut diags: Diagnostics = all.into_iter().collect();
        diags.extend(ast.warnings);
        return Err(diags);
    }
    Ok(Dockerfile {
        directives: ast.directives,
        escape: ast.escape,
        instructions,
        warnings: ast.warnings,
    })
}
