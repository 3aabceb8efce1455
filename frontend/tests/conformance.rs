//! Conformance of the syntax layer with BuildKit's parser corpus
//! (`shared/conformance/buildkit-parser`, `shared/conformance/realworld`): every
//! positive case must give BuildKit's dump byte for byte plus the line ranges, joined
//! text, heredocs and warnings of its `parse.json`; every negative case must fail.
//! Cases we knowingly do not match are listed with a reason and must keep failing, so
//! a fix shows up as a test change rather than going unnoticed.

use std::path::{Path, PathBuf};

use frontend::syntax::{Ast, parse_ast};
use serde_json::Value;

fn conformance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

fn read_source(path: &Path) -> Result<String, String> {
    let bytes = fs_err::read(path).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 (the API takes &str)".to_owned())
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// Known differences from BuildKit, by case name, with the reason.
const SYNTAX_EXPECTED_FAILURES: &[(&str, &str)] = &[(
    "nonprintable-quoting",
    "contains a byte that is not UTF-8; `parse` takes &str so the byte cannot be represented",
)];

struct Case {
    name: String,
    dockerfile: PathBuf,
    result: PathBuf,
    parse_json: Option<PathBuf>,
}

fn positive_cases() -> Vec<Case> {
    let root = conformance();
    let parser = root.join("buildkit-parser");
    let mut cases = Vec::new();
    for sub in ["testfiles", "extra/testfiles", "extra/heredocs"] {
        for dir in sorted_dirs(&parser.join(sub)) {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let parse_json = if sub == "testfiles" {
                parser.join(format!("extra/upstream-parse/{name}.parse.json"))
            } else {
                dir.join("parse.json")
            };
            cases.push(Case {
                name,
                dockerfile: dir.join("Dockerfile"),
                result: dir.join("result"),
                parse_json: parse_json.exists().then_some(parse_json),
            });
        }
    }
    let realworld = root.join("realworld");
    let mut files: Vec<PathBuf> = fs_err::read_dir(&realworld)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    for file in files {
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        cases.push(Case {
            result: realworld.join(format!("expected/{stem}.result")),
            parse_json: Some(realworld.join(format!("expected/{stem}.parse.json"))),
            name: stem,
            dockerfile: file,
        });
    }
    cases
}

fn check_parse_json(ast: &Ast, path: &Path) -> Result<(), String> {
    let json: Value = serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap();
    let escape = json["escape_token"].as_str().unwrap();
    if escape != ast.escape.to_string() {
        return Err(format!("escape token {escape:?} != {:?}", ast.escape));
    }
    let expected = json["instructions"].as_array().unwrap();
    if expected.len() != ast.nodes.len() {
        return Err(format!(
            "{} instructions, expected {}",
            ast.nodes.len(),
            expected.len()
        ));
    }
    for (node, want) in ast.nodes.iter().zip(expected) {
        let lines = (
            want["start_line"].as_u64().unwrap(),
            want["end_line"].as_u64().unwrap(),
        );
        if lines != (u64::from(node.start_line), u64::from(node.end_line)) {
            return Err(format!(
                "{}: lines {:?}, expected {lines:?}",
                node.original,
                (node.start_line, node.end_line)
            ));
        }
        if want["original"].as_str().unwrap() != node.original {
            return Err(format!(
                "original {:?} != {:?}",
                node.original, want["original"]
            ));
        }
        let heredocs = want["heredocs"].as_array().unwrap();
        let got: Vec<Value> = node
            .heredocs
            .iter()
            .map(|h| {
                serde_json::json!({
                    "name": h.name, "fd": h.fd, "expand": h.expand,
                    "chomp": h.chomp, "content": h.content,
                })
            })
            .collect();
        if &got != heredocs {
            return Err(format!(
                "{}: heredocs {got:?} != {heredocs:?}",
                node.original
            ));
        }
    }
    let warnings: Vec<String> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_lowercase())
        .collect();
    let got: Vec<String> = ast
        .warnings
        .iter()
        .map(|d| d.message.to_lowercase())
        .collect();
    if got != warnings {
        return Err(format!("warnings {got:?} != {warnings:?}"));
    }
    Ok(())
}

fn run_positive(case: &Case) -> Result<(), String> {
    let source = read_source(&case.dockerfile)?;
    let ast = parse_ast(&source).map_err(|d| d.render("Dockerfile", &source))?;
    let dump: String = ast.nodes.iter().map(|n| n.dump() + "\n").collect();
    let expected = String::from_utf8_lossy(&fs_err::read(&case.result).unwrap()).into_owned();
    if dump != expected {
        return Err(format!(
            "dump differs:\n--- got\n{dump}--- expected\n{expected}"
        ));
    }
    if let Some(path) = &case.parse_json {
        check_parse_json(&ast, path)?;
    }
    Ok(())
}

#[test]
fn syntax_positive_corpus() {
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in positive_cases() {
        match run_positive(&case) {
            Ok(()) => passed += 1,
            Err(e) => failures.push((case.name, e)),
        }
    }
    let unexpected: Vec<_> = failures
        .iter()
        .filter(|(n, _)| !SYNTAX_EXPECTED_FAILURES.iter().any(|(k, _)| k == n))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected failures:\n{unexpected:#?}"
    );
    let failed: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    let listed: Vec<&str> = SYNTAX_EXPECTED_FAILURES.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        failed, listed,
        "an expected failure now passes: update the list"
    );
    // 33 upstream + 24 extra + 21 heredoc + 22 real-world cases.
    assert_eq!(passed + failed.len(), 100);
    assert_eq!(passed, 99);
}

