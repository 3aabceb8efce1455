//! Build checks (`frontend::check`): for every rule a Dockerfile that triggers it (rule,
//! line:column and BuildKit's message asserted) and near misses that must not; the
//! `# check=` directive and `BUILDKIT_DOCKERFILE_CHECK`; and the real-world corpus
//! (`shared/conformance/realworld`), whose findings are snapshotted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use frontend::checks::{CHECK_BUILD_ARG, Skip};
use frontend::{CheckOptions, CheckReport, Location, Rule, Severity, check, parse};

/// `(rule, line, column, message)` for every warning.
type Found = Vec<(String, u32, u32, String)>;

fn report(src: &str, opts: &CheckOptions<'_>) -> CheckReport {
    let df = parse(src).unwrap_or_else(|d| panic!("{}", d.render("Dockerfile", src)));
    check(&df, opts)
}

fn found_with(src: &str, opts: &CheckOptions<'_>) -> Found {
    report(src, opts)
        .warnings
        .iter()
        .map(|w| {
            assert_eq!(w.diagnostic.severity, Severity::Warning);
            let loc = Location::of(w.diagnostic.span, src);
            (
                w.rule.name().to_owned(),
                loc.line,
                loc.column,
                w.diagnostic.message.clone(),
            )
        })
        .collect()
}

fn found(src: &str) -> Found {
    found_with(src, &CheckOptions::default())
}

/// Findings of one rule only.
fn only(rule: Rule, found: Found) -> Found {
    found
        .into_iter()
        .filter(|(r, ..)| r == rule.name())
        .collect()
}

fn one(rule: &str, line: u32, column: u32, message: &str) -> Found {
    vec![(rule.to_owned(), line, column, message.to_owned())]
}

/// A base image whose `ENV` the engine knows.
fn known_base(reference: &str) -> Option<Vec<String>> {
    match reference {
        "golang:1.22" => Some(vec![
            "PATH=/usr/local/go/bin:/usr/bin".to_owned(),
            "GOPATH=/go".to_owned(),
        ]),
        "alpine" => Some(vec!["PATH=/usr/bin:/bin".to_owned()]),
        _ => None,
    }
}

fn with_base_env() -> CheckOptions<'static> {
    CheckOptions {
        base_env: Some(&known_base),
        ..CheckOptions::default()
    }
}

#[test]
fn json_args_recommended() {
    assert_eq!(
        found("FROM alpine\nCMD echo hi\n"),
        one(
            "JSONArgsRecommended",
            2,
            5,
            "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals"
        )
    );
    assert_eq!(
        found("FROM alpine\nENTRYPOINT exec app\n"),
        one(
            "JSONArgsRecommended",
            2,
            12,
            "JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals"
        )
    );
    // Exec form; a SHELL in the stage; a SHELL in the stage it builds on.
    assert_eq!(found("FROM alpine\nCMD [\"echo\", \"hi\"]\n"), []);
    assert_eq!(
        found("FROM alpine\nSHELL [\"/bin/bash\", \"-c\"]\nENTRYPOINT exec app\n"),
        []
    );
    assert_eq!(
        found("FROM alpine AS base\nSHELL [\"/bin/ash\", \"-c\"]\nFROM base\nCMD app\n"),
        []
    );
    // RUN's shell form is never reported.
    assert_eq!(found("FROM alpine\nRUN echo hi\n"), []);
}

#[test]
fn from_as_casing() {
    assert_eq!(
        only(Rule::FromAsCasing, found("FROM alpine as build\n")),
        one(
            "FromAsCasing",
            1,
            13,
            "'as' and 'FROM' keywords' casing do not match"
        )
    );
    assert_eq!(
        only(Rule::FromAsCasing, found("from alpine AS build\n")),
        one(
            "FromAsCasing",
            1,
            13,
            "'AS' and 'from' keywords' casing do not match"
        )
    );
    assert_eq!(found("from alpine as build\n"), []);
    assert_eq!(
        found("FROM --platform=$BUILDPLATFORM alpine AS build\n"),
        []
    );
    // A mixed-case FROM is ConsistentInstructionCasing's business only.
    assert_eq!(
        only(Rule::FromAsCasing, found("From alpine as build\n")),
        []
    );
}

