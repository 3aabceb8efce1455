//! Conformance of the frontend with the corpora in `shared/conformance`, as ONE test that
//! walks all of them and reports every failing case at the end (not just the first).
//!
//! What is checked, per suite (the suite names appear in the failure report):
//!
//! * `parser`: every positive case of BuildKit's parser corpus (`buildkit-parser/testfiles`,
//!   `extra/testfiles`, `extra/heredocs`, `testfile-line`) and every real-world Dockerfile
//!   (`realworld/`): [`frontend::dump`] equals `result` byte for byte, and the line
//!   ranges, joined text, heredocs (name, fd, expand, chomp, body), warnings and escape
//!   token equal those of its `parse.json` (format: `buildkit-parser/FORMAT.md`).
//! * `parser-negative`: every case of `testfiles-negative` and `extra/testfiles-negative`
//!   is rejected by both [`frontend::dump`] and [`frontend::parse`].
//! * `typed`: [`frontend::parse`] accepts every positive case except those BuildKit's
//!   instruction layer rejects too ([`REJECTED_BY_TYPED_LAYER`], each with its reason),
//!   which it must reject.
//! * `plan`: every real-world Dockerfile plans with default options, and every kept
//!   stage's dependencies are kept.
//! * `shell-envVarTest`, `shell-wordsTest`: BuildKit's word-expansion tables
//!   (`buildkit-shell/FORMAT.md`), row by row; Windows-only rows are skipped by rule
//!   (kiln builds Linux images, where variable names are case-sensitive) and counted.
//! * `dockerignore`, `dockerignore-invalid`: the `.dockerignore` tables
//!   (`dockerignore/CASES.md`), row by row, through [`frontend::dockerignore`].
//!
//! Known failures are listed in [`EXPECTED_FAILURES`] with a reason. A listed case that
//! starts passing is reported too, so a fix shows up as a change to this file rather
//! than going unnoticed. The number of cases of every suite is pinned
//! ([`EXPECTED_CASE_COUNTS`]), so a walk that silently finds nothing fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use frontend::expand::{expand, expand_words};
use frontend::syntax::{Ast, parse_ast};
use serde_json::Value;

/// A case we knowingly do not pass: `(suite, case, reason)`.
const EXPECTED_FAILURES: &[(&str, &str, &str)] = &[
    (
        "parser",
        "nonprintable-quoting",
        "contains a byte that is not UTF-8; the frontend takes &str, so the file is refused \
         before parsing (BuildKit dumps the byte as \\x..)",
    ),
    (
        "typed",
        "nonprintable-quoting",
        "not UTF-8 (see the `parser` entry)",
    ),
];