#[test]
fn syntax_negative_corpus() {
    let parser = conformance().join("buildkit-parser");
    let mut rejected = 0;
    let mut accepted = Vec::new();
    for sub in ["testfiles-negative", "extra/testfiles-negative"] {
        for dir in sorted_dirs(&parser.join(sub)) {
            let source = read_source(&dir.join("Dockerfile")).unwrap();
            if parse_ast(&source).is_err() && frontend::parse(&source).is_err() {
                rejected += 1;
            } else {
                accepted.push(dir);
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "accepted negative cases: {accepted:#?}"
    );
    assert_eq!(rejected, 15);
}

#[test]
fn line_numbers_of_testfile_line() {
    let source =
        read_source(&conformance().join("buildkit-parser/testfile-line/Dockerfile")).unwrap();
    let ast = parse_ast(&source).unwrap();
    let lines: Vec<(u32, u32)> = ast
        .nodes
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    assert_eq!(lines, [(5, 5), (11, 12), (17, 31)]);
}

/// Cases BuildKit's *parser* accepts but its instruction layer (and so a build) rejects;
/// the typed layer must reject them too.
const TYPED_EXPECTED_FAILURES: &[(&str, &str)] = &[
    (
        "backtick-escape-directive-name",
        "heredoc body lines parse as the unknown instruction `EOF`",
    ),
    ("backtick-escape-words", "`COPY --x` is not a COPY flag"),
    (
        "continuation-only-line",
        "an empty instruction is not an instruction",
    ),
    (
        "directive-after-instruction",
        "uses the unknown instructions `x`/`y`",
    ),
    (
        "directive-after-shebang",
        "uses the unknown instructions `x`/`y`",
    ),
    (
        "directive-after-unknown",
        "uses the unknown instructions `x`/`y`",
    ),
    (
        "directive-blank-line-first",
        "uses the unknown instructions `x`/`y`",
    ),
    (
        "flags",
        "uses flags no instruction takes (`--user`, `--doit`)",
    ),
    (
        "flags-quoting",
        "uses flags COPY does not take (`--x`, `--y`)",
    ),
    (
        "health",
        "`HEALTHCHECK` without arguments, `HEALTHCHECK CONNECT`",
    ),
    ("healthcheck-forms", "`HEALTHCHECK CMD` without a command"),
    ("json-edge", "`SHELL` in shell form, `VOLUME [ ]`"),
    (
        "json-form-copy-no-heredoc",
        "JSON-form COPY takes no heredoc, so `EOF` is an instruction",
    ),
    (
        "no-arg-instructions",
        "instructions without their required arguments",
    ),
    ("nonprintable-quoting", "not UTF-8"),
    (
        "not-heredocs",
        "CMD takes no heredoc, so its body lines are unknown instructions",
    ),
    (
        "onbuild-forms",
        "`ONBUILD ONBUILD` and ONBUILD flags are refused",
    ),
    (
        "space-after-operator-and-name-forms",
        "`<<- EOF` is no heredoc: `body` is an unknown instruction",
    ),
    ("triple-backslash", "uses the unknown instruction `foo`"),
    (
        "unbalanced-quote-is-not-heredoc",
        "no heredoc, so the body line `echo` is an instruction",
    ),
    (
        "unknown-instruction",
        "unknown instructions are errors in a build",
    ),
];

#[test]
fn typed_positive_corpus() {
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in positive_cases() {
        let Ok(source) = read_source(&case.dockerfile) else {
            failures.push((case.name, "not UTF-8".to_owned()));
            continue;
        };
        match frontend::parse(&source) {
            Ok(_) => passed += 1,
            Err(d) => failures.push((case.name, d.render("Dockerfile", &source))),
        }
    }
    let failed: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
    let mut listed: Vec<&str> = TYPED_EXPECTED_FAILURES.iter().map(|(n, _)| *n).collect();
    let unexpected: Vec<_> = failures
        .iter()
        .filter(|(n, _)| !listed.contains(&n.as_str()))
        .collect();
    let now_passing: Vec<_> = listed.iter().filter(|n| !failed.contains(n)).collect();
    let mut msg = String::new();
    for (n, e) in &failures {
        msg.push_str(&format!("=== {n}\n{e}\n"));
    }
    assert!(
        unexpected.is_empty() && now_passing.is_empty(),
        "now passing: {now_passing:?}\n{msg}"
    );
    listed.sort_unstable();
    assert_eq!(listed.len(), 21);
    assert_eq!(passed, 79);
}

#[test]
fn realworld_files_plan() {
    let dir = conformance().join("realworld");
    let mut planned = 0;
    let mut failures = Vec::new();
    let mut files: Vec<PathBuf> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    for file in files {
        let source = read_source(&file).unwrap();
        let df = frontend::parse(&source).unwrap();
        match frontend::plan(&df, &frontend::PlanOptions::default()) {
            Ok(plan) => {
                for stage in &plan.stages {
                    assert!(stage.dependencies.iter().all(|d| plan.stage(*d).is_some()));
                }
                planned += 1;
            }
            Err(d) => failures.push(d.render(&file.display().to_string(), &source)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(planned, 22);
}
