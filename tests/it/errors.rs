//! Bad input: a one-line error naming the cause (with the Dockerfile location for Dockerfile
//! problems), a non-zero exit, and nothing half-written in the store.

use std::path::Path;

use crate::harness::{self, Registry, skip_unless};
use crate::support::{ingest_files, kiln, write_files};

/// Nothing of a failed command is left in the store: no names, no ingest files.
#[track_caller]
fn assert_store_untouched(root: &Path) {
    assert_eq!(
        kiln(root, &["images", "-q"]).ok().stdout,
        "",
        "no image was named"
    );
    assert_eq!(ingest_files(root), 0, "no ingest files remain");
}

fn build_dir(dockerfile: &str) -> tempfile::TempDir {
    let ctx = harness::tempdir();
    write_files(
        ctx.path(),
        &[("Dockerfile", dockerfile), ("present.txt", "x")],
    );
    ctx
}

#[test]
fn missing_dockerfile() {
    let ctx = harness::tempdir();
    let root = harness::tempdir();
    let out = kiln(
        root.path(),
        &["build", "-t", "x", ctx.path().to_str().unwrap()],
    )
    .fails_with(1);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    assert!(
        out.stderr.starts_with("error: cannot read Dockerfile")
            && out.stderr.contains("does not exist"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
    assert_store_untouched(root.path());
}

#[test]
fn missing_copy_source_points_at_the_line() {
    let ctx = build_dir("FROM scratch\nCOPY present.txt /a\nCOPY missing.txt /b\n");
    let root = harness::tempdir();
    let out = kiln(
        root.path(),
        &["build", "-t", "x", ctx.path().to_str().unwrap()],
    )
    .fails_with(1);
    let first = out.stderr.lines().find(|l| l.starts_with("error")).unwrap();
    assert!(
        first.contains("COPY failed")
            && first.contains("\"missing.txt\": not found in the build context"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--> Dockerfile:3:1"), "{}", out.stderr);
    assert!(
        out.stderr.contains(" 3 | COPY missing.txt /b"),
        "{}",
        out.stderr
    );
    assert_store_untouched(root.path());
}

#[test]
fn copy_source_outside_the_context_is_refused() {
    let ctx = build_dir("FROM scratch\nCOPY ../../etc/passwd /\n");
    let root = harness::tempdir();
    let out = kiln(root.path(), &["build", ctx.path().to_str().unwrap()]).fails_with(1);
    assert!(
        out.stderr
            .contains("forbidden path outside the build context"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--> Dockerfile:2:1"), "{}", out.stderr);
}

#[test]
fn unknown_instruction_is_reported_with_location_and_suggestion() {
    let ctx = build_dir("FROM scratch\nCOPPY present.txt /\n");
    let root = harness::tempdir();
    let out = kiln(
        root.path(),
        &["build", "-t", "x", ctx.path().to_str().unwrap()],
    )
    .fails_with(1);
    assert!(
        out.stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap()
            .contains("unknown instruction"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--> Dockerfile:2:1"), "{}", out.stderr);
    assert!(out.stderr.contains("COPY"), "did you mean: {}", out.stderr);
    assert_store_untouched(root.path());
}

#[test]
fn unsupported_run_is_a_clear_error_not_a_silent_skip() {
    let ctx = build_dir("FROM scratch\nRUN --security=insecure echo hi\n");
    let root = harness::tempdir();
    let out = kiln(
        root.path(),
        &["build", "-t", "x", ctx.path().to_str().unwrap()],
    )
    .fails_with(1);
    assert!(
        out.stderr.contains("--security=insecure is not supported")
            && out.stderr.contains("--> Dockerfile:2:1"),
        "{}",
        out.stderr
    );
    assert_store_untouched(root.path());
}

#[test]
fn run_without_a_shell_names_the_missing_program() {
    let ctx = build_dir("FROM scratch\nRUN echo hi\n");
    let root = harness::tempdir();
    skip_unless!(harness::root_required());
    let out = kiln(
        root.path(),
        &["build", "-t", "x", ctx.path().to_str().unwrap()],
    )
    .fails_with(1);
    assert!(
        out.stderr.contains("\"/bin/sh\"") && out.stderr.contains("--> Dockerfile:2:1"),
        "{}",
        out.stderr
    );
    assert_store_untouched(root.path());
}

#[test]
fn malformed_references() {
    let ctx = build_dir("FROM scratch\nCOPY present.txt /\n");
    let root = harness::tempdir();
    for args in [
        vec!["build", "-t", "Upper/Case", ctx.path().to_str().unwrap()],
        vec!["pull", "bad::ref"],
        vec!["tag", "a", "b@sha256:123"],
    ] {
        let out = kiln(root.path(), &args).fails_with(1);
        assert!(
            out.stderr.starts_with("error: invalid reference format"),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    let bad_from = build_dir("FROM Not/Valid\n");
    let out = kiln(root.path(), &["build", bad_from.path().to_str().unwrap()]).fails_with(1);
    assert!(
        out.stderr.contains("invalid reference format")
            && out.stderr.contains("--> Dockerfile:1:1"),
        "{}",
        out.stderr
    );
    assert_store_untouched(root.path());
}

#[test]
fn usage_errors_exit_2() {
    let root = harness::tempdir();
    kiln(root.path(), &["build"]).fails_with(2);
    kiln(root.path(), &["frobnicate"]).fails_with(2);
}

#[test]
fn unreachable_registry() {
    // A port nothing listens on: bind then drop.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let root = harness::tempdir();
    let out = kiln(
        root.path(),
        &["pull", &format!("127.0.0.1:{port}/nothing:latest")],
    )
    .fails_with(1);
    assert!(
        out.stderr
            .contains(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{}",
        out.stderr
    );

    let ctx = build_dir(&format!("FROM 127.0.0.1:{port}/base\nCOPY present.txt /\n"));
    let out = kiln(
        root.path(),
        &["build", "-t", "x", ctx.path().to_str().unwrap()],
    )
    .fails_with(1);
    assert!(
        out.stderr.contains("cannot reach registry") && out.stderr.contains("--> Dockerfile:1:1"),
        "{}",
        out.stderr
    );
    assert_store_untouched(root.path());
}

#[test]
fn unknown_image() {
    let reg = skip_unless!(Registry::start());
    let root = harness::tempdir();
    let out = kiln(
        root.path(),
        &["pull", &format!("{}/no/such:image", reg.host_port())],
    )
    .fails_with(1);
    assert!(
        out.stderr.contains("not found") || out.stderr.contains("unknown"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("no/such"),
        "names the image: {}",
        out.stderr
    );
    let missing_local = kiln(root.path(), &["image", "inspect", "nothing:here"]).fails_with(1);
    assert!(
        missing_local.stderr.contains("no such image: nothing:here"),
        "{}",
        missing_local.stderr
    );
    assert_store_untouched(root.path());
}
