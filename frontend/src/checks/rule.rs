//! [`Rule`]: the build checks kiln runs, named and described exactly as BuildKit's
//! `frontend/dockerfile/linter` names them.
//!
//! Responsible for: the list of rules, their names, descriptions and documentation
//! URLs, and finding a rule by name (for `# check=skip=...`). Also knows the names of
//! BuildKit rules kiln does not implement, so skipping them is not reported as a typo.
//! Not responsible for: deciding when a rule fires (the sibling check modules).

use std::fmt;

use serde::Serialize;

/// One build check. The variant names are BuildKit's rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Rule {
    StageNameCasing,
    FromAsCasing,
    NoEmptyContinuation,
    ConsistentInstructionCasing,
    DuplicateStageName,
    JSONArgsRecommended,
    MaintainerDeprecated,
    UndefinedArgInFrom,
    WorkdirRelativePath,
    UndefinedVar,
    MultipleInstructionsDisallowed,
    LegacyKeyValueFormat,
    SecretsUsedInArgOrEnv,
}

/// BuildKit rules that kiln does not check (they need the image resolver, the build
/// context or are experimental). Naming them in `skip=` is accepted silently.
pub const UNIMPLEMENTED_BUILDKIT_RULES: &[&str] = &[
    "ReservedStageName",
    "InvalidBaseImagePlatform",
    "RedundantTargetPlatform",
    "InvalidDefaultArgInFrom",
    "FromPlatformFlagConstDisallowed",
    "CopyIgnoredFile",
    "InvalidDefinitionDescription",
    "ExposeProtoCasing",
    "ExposeInvalidFormat",
];

impl Rule {
    /// Every rule kiln implements, in BuildKit's order.
    pub const ALL: [Rule; 13] = [
        Rule::StageNameCasing,
        Rule::FromAsCasing,
        Rule::NoEmptyContinuation,
        Rule::ConsistentInstructionCasing,
        Rule::DuplicateStageName,
        Rule::JSONArgsRecommended,
        Rule::MaintainerDeprecated,
        Rule::UndefinedArgInFrom,
        Rule::WorkdirRelativePath,
        Rule::UndefinedVar,
        Rule::MultipleInstructionsDisallowed,
        Rule::LegacyKeyValueFormat,
        Rule::SecretsUsedInArgOrEnv,
    ];

    /// BuildKit's rule name, e.g. `FromAsCasing`.
    pub const fn name(self) -> &'static str {
        match self {
            Rule::StageNameCasing => "StageNameCasing",
            Rule::FromAsCasing => "FromAsCasing",
            Rule::NoEmptyContinuation => "NoEmptyContinuation",
            Rule::ConsistentInstructionCasing => "ConsistentInstructionCasing",
            Rule::DuplicateStageName => "DuplicateStageName",
            Rule::JSONArgsRecommended => "JSONArgsRecommended",
            Rule::MaintainerDeprecated => "MaintainerDeprecated",
            Rule::UndefinedArgInFrom => "UndefinedArgInFrom",
            Rule::WorkdirRelativePath => "WorkdirRelativePath",
            Rule::UndefinedVar => "UndefinedVar",
            Rule::MultipleInstructionsDisallowed => "MultipleInstructionsDisallowed",
            Rule::LegacyKeyValueFormat => "LegacyKeyValueFormat",
            Rule::SecretsUsedInArgOrEnv => "SecretsUsedInArgOrEnv",
        }
    }

    /// BuildKit's one-sentence description of the rule.
    pub const fn description(self) -> &'static str {
        match self {
            Rule::StageNameCasing => "Stage names should be lowercase",
            Rule::FromAsCasing => "The 'as' keyword should match the case of the 'from' keyword",
            Rule::NoEmptyContinuation => {
                "Empty continuation lines will become errors in a future release"
            }
            Rule::ConsistentInstructionCasing => {
                "All commands within the Dockerfile should use the same casing (either upper or lower)"
            }
            Rule::DuplicateStageName => "Stage names should be unique",
            Rule::JSONArgsRecommended => {
                "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals"
            }
            Rule::MaintainerDeprecated => {
                "The MAINTAINER instruction is deprecated, use a label instead to define an image author"
            }
            Rule::UndefinedArgInFrom => "FROM command must use declared ARGs",
            Rule::WorkdirRelativePath => {
                "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes"
            }
            Rule::UndefinedVar => "Variables should be defined before their use",
            Rule::MultipleInstructionsDisallowed => {
                "Multiple instructions of the same type should not be used in the same stage"
            }
            Rule::LegacyKeyValueFormat => {
                "Legacy key/value format with whitespace separator should not be used"
            }
            Rule::SecretsUsedInArgOrEnv => {
                "Sensitive data should not be used in the ARG or ENV commands"
            }
        }
    }

    /// The rule's documentation page,
    /// `https://docs.docker.com/go/dockerfile/rule/<kebab-case-name>/`.
    pub fn url(self) -> String {
        format!(
            "https://docs.docker.com/go/dockerfile/rule/{}/",
            kebab_case(self.name())
        )
    }

    /// The rule with this exact name (BuildKit compares rule names case-sensitively).
    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `JSONArgsRecommended` → `json-args-recommended`: a dash before an upper-case letter
/// that follows a lower-case one, or that starts a word after an acronym.
fn kebab_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if prev.is_ascii_lowercase() || (prev.is_ascii_uppercase() && next_lower) {
                out.push('-');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_kebab_case() {
        assert_eq!(
            Rule::JSONArgsRecommended.url(),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        assert_eq!(
            Rule::SecretsUsedInArgOrEnv.url(),
            "https://docs.docker.com/go/dockerfile/rule/secrets-used-in-arg-or-env/"
        );
        assert_eq!(
            Rule::UndefinedArgInFrom.url(),
            "https://docs.docker.com/go/dockerfile/rule/undefined-arg-in-from/"
        );
    }

    #[test]
    fn names_round_trip() {
        for rule in Rule::ALL {
            assert_eq!(Rule::from_name(rule.name()), Some(rule));
            assert_eq!(format!("{rule:?}"), rule.name());
        }
        assert_eq!(Rule::from_name("fromascasing"), None);
    }
}
