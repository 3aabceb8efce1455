//! Word expansion against BuildKit's shell tables (`shared/conformance/buildkit-shell`,
//! see its FORMAT.md). Rows are skipped only by an explicit rule (Windows-only rows:
//! kiln builds Linux images, where variable names are case-sensitive), and the exact
//! number of passing rows is asserted so a regression cannot hide.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use frontend::expand::{expand, expand_words};

fn table(name: &str) -> String {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/buildkit-shell")
        .join(name);
    String::from_utf8(fs_err::read(path).unwrap()).unwrap()
}

fn fixed_env(name: &str) -> Option<String> {
    match name {
        "PWD" => Some("/home".into()),
        "SHELL" => Some("bash".into()),
        "KOREAN" => Some("한국어".into()),
        "NULL" => Some(String::new()),
        _ => None,
    }
}

#[test]
fn env_var_table() {
    let (mut passed, mut skipped_windows) = (0, 0);
    let mut failures = Vec::new();
    for line in table("envVarTest").lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim().split('|').map(str::trim).collect();
        let [platform, source, expected] = fields[..] else {
            panic!("bad row {line:?}");
        };
        if platform == "W" {
            skipped_windows += 1;
            continue;
        }
        let got = expand(source, '\\', &fixed_env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(v), want) => v == want,
            _ => false,
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!("{source:?}: got {got:?}, expected {expected:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(skipped_windows, 2);
    assert_eq!(passed, 228);
}

#[test]
fn words_table() {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let (mut passed, mut failures) = (0, Vec::new());
    for line in table("wordsTest").lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(def) = line.strip_prefix("ENV ") {
            let (k, v) = def.trim_start().split_once('=').unwrap();
            env.insert(k.to_owned(), v.to_owned());
            continue;
        }
        let (input, expected) = line.split_once('|').unwrap();
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start().split(',').collect();
        let lookup = |n: &str| env.get(n).cloned();
        let got = expand_words(input, '\\', &lookup);
        let ok = match &got {
            Err(_) => expected == ["error"],
            Ok(words) => *words == expected,
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!("{input:?}: got {got:?}, expected {expected:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(passed, 24);
}
