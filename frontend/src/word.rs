//! [`Word`]: Dockerfile text that is expanded later, with the variables of the moment.
//!
//! Responsible for: carrying a word exactly as written (quotes, `$VAR`s and escapes
//! intact), its span, and the file's escape token, and expanding it on request.
//! Not responsible for: deciding what the variables are — inside a stage that needs the
//! base image's `ENV`, which only the engine knows.

use std::fmt;

use serde::Serialize;

use crate::expand::{self, ExpandError};
use crate::span::Span;

/// A word as written in the Dockerfile, not yet expanded.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Word {
    raw: String,
    span: Span,
    escape: char,
}

impl Word {
    pub fn new(raw: impl Into<String>, span: Span, escape: char) -> Self {
        Self {
            raw: raw.into(),
            span,
            escape,
        }
    }

    /// The text as written (after continuation lines were joined, and for flag values
    /// after the flag parser removed one level of quotes, as BuildKit does).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn span(&self) -> Span {
        self.span
    }

    /// The escape token of the file the word comes from.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands the word as one word (BuildKit's `ProcessWord`): quotes removed,
    /// variables substituted from `lookup`, whitespace kept.
    pub fn expand(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, ExpandError> {
        expand::expand(&self.raw, self.escape, lookup)
    }

    /// Expands the word and splits it at unquoted whitespace (BuildKit's `ProcessWords`).
    pub fn expand_words(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<String>, ExpandError> {
        expand::expand_words(&self.raw, self.escape, lookup)
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_with_its_own_escape() {
        let w = Word::new("`$HOME/${X:-x}", Span::new(0, 13), '`');
        assert_eq!(w.expand(&|_| None).unwrap(), "$HOME/x");
        let w = Word::new("\"a b\" $V", Span::default(), '\\');
        let lookup = |n: &str| (n == "V").then(|| "c d".to_owned());
        assert_eq!(w.expand_words(&lookup).unwrap(), ["a b", "c", "d"]);
    }
}