#[test]
fn undefined_var() {
    let opts = with_base_env();
    assert_eq!(
        found_with("FROM scratch\nCOPY $SRC /app\n", &opts),
        one("UndefinedVar", 2, 6, "Usage of undefined variable '$SRC'")
    );
    assert_eq!(
        found_with(
            "FROM alpine\nENV APP_HOME=/app\nWORKDIR ${APP_HOM}/bin\n",
            &opts
        ),
        one(
            "UndefinedVar",
            3,
            9,
            "Usage of undefined variable '$APP_HOM' (did you mean $APP_HOME?)"
        )
    );
    // `${V:-default}` is a use of V, and all words of one ENV see the scope before it.
    assert_eq!(
        found_with("FROM scratch\nENV A=1 B=${A:-2}\n", &opts),
        one("UndefinedVar", 2, 11, "Usage of undefined variable '$A'")
    );
    // A COPY heredoc body is expanded too.
    assert_eq!(
        found_with("FROM scratch\nCOPY <<EOF /motd\nhi $WHO\nEOF\n", &opts),
        one("UndefinedVar", 2, 6, "Usage of undefined variable '$WHO'")
    );
    // Defined by ARG (even without a value), ENV, the base image or a parent stage;
    // automatic platform and proxy ARGs; words nothing expands (RUN, CMD).
    let near_misses = [
        "FROM scratch\nARG SRC\nCOPY $SRC /app\n",
        "FROM scratch\nENV SRC=.\nCOPY ${SRC:-.} /app\n",
        "FROM golang:1.22\nWORKDIR $GOPATH/src\n",
        "FROM alpine AS base\nARG V=1\nENV W=2\nFROM base\nLABEL v=$V w=$W p=$PATH\n",
        "FROM scratch\nCOPY app-$TARGETARCH /app\nUSER $HTTP_PROXY\n",
        "FROM scratch\nRUN echo $NOPE\nCMD echo $NOPE\n",
        "FROM scratch\nCOPY <<'EOF' /motd\nhi $WHO\nEOF\n",
    ];
    for src in near_misses {
        assert_eq!(
            only(Rule::UndefinedVar, found_with(src, &opts)),
            [],
            "{src}"
        );
    }
    // An image whose ENV the engine does not know could define anything.
    assert_eq!(found_with("FROM debian\nCOPY $SRC /app\n", &opts), []);
    assert_eq!(found("FROM alpine\nCOPY $SRC /app\n"), []);
}

#[test]
fn undefined_arg_in_from() {
    assert_eq!(
        found("FROM alpine:$VERSION\n"),
        one(
            "UndefinedArgInFrom",
            1,
            13,
            "FROM argument 'VERSION' is not declared"
        )
    );
    assert_eq!(
        found("ARG VERSION=3\nFROM alpine:${VERSIN}\n"),
        one(
            "UndefinedArgInFrom",
            2,
            13,
            "FROM argument 'VERSIN' is not declared (did you mean VERSION?)"
        )
    );
    assert_eq!(found("ARG VERSION\nFROM alpine:${VERSION:-3}\n"), []);
    assert_eq!(found("FROM --platform=$BUILDPLATFORM alpine\n"), []);
}

#[test]
fn maintainer_deprecated() {
    assert_eq!(
        found("FROM alpine\nMAINTAINER me <me@example.com>\n"),
        one(
            "MaintainerDeprecated",
            2,
            1,
            "Maintainer instruction is deprecated in favor of using label"
        )
    );
    assert_eq!(
        found("FROM alpine\nLABEL org.opencontainers.image.authors=me\n"),
        []
    );
}

#[test]
fn legacy_key_value_format() {
    assert_eq!(
        found("FROM alpine\nENV greeting hello world\n"),
        one(
            "LegacyKeyValueFormat",
            2,
            5,
            "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format"
        )
    );
    assert_eq!(
        found("FROM alpine\nLABEL maintainer me\n"),
        one(
            "LegacyKeyValueFormat",
            2,
            7,
            "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format"
        )
    );
    assert_eq!(
        found("FROM alpine\nENV greeting=\"hello world\"\nLABEL a=b c=d\n"),
        []
    );
}

#[test]
fn stage_name_casing() {
    assert_eq!(
        found("FROM alpine AS Build\n"),
        one(
            "StageNameCasing",
            1,
            16,
            "Stage name 'Build' should be lowercase"
        )
    );
    assert_eq!(found("FROM alpine AS build-1.x\n"), []);
}

#[test]
fn duplicate_stage_name() {
    // `plan` rejects this file; the checks still run.
    assert_eq!(
        found("FROM alpine AS base\nFROM debian AS base\n"),
        one(
            "DuplicateStageName",
            2,
            16,
            "Duplicate stage name \"base\", stage names should be unique"
        )
    );
    assert_eq!(found("FROM alpine AS base\nFROM debian AS base2\n"), []);
}

