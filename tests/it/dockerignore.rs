//! `.dockerignore` end to end: what `kiln build` leaves out of COPY layers, which ignore file
//! applies, and how excluded or invalid input fails.

use std::path::Path;

use crate::harness;
use crate::support::{inspect, json_blob, kiln, layer_entries, write_files};

/// Builds `ctx` as `name` (with `extra` arguments before the context) and returns the paths
/// in the image's only layer.
fn copied(ctx: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let root = harness::tempdir();
    let mut args = vec!["build", "-t", name];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    kiln(root.path(), &args).ok();
    let image = inspect(root.path(), name);
    let manifest = json_blob(root.path(), image["Descriptor"]["digest"].as_str().unwrap());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one COPY, one layer: {manifest}");
    layer_entries(root.path(), layers[0]["digest"].as_str().unwrap())
        .into_iter()
        .map(|e| e.0.trim_end_matches('/').to_owned())
        .collect()
}

#[test]
fn excluded_files_are_absent_from_the_copy_layer() {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /app/\n"),
            (
                ".dockerignore",
                "# build output\ntarget/\n/secret.txt\n*.tmp\n",
            ),
            ("src/main.rs", "fn main() {}\n"),
            ("src/cache.tmp", "nested, so `*.tmp` keeps it\n"),
            ("target/debug/app", "binary"),
            ("secret.txt", "hunter2"),
            ("scratch.tmp", "x"),
        ],
    );
    assert_eq!(
        copied(ctx.path(), "ignore:basic", &[]),
        [
            "app",
            "app/.dockerignore",
            "app/Dockerfile",
            "app/src",
            "app/src/cache.tmp",
            "app/src/main.rs",
        ]
    );
}

#[test]
fn double_star_excludes_at_every_depth() {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY src /src\n"),
            (".dockerignore", "**/*.log\n"),
            ("src/app.log", ""),
            ("src/a/b/deep.log", ""),
            ("src/a/b/code.rs", ""),
            ("src/logs.txt", ""),
        ],
    );
    assert_eq!(
        copied(ctx.path(), "ignore:stars", &[]),
        ["src", "src/a", "src/a/b", "src/a/b/code.rs", "src/logs.txt"]
    );
}

#[test]
fn exception_re_includes_a_file_inside_an_excluded_directory() {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
            (".dockerignore", "*\n!docs/README.md\n"),
            ("docs/README.md", "read me"),
            ("docs/internal.md", "no"),
            ("docs/sub/x.md", "no"),
            ("other.txt", "no"),
        ],
    );
    assert_eq!(
        copied(ctx.path(), "ignore:exception", &[]),
        ["ctx", "ctx/docs", "ctx/docs/README.md"]
    );
}

#[test]
fn an_excluded_source_named_in_copy_is_not_found_at_its_line() {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY kept.txt /\nCOPY secret.txt /\n",
            ),
            (".dockerignore", "# keep credentials out\nsecret.txt\n"),
            ("kept.txt", "k"),
            ("secret.txt", "s"),
        ],
    );
    let root = harness::tempdir();
    let out = kiln(root.path(), &["build", ctx.path().to_str().unwrap()]).fails_with(1);
    let first = out.stderr.lines().find(|l| l.starts_with("error")).unwrap();
    assert!(
        first.contains("COPY failed")
            && first.contains("\"secret.txt\": not found in the build context")
            && first.contains("excluded by .dockerignore:2 (`secret.txt`)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--> Dockerfile:3:1"), "{}", out.stderr);
    assert!(
        out.stderr.contains(" 3 | COPY secret.txt /"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_dockerfiles_own_ignore_file_wins_over_the_contexts() {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            ("build/app.Dockerfile", "FROM scratch\nCOPY . /w/\n"),
            ("build/app.Dockerfile.dockerignore", "build\na.txt\n"),
            (".dockerignore", "b.txt\n"),
            ("a.txt", "a"),
            ("b.txt", "b"),
        ],
    );
    let dockerfile = ctx.path().join("build/app.Dockerfile");
    assert_eq!(
        copied(
            ctx.path(),
            "ignore:per-dockerfile",
            &["-f", dockerfile.to_str().unwrap()]
        ),
        ["w", "w/.dockerignore", "w/b.txt"]
    );
    // The same context with its default Dockerfile uses the context's file.
    write_files(ctx.path(), &[("Dockerfile", "FROM scratch\nCOPY . /w/\n")]);
    let default = copied(ctx.path(), "ignore:context", &[]);
    assert!(
        default.contains(&"w/a.txt".to_owned()) && !default.contains(&"w/b.txt".to_owned()),
        "{default:?}"
    );
}

#[test]
fn an_invalid_ignore_file_fails_the_build_with_its_location() {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /\n"),
            (".dockerignore", "ok\n  logs/[0-9\n"),
        ],
    );
    let root = harness::tempdir();
    let out = kiln(root.path(), &["build", ctx.path().to_str().unwrap()]).fails_with(1);
    // Rendered like a Dockerfile diagnostic: message, location, the line, the offending text.
    assert!(
        out.stderr.starts_with(
            "error[F0401]: invalid .dockerignore pattern `logs/[0-9`: unterminated character class\n  --> .dockerignore:2:8\n"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(" 2 |   logs/[0-9\n   |        ^ unterminated character class"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
}