/// Positive parser cases that BuildKit's parser accepts but its instruction layer (and
/// so a build) rejects; the typed layer must reject them too. `(case, reason)`.
const REJECTED_BY_TYPED_LAYER: &[(&str, &str)] = &[
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

/// How many cases each suite has: 33 upstream + 24 extra + 21 heredoc + 1 line-number
/// parser cases and 22 real-world files; 4 + 11 negative cases; 230 + 24 shell table
/// rows; 83 + 9 `.dockerignore` rows.
const EXPECTED_CASE_COUNTS: &[(&str, usize)] = &[
    ("parser", 101),
    ("parser-negative", 15),
    ("typed", 101),
    ("plan", 22),
    ("shell-envVarTest", 230),
    ("shell-wordsTest", 24),
    ("dockerignore", 83),
    ("dockerignore-invalid", 9),
];

#[test]
fn conformance_corpus() {
    let root = conformance_root();
    let mut report = Report::default();
    parser_suites(&root, &mut report);
    negative_suite(&root, &mut report);
    env_var_table(&root, &mut report);
    words_table(&root, &mut report);
    dockerignore_suite(&root, &mut report);
    let problems = report.problems();
    assert!(
        problems.is_empty(),
        "{} conformance problem(s):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

fn conformance_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

/// Every case checked and every failure, by suite.
#[derive(Default)]
struct Report {
    cases: BTreeMap<&'static str, usize>,
    /// `(suite, case, what went wrong)`.
    failures: Vec<(&'static str, String, String)>,
    /// Rows skipped by an explicit rule, by suite (counted in `cases` too).
    skipped: BTreeMap<&'static str, usize>,
}

impl Report {
    fn record(&mut self, suite: &'static str, case: &str, outcome: Result<(), String>) {
        *self.cases.entry(suite).or_default() += 1;
        if let Err(message) = outcome {
            self.failures.push((suite, case.to_owned(), message));
        }
    }

    fn skip(&mut self, suite: &'static str) {
        *self.cases.entry(suite).or_default() += 1;
        *self.skipped.entry(suite).or_default() += 1;
    }

    /// Unexpected failures, expected failures that now pass, and wrong case counts.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (suite, case, message) in &self.failures {
            let expected = EXPECTED_FAILURES
                .iter()
                .any(|(s, c, _)| s == suite && c == case);
            if !expected {
                out.push(format!("=== [{suite}] {case}\n{}", message.trim_end()));
            }
        }
        for (suite, case, reason) in EXPECTED_FAILURES {
            let failed = self
                .failures
                .iter()
                .any(|(s, c, _)| s == suite && c == case);
            if !failed {
                out.push(format!(
                    "=== [{suite}] {case}\nlisted as an expected failure ({reason}) but it \
                     passes now: remove it from EXPECTED_FAILURES"
                ));
            }
        }
        for (suite, want) in EXPECTED_CASE_COUNTS {
            let got = self.cases.get(suite).copied().unwrap_or(0);
            if got != *want {
                out.push(format!(
                    "=== [{suite}] case count\nchecked {got} cases, expected {want}: did the \
                     corpus change? update EXPECTED_CASE_COUNTS"
                ));
            }
        }
        if self.skipped.get("shell-envVarTest") != Some(&2) {
            out.push(format!(
                "=== [shell-envVarTest] skipped rows\nskipped {:?} Windows-only rows, expected 2",
                self.skipped.get("shell-envVarTest")
            ));
        }
        out
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    fs_err::read(path).map_err(|e| e.to_string())
}

/// The frontend takes `&str`: a file that is not UTF-8 is a failure of its case.
fn read_source(path: &Path) -> Result<String, String> {
    String::from_utf8(read_bytes(path)?).map_err(|e| {
        format!(
            "not UTF-8 (byte {} is invalid); the frontend takes &str",
            e.utf8_error().valid_up_to()
        )
    })
}

fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs_err::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| keep(p))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

// ---------------------------------------------------------------------------------------
// BuildKit's parser corpus and the real-world files: `parser`, `typed`, `plan`
// ---------------------------------------------------------------------------------------

struct ParserCase {
    name: String,
    dockerfile: PathBuf,
    /// The expected dump; `testfile-line` has none.
    result: Option<PathBuf>,
    parse_json: Option<PathBuf>,
    realworld: bool,
}

fn parser_cases(root: &Path) -> Vec<ParserCase> {
    let parser = root.join("buildkit-parser");
    let mut cases = Vec::new();
    for sub in ["testfiles", "extra/testfiles", "extra/heredocs"] {
        for dir in sorted_entries(&parser.join(sub), Path::is_dir) {
            let name = dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let parse_json = if sub == "testfiles" {
                parser.join(format!("extra/upstream-parse/{name}.parse.json"))
            } else {
                dir.join("parse.json")
            };
            cases.push(ParserCase {
                name,
                dockerfile: dir.join("Dockerfile"),
                result: Some(dir.join("result")),
                parse_json: Some(parse_json),
                realworld: false,
            });
        }
    }
    cases.push(ParserCase {
        name: "testfile-line".to_owned(),
        dockerfile: parser.join("testfile-line/Dockerfile"),
        result: None,
        parse_json: Some(parser.join("extra/upstream-parse/testfile-line.parse.json")),
        realworld: false,
    });
    let realworld = root.join("realworld");
    let is_dockerfile = |p: &Path| p.extension().is_some_and(|e| e == "Dockerfile");
    for file in sorted_entries(&realworld, is_dockerfile) {
        let stem = file_stem(&file);
        cases.push(ParserCase {
            result: Some(realworld.join(format!("expected/{stem}.result"))),
            parse_json: Some(realworld.join(format!("expected/{stem}.parse.json"))),
            name: format!("realworld/{stem}"),
            dockerfile: file,
            realworld: true,
        });
    }
    cases
}

fn parser_suites(root: &Path, report: &mut Report) {
    for case in parser_cases(root) {
        report.record("parser", &case.name, check_syntax(&case));
        let typed = check_typed(&case);
        report.record("typed", &case.name, typed);
        if case.realworld {
            report.record("plan", &case.name, check_plan(&case));
        }
    }
}

fn check_syntax(case: &ParserCase) -> Result<(), String> {
    let source = read_source(&case.dockerfile)?;
    let ast = parse_ast(&source).map_err(|d| d.render("Dockerfile", &source))?;
    let mut problems = Vec::new();
    match frontend::dump(&source) {
        Ok(dump) => {
            if dump != ast.dump() {
                problems.push("frontend::dump differs from Ast::dump".to_owned());
            }
            if let Some(path) = &case.result {
                let expected = read_bytes(path)?;
                if dump.as_bytes() != expected {
                    problems.push(dump_diff(&dump, &String::from_utf8_lossy(&expected)));
                }
            }
        }
        Err(d) => problems.push(d.render("Dockerfile", &source)),
    }
    if let Some(path) = &case.parse_json {
        problems.extend(parse_json_mismatches(&ast, path)?);
    }
    if case.name == "testfile-line" {
        // FORMAT.md §1 states these line ranges independently of parse.json.
        let lines: Vec<(u32, u32)> = ast
            .nodes
            .iter()
            .map(|n| (n.start_line, n.end_line))
            .collect();
        if lines != [(5, 5), (11, 12), (17, 31)] {
            problems.push(format!(
                "line ranges {lines:?}, expected [(5, 5), (11, 12), (17, 31)]"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Every line of the dump that differs, rather than both dumps whole.
fn dump_diff(got: &str, expected: &str) -> String {
    let got: Vec<&str> = got.lines().collect();
    let want: Vec<&str> = expected.lines().collect();
    let mut out = format!(
        "dump differs ({} lines, expected {}):",
        got.len(),
        want.len()
    );
    for i in 0..got.len().max(want.len()) {
        let (g, w) = (got.get(i), want.get(i));
        if g != w {
            let _ = write!(
                out,
                "\n  line {}:\n    got      {}\n    expected {}",
                i + 1,
                g.unwrap_or(&"<none>"),
                w.unwrap_or(&"<none>")
            );
        }
    }
    if !expected.ends_with('\n') || got.is_empty() {
        out.push_str("\n  (or the final newline differs)");
    }
    out
}

/// Every difference between the AST and `parse.json` (FORMAT.md §1).
fn parse_json_mismatches(ast: &Ast, path: &Path) -> Result<Vec<String>, String> {
    let json: Value = serde_json::from_slice(&read_bytes(path)?)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    let escape = json["escape_token"].as_str().unwrap_or_default();
    if escape != ast.escape.to_string() {
        out.push(format!(
            "escape token {:?}, expected {escape:?}",
            ast.escape
        ));
    }
    let empty = Vec::new();
    let expected = json["instructions"].as_array().unwrap_or(&empty);
    if expected.len() != ast.nodes.len() {
        out.push(format!(
            "{} instructions, expected {}",
            ast.nodes.len(),
            expected.len()
        ));
    }
    for (i, (node, want)) in ast.nodes.iter().zip(expected).enumerate() {
        let at = format!("instruction {} ({:?})", i + 1, node.original);
        let lines = (
            want["start_line"].as_u64().unwrap_or_default(),
            want["end_line"].as_u64().unwrap_or_default(),
        );
        let got_lines = (u64::from(node.start_line), u64::from(node.end_line));
        if lines != got_lines {
            out.push(format!("{at}: lines {got_lines:?}, expected {lines:?}"));
        }
        if want["original"].as_str() != Some(node.original.as_str()) {
            out.push(format!(
                "{at}: joined text differs, expected {}",
                want["original"]
            ));
        }
        if want["dump"].as_str() != Some(node.dump().as_str()) {
            out.push(format!(
                "{at}: dump {}, expected {}",
                node.dump(),
                want["dump"]
            ));
        }
        let heredocs: Vec<Value> = node
            .heredocs
            .iter()
            .map(|h| {
                serde_json::json!({
                    "name": h.name, "fd": h.fd, "expand": h.expand,
                    "chomp": h.chomp, "content": h.content,
                })
            })
            .collect();
        if Some(&heredocs) != want["heredocs"].as_array() {
            out.push(format!(
                "{at}: heredocs {heredocs:?}, expected {}",
                want["heredocs"]
            ));
        }
    }
    let warnings: Vec<String> = json["warnings"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|w| w.as_str().unwrap_or_default().to_lowercase())
        .collect();
    let got: Vec<String> = ast
        .warnings
        .iter()
        .map(|d| d.message.to_lowercase())
        .collect();
    if got != warnings {
        out.push(format!("warnings {got:?}, expected {warnings:?}"));
    }
    Ok(out)
}

fn check_typed(case: &ParserCase) -> Result<(), String> {
    let source = read_source(&case.dockerfile)?;
    let rejection = REJECTED_BY_TYPED_LAYER
        .iter()
        .find(|(name, _)| *name == case.name);
    match (frontend::parse(&source), rejection) {
        (Ok(_), None) | (Err(_), Some(_)) => Ok(()),
        (Err(d), None) => Err(d.render("Dockerfile", &source)),
        (Ok(_), Some((_, reason))) => Err(format!(
            "accepted, but builds reject it ({reason}); if that changed, update \
             REJECTED_BY_TYPED_LAYER"
        )),
    }
}

fn check_plan(case: &ParserCase) -> Result<(), String> {
    let source = read_source(&case.dockerfile)?;
    let file_name = case.dockerfile.display().to_string();
    let dockerfile = frontend::parse(&source).map_err(|d| d.render(&file_name, &source))?;
    let plan = frontend::plan(&dockerfile, &frontend::PlanOptions::default())
        .map_err(|d| d.render(&file_name, &source))?;
    let dangling: Vec<String> = plan
        .stages
        .iter()
        .flat_map(|s| s.dependencies.iter().map(move |d| (s.id, *d)))
        .filter(|(_, dep)| plan.stage(*dep).is_none())
        .map(|(stage, dep)| format!("stage {} depends on pruned stage {}", stage.0, dep.0))
        .collect();
    if dangling.is_empty() {
        Ok(())
    } else {
        Err(dangling.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------
// Negative cases: `parser-negative`
// ---------------------------------------------------------------------------------------

fn negative_suite(root: &Path, report: &mut Report) {
    let parser = root.join("buildkit-parser");
    for sub in ["testfiles-negative", "extra/testfiles-negative"] {
        for dir in sorted_entries(&parser.join(sub), Path::is_dir) {
            let name = format!("{sub}/{}", file_stem(&dir));
            let outcome = read_source(&dir.join("Dockerfile")).and_then(|source| {
                let accepted_by = [
                    ("frontend::dump", frontend::dump(&source).is_ok()),
                    ("frontend::parse", frontend::parse(&source).is_ok()),
                ];
                let accepted: Vec<&str> = accepted_by
                    .iter()
                    .filter(|(_, ok)| *ok)
                    .map(|(f, _)| *f)
                    .collect();
                if accepted.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "accepted by {}; BuildKit rejects it",
                        accepted.join(" and ")
                    ))
                }
            });
            report.record("parser-negative", &name, outcome);
        }
    }
}

// ---------------------------------------------------------------------------------------
// BuildKit's shell tables: `shell-envVarTest`, `shell-wordsTest`
// ---------------------------------------------------------------------------------------

fn shell_table(root: &Path, name: &str) -> String {
    read_source(&root.join("buildkit-shell").join(name)).unwrap_or_default()
}

/// The fixed environment of `envVarTest` (buildkit-shell/FORMAT.md).
fn env_var_lookup(name: &str) -> Option<String> {
    match name {
        "PWD" => Some("/home".into()),
        "SHELL" => Some("bash".into()),
        "KOREAN" => Some("한국어".into()),
        "NULL" => Some(String::new()),
        _ => None,
    }
}

fn env_var_table(root: &Path, report: &mut Report) {
    const SUITE: &str = "shell-envVarTest";
    for (number, line) in shell_table(root, "envVarTest").lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let case = format!("envVarTest:{} {}", number + 1, line.trim());
        let fields: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        let [platform, source, expected] = fields[..] else {
            report.record(
                SUITE,
                &case,
                Err("not a `P | SOURCE | EXPECTED` row".into()),
            );
            continue;
        };
        if platform == "W" {
            report.skip(SUITE);
            continue;
        }
        let got = expand(source, '\\', &env_var_lookup);
        let outcome = match (&got, expected) {
            (Err(_), "error") => Ok(()),
            (Ok(value), want) if value == want => Ok(()),
            _ => Err(format!("got {got:?}, expected {expected:?}")),
        };
        report.record(SUITE, &case, outcome);
    }
}

fn words_table(root: &Path, report: &mut Report) {
    const SUITE: &str = "shell-wordsTest";
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (number, line) in shell_table(root, "wordsTest").lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(definition) = line.strip_prefix("ENV ") {
            if let Some((name, value)) = definition.trim_start().split_once('=') {
                env.insert(name.to_owned(), value.to_owned());
            }
            continue;
        }
        let case = format!("wordsTest:{} {}", number + 1, line.trim());
        let Some((input, expected)) = line.split_once('|') else {
            report.record(SUITE, &case, Err("not an `INPUT | EXPECTED` row".into()));
            continue;
        };
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start().split(',').collect();
        let lookup = |name: &str| env.get(name).cloned();
        let got = expand_words(input, '\\', &lookup);
        let outcome = match &got {
            Err(_) if expected == ["error"] => Ok(()),
            Ok(words) if *words == expected => Ok(()),
            _ => Err(format!("got {got:?}, expected {expected:?}")),
        };
        report.record(SUITE, &case, outcome);
    }
}

// ---------------------------------------------------------------------------------------
// `.dockerignore` tables: `dockerignore`
// ---------------------------------------------------------------------------------------

/// `shared/conformance/dockerignore` (format in its `CASES.md`): every row of
/// `cases.tsv` gives the expected verdict for its path, every row of
/// `invalid-patterns.tsv` is rejected with a message. (The tables are also checked on
/// their own by `dockerignore_conformance.rs`, next to the module.)
fn dockerignore_suite(root: &Path, report: &mut Report) {
    let dir = root.join("dockerignore");
    for (table, suite) in [
        ("cases.tsv", "dockerignore"),
        ("invalid-patterns.tsv", "dockerignore-invalid"),
    ] {
        let text = read_source(&dir.join(table)).unwrap_or_default();
        // The first line is the header.
        for (number, row) in text.lines().enumerate().skip(1) {
            let case = format!("{table}:{} {row:?}", number + 1);
            let fields: Vec<&str> = row.split('\t').collect();
            let [patterns, path, expected] = fields[..] else {
                report.record(
                    suite,
                    &case,
                    Err("not a `patterns\tpath\texcluded` row".into()),
                );
                continue;
            };
            // The `.dockerignore` lines, joined with `,` in the table, verbatim.
            let file: String = if patterns.is_empty() {
                String::new()
            } else {
                patterns
                    .split(',')
                    .map(|line| format!("{line}\n"))
                    .collect()
            };
            let outcome = match (frontend::dockerignore::parse(&file), expected) {
                (Ok(rules), "true" | "false") => {
                    let excluded = rules.is_excluded(path);
                    if excluded.to_string() == expected {
                        Ok(())
                    } else {
                        Err(format!(
                            "excluded({path:?}) = {excluded}, expected {expected}"
                        ))
                    }
                }
                (Ok(rules), _) => Err(format!(
                    "accepted (excluded({path:?}) = {}), expected {expected}",
                    rules.is_excluded(path)
                )),
                (Err(diags), "error") if diags.iter().all(|d| !d.message.is_empty()) => Ok(()),
                (Err(diags), _) => Err(format!(
                    "rejected:\n{}",
                    diags.render(".dockerignore", &file)
                )),
            };
            report.record(suite, &case, outcome);
        }
    }
}