#[test]
fn multiple_instructions_disallowed() {
    let src = "FROM alpine\nCMD [\"a\"]\nHEALTHCHECK NONE\nCMD [\"b\"]\nHEALTHCHECK NONE\n";
    assert_eq!(
        found(src),
        [
            (
                "MultipleInstructionsDisallowed".to_owned(),
                2,
                1,
                "Multiple CMD instructions should not be used in the same stage because only the last one will be used".to_owned()
            ),
            (
                "MultipleInstructionsDisallowed".to_owned(),
                3,
                1,
                "Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used".to_owned()
            ),
        ]
    );
    assert_eq!(
        found("FROM alpine AS a\nCMD [\"a\"]\nFROM a\nCMD [\"b\"]\nENTRYPOINT [\"c\"]\n"),
        []
    );
}

#[test]
fn workdir_relative_path() {
    assert_eq!(
        found("FROM alpine\nWORKDIR app\n"),
        one(
            "WorkdirRelativePath",
            2,
            9,
            "Relative workdir \"app\" can have unexpected results if the base image changes"
        )
    );
    assert_eq!(
        found("FROM scratch\nARG DIR=src\nWORKDIR $DIR\n"),
        one(
            "WorkdirRelativePath",
            3,
            9,
            "Relative workdir \"src\" can have unexpected results if the base image changes"
        )
    );
    // Only the first WORKDIR of a stage (or of the stages it builds on) counts, and a
    // path whose value depends on the base image is not known.
    let near_misses = [
        "FROM alpine\nWORKDIR /app\nWORKDIR sub\n",
        "FROM alpine AS a\nWORKDIR /app\nFROM a\nWORKDIR sub\n",
        "FROM golang\nWORKDIR $GOPATH/src\n",
        "FROM alpine\nWORKDIR C:\\\\app\n",
    ];
    for src in near_misses {
        assert_eq!(found(src), [], "{src}");
    }
}

#[test]
fn secrets_used_in_arg_or_env() {
    let src = "FROM alpine\nARG GITHUB_TOKEN\nENV DB_PASSWORD=x api_key=y\n";
    assert_eq!(
        found(src),
        [
            (
                "SecretsUsedInArgOrEnv".to_owned(),
                2,
                5,
                "Do not use ARG or ENV instructions for sensitive data (ARG \"GITHUB_TOKEN\")"
                    .to_owned()
            ),
            (
                "SecretsUsedInArgOrEnv".to_owned(),
                3,
                5,
                "Do not use ARG or ENV instructions for sensitive data (ENV \"DB_PASSWORD\")"
                    .to_owned()
            ),
            (
                "SecretsUsedInArgOrEnv".to_owned(),
                3,
                19,
                "Do not use ARG or ENV instructions for sensitive data (ENV \"api_key\")"
                    .to_owned()
            ),
        ]
    );
    // `public` allows, tokens must be whole `_`-separated parts (so API_URL and
    // KEYCLOAK_HOST are fine), global ARGs are not checked, LABEL is not checked.
    assert_eq!(
        found(
            "ARG NPM_TOKEN\nFROM alpine\nARG PUBLIC_KEY\nENV API_URL=x KEYCLOAK_HOST=y\nLABEL token=z\n"
        ),
        []
    );
}

#[test]
fn consistent_instruction_casing() {
    assert_eq!(
        found("FROM alpine\nrun true\nCOPY a b\n"),
        one(
            "ConsistentInstructionCasing",
            2,
            1,
            "Command 'run' should match the case of the command majority (uppercase)"
        )
    );
    assert_eq!(
        found("from alpine\nRun true\ncopy a b\n"),
        one(
            "ConsistentInstructionCasing",
            2,
            1,
            "Command 'Run' should match the case of the command majority (lowercase)"
        )
    );
    // Global ARGs are not counted nor reported, as in BuildKit.
    assert_eq!(found("arg V=1\nfrom alpine\nrun true\n"), []);
    assert_eq!(found("arg V=1\nFROM alpine\nRUN true\n"), []);
}

#[test]
fn no_empty_continuation() {
    assert_eq!(
        found("FROM alpine\nRUN echo a \\\n\n  b\n"),
        one("NoEmptyContinuation", 2, 1, "Empty continuation line")
    );
    assert_eq!(found("FROM alpine\nRUN echo a \\\n# note\n  b\n"), []);
}

