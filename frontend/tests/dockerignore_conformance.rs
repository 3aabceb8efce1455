//! `.dockerignore` matching against the project's conformance tables
//! (`shared/conformance/dockerignore`, see its CASES.md): every row of `cases.tsv` must give
//! the expected verdict and every row of `invalid-patterns.tsv` must be rejected. All failing
//! rows are collected and reported together, and the row counts are asserted so a table that
//! shrinks or fails to load cannot pass silently.

use std::path::{Path, PathBuf};

use frontend::dockerignore;

fn table(name: &str) -> Vec<(String, String, String)> {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/dockerignore")
        .join(name);
    let text = String::from_utf8(fs_err::read(path).unwrap()).unwrap();
    text.lines()
        .skip(1) // the header
        .map(|row| {
            let fields: Vec<&str> = row.split('\t').collect();
            let [patterns, path, expected] = fields[..] else {
                panic!("{name}: a row needs three tab-separated fields: {row:?}");
            };
            (patterns.to_owned(), path.to_owned(), expected.to_owned())
        })
        .collect()
}

/// The `.dockerignore` text for a row: its `,`-joined lines, verbatim.
fn file_text(patterns: &str) -> String {
    if patterns.is_empty() {
        return String::new();
    }
    patterns
        .split(',')
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn cases() {
    let rows = table("cases.tsv");
    let mut failures = Vec::new();
    for (patterns, path, expected) in &rows {
        let expected: bool = expected
            .parse()
            .unwrap_or_else(|_| panic!("bad verdict {expected:?}"));
        match dockerignore::parse(&file_text(patterns)) {
            Ok(rules) => {
                let got = rules.is_excluded(path);
                if got != expected {
                    failures.push(format!(
                        "{patterns:?} on {path:?}: excluded={got}, expected {expected}"
                    ));
                }
            }
            Err(diags) => failures.push(format!("{patterns:?}: rejected: {diags}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows fail:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    assert_eq!(rows.len(), 83);
}

#[test]
fn invalid_patterns() {
    let rows = table("invalid-patterns.tsv");
    let mut failures = Vec::new();
    for (patterns, path, expected) in &rows {
        assert_eq!(expected, "error", "{patterns:?}");
        match dockerignore::parse(&file_text(patterns)) {
            Ok(rules) => failures.push(format!(
                "{patterns:?}: accepted (excluded({path:?}) = {})",
                rules.is_excluded(path)
            )),
            Err(diags) => {
                if diags.is_empty() || diags.iter().any(|d| d.message.is_empty()) {
                    failures.push(format!("{patterns:?}: rejected without a message"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows fail:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    assert_eq!(rows.len(), 9);
}