#[test]
fn renders_with_the_rule_name() {
    let src = "FROM alpine as build\n";
    let report = report(src, &CheckOptions::default());
    let expected = "\
warning[FromAsCasing]: 'as' and 'FROM' keywords' casing do not match
  --> Dockerfile:1:13
   |
 1 | FROM alpine as build
   |             ^^
   = help: write `AS`
";
    assert_eq!(report.diagnostics().render("Dockerfile", src), expected);
    let rule = report.warnings[0].rule;
    assert_eq!(
        rule.url(),
        "https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
    );
    assert_eq!(
        rule.description(),
        "The 'as' keyword should match the case of the 'from' keyword"
    );
}

#[test]
fn check_directive_skip_and_error() {
    let src = "# check=skip=JSONArgsRecommended;error=true\nFROM alpine\nCMD app\nMAINTAINER me\n";
    let r = report(src, &CheckOptions::default());
    assert_eq!(
        r.warnings.iter().map(|w| w.rule).collect::<Vec<_>>(),
        [Rule::MaintainerDeprecated]
    );
    assert_eq!(r.skipped, [Rule::JSONArgsRecommended]);
    assert!(r.errors_as_failures);
    assert_eq!(
        r.failure().unwrap().to_string(),
        "lint violation found for rules: MaintainerDeprecated"
    );

    let r = report(
        "# check=skip=all\nFROM alpine\nCMD app\n",
        &CheckOptions::default(),
    );
    assert!(r.warnings.is_empty());
    assert_eq!(r.skipped, Rule::ALL);
    assert!(r.failure().is_none());

    // error=true without findings does not fail.
    let r = report(
        "# check=error=true\nFROM alpine\n",
        &CheckOptions::default(),
    );
    assert!(r.errors_as_failures && r.failure().is_none());

    // The directive only counts at the top of the file.
    let r = report(
        "FROM alpine\n# check=skip=all\nCMD app\n",
        &CheckOptions::default(),
    );
    assert_eq!(r.warnings.len(), 1);
}

#[test]
fn build_arg_overrides_the_directive() {
    let src = "# check=skip=all\nFROM alpine\nCMD app\n";
    let opts = CheckOptions {
        build_args: BTreeMap::from([(CHECK_BUILD_ARG.to_owned(), "error=true".to_owned())]),
        ..CheckOptions::default()
    };
    let r = report(src, &opts);
    assert_eq!(r.warnings.len(), 1);
    assert!(r.failure().is_some());
}

#[test]
fn bad_settings_are_reported_and_ignored() {
    let src = "# check=skip=FromAsCasin;colour=red;error=yes\nFROM alpine as a\n";
    let r = report(src, &CheckOptions::default());
    let problems: Vec<_> = r
        .config_problems
        .iter()
        .map(|d| {
            (
                d.severity,
                Location::of(d.span, src).column,
                d.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [
            (
                Severity::Warning,
                14,
                "unknown check `FromAsCasin` in skip list; ignored"
            ),
            (
                Severity::Warning,
                26,
                "unknown check option `colour` in the `# check=` directive; ignored"
            ),
            (
                Severity::Error,
                37,
                "invalid value `yes` for check option `error` in the `# check=` directive"
            ),
        ]
    );
    assert_eq!(
        r.config_problems[0].help.as_deref(),
        Some("did you mean `FromAsCasing`? names are case-sensitive")
    );
    assert_eq!(r.warnings.len(), 1);
    assert!(!r.errors_as_failures);
    assert_eq!(
        r.diagnostics().iter().next().unwrap().code.as_str(),
        "F0117"
    );
    assert_eq!(Skip::default(), Skip::Rules(Vec::new()));
}

fn realworld_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/realworld");
    let mut files: Vec<PathBuf> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    files
}

/// Every real-world file is checked without panicking; the findings are snapshotted
/// (see the snapshot for why the surprising ones are right). Base images are unknown
/// here, as in a check without the engine, so `UndefinedVar` only speaks for stages
/// on `scratch`.
#[test]
fn realworld_corpus() {
    let files = realworld_files();
    assert_eq!(files.len(), 22);
    let mut out = String::new();
    for path in files {
        let src = String::from_utf8(fs_err::read(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy();
        writeln!(out, "{name}").unwrap();
        for (rule, line, column, message) in found(&src) {
            writeln!(out, "  {line}:{column} {rule}: {message}").unwrap();
        }
    }
    insta::assert_snapshot!(out);
}
