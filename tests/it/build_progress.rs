//! `kiln build --progress=…` end to end: plain (BuildKit's `#N` lines), rawjson (one
//! `SolveStatus` JSON per line, logs in base64), tty through a pseudo-terminal (`script` from
//! bsdutils), quiet and `-q`, `BUILDKIT_PROGRESS`, and stdout carrying only the image ID.
//!
//! Builds with RUN use `busybox:local`, built into each test's store `FROM scratch` from the
//! harness's busybox rootfs (as `build_run.rs` does); the others build `FROM scratch`.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use crate::harness::{self, Skip, skip_unless};
use crate::support::{Run, busybox_store, kiln_env, write_files};

/// A context with `Dockerfile` and `a.txt`.
fn context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = harness::tempdir();
    write_files(ctx.path(), &[("Dockerfile", dockerfile), ("a.txt", "a\n")]);
    ctx
}

const RUN_DOCKERFILE: &str =
    "FROM busybox:local\nRUN echo out-line && echo err-line >&2\nCOPY a.txt /a.txt\n";

fn build(root: &Path, ctx: &Path, flags: &[&str], env: &[(&str, &str)]) -> Run {
    let mut args = vec!["build", "-t", "test:1"];
    args.extend_from_slice(flags);
    args.push(ctx.to_str().unwrap());
    kiln_env(root, &args, env)
}

/// stdout is exactly one image ID.
#[track_caller]
fn assert_only_image_id(out: &Run) {
    let id = out.stdout.trim_end_matches('\n');
    assert!(
        id.starts_with("sha256:") && id.len() == 71 && !id.contains('\n'),
        "stdout must be the image ID only: {:?}",
        out.stdout
    );
}

#[test]
fn plain_prints_buildkit_lines_with_the_run_output() {
    let root = skip_unless!(busybox_store(&[]));
    let ctx = context(RUN_DOCKERFILE);
    let out = build(root.path(), ctx.path(), &["--progress=plain"], &[]).ok();
    assert_only_image_id(&out);
    let lines: Vec<&str> = out.stderr.lines().collect();
    let has = |pred: &dyn Fn(&str) -> bool| lines.iter().any(|l| pred(l));
    assert!(
        has(&|l| l == "#1 [1/3] FROM busybox:local"),
        "{}",
        out.stderr
    );
    assert!(
        has(&|l| l == "#2 [2/3] RUN echo out-line && echo err-line >&2"),
        "{}",
        out.stderr
    );
    for text in ["out-line", "err-line"] {
        assert!(
            has(&|l| {
                l.strip_prefix("#2 ")
                    .and_then(|r| r.split_once(' '))
                    .is_some_and(|(t, rest)| {
                        rest == text && t.len() == 5 && t.parse::<f64>().is_ok()
                    })
            }),
            "`#2 0.123 {text}` in:\n{}",
            out.stderr
        );
    }
    assert!(
        has(&|l| l.starts_with("#2 DONE ") && l.ends_with('s')),
        "{}",
        out.stderr
    );
    assert!(
        has(&|l| l == "#3 [3/3] COPY a.txt /a.txt"),
        "{}",
        out.stderr
    );
    assert!(has(&|l| l == "#4 exporting to image"), "{}", out.stderr);
    let id = out.stdout.trim();
    assert!(
        has(&|l| l == format!("#4 writing image {id} done")),
        "{}",
        out.stderr
    );
    assert!(has(&|l| l == "#4 naming to test:1 done"), "{}", out.stderr);
    // Blocks are separated by one empty line, as BuildKit's plain printer does.
    assert!(out.stderr.contains("\n\n#2 [2/3] RUN"), "{}", out.stderr);
}

#[test]
fn rawjson_lines_are_solve_statuses_and_logs_decode_to_the_run_output() {
    let root = skip_unless!(busybox_store(&[]));
    let ctx = context(RUN_DOCKERFILE);
    let out = build(root.path(), ctx.path(), &["--progress=rawjson"], &[]).ok();
    assert_only_image_id(&out);
    let statuses: Vec<Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    let vertexes: Vec<&Value> = statuses
        .iter()
        .filter_map(|s| s["vertexes"].as_array())
        .flatten()
        .collect();
    let run = vertexes
        .iter()
        .find(|v| v["name"] == "[2/3] RUN echo out-line && echo err-line >&2")
        .expect("the RUN vertex");
    let digest = run["digest"].as_str().unwrap();
    assert!(digest.starts_with("sha256:") && digest.len() == 71);
    assert!(
        vertexes
            .iter()
            .any(|v| v["digest"] == digest && v["completed"].is_string()),
        "the RUN vertex completes: {}",
        out.stderr
    );
    // Every vertex that started also completed, without error.
    for v in vertexes.iter().filter(|v| v["started"].is_string()) {
        assert!(v.get("error").is_none(), "{v}");
        assert!(
            vertexes
                .iter()
                .any(|w| w["digest"] == v["digest"] && w["completed"].is_string()),
            "{v} never completes"
        );
    }
    let logs: Vec<(i64, String)> = statuses
        .iter()
        .filter_map(|s| s["logs"].as_array())
        .flatten()
        .map(|l| {
            assert_eq!(l["vertex"], digest, "{l}");
            assert!(l["timestamp"].is_string(), "{l}");
            let data = base64::engine::general_purpose::STANDARD
                .decode(l["data"].as_str().unwrap())
                .unwrap();
            (
                l["stream"].as_i64().unwrap(),
                String::from_utf8(data).unwrap(),
            )
        })
        .collect();
    let mut logs_sorted = logs.clone();
    logs_sorted.sort();
    assert_eq!(
        logs_sorted,
        [(1, "out-line\n".to_owned()), (2, "err-line\n".to_owned())],
        "{}",
        out.stderr
    );
    let id = out.stdout.trim();
    assert!(
        statuses
            .iter()
            .filter_map(|s| s["statuses"].as_array())
            .flatten()
            .any(|s| s["id"] == format!("writing image {id}")),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failed_step_is_marked_and_the_located_error_follows() {
    let root = skip_unless!(busybox_store(&[]));
    let ctx = context("FROM busybox:local\nRUN echo before-fail && exit 3\n");
    let out = build(root.path(), ctx.path(), &["--progress=plain"], &[]).fails_with(1);
    assert_eq!(out.stdout, "");
    let error_line = out
        .stderr
        .lines()
        .position(|l| l.starts_with("#2 ERROR: "))
        .unwrap_or_else(|| panic!("`#2 ERROR: …` in:\n{}", out.stderr));
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines[..error_line]
            .iter()
            .any(|l| l.starts_with("#2 0.") && l.ends_with(" before-fail")),
        "{}",
        out.stderr
    );
    assert!(
        lines[error_line..]
            .iter()
            .any(|l| l.contains("--> Dockerfile:2:1")),
        "the located error comes after the progress: {}",
        out.stderr
    );

    let out = build(root.path(), ctx.path(), &["--progress=rawjson"], &[]).fails_with(1);
    let failed: Vec<Value> = out
        .stderr
        .lines()
        .take_while(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|s| s["vertexes"].as_array().cloned())
        .flatten()
        .filter(|v| v["error"].is_string())
        .collect();
    assert_eq!(failed.len(), 1, "{}", out.stderr);
    assert_eq!(failed[0]["name"], "[2/2] RUN echo before-fail && exit 3");
    assert!(failed[0]["completed"].is_string());
}

#[test]
fn buildkit_progress_chooses_the_mode_and_the_flag_wins() {
    let root = harness::tempdir();
    let ctx = context("FROM scratch\nCOPY a.txt /\n");
    let out = build(
        root.path(),
        ctx.path(),
        &[],
        &[("BUILDKIT_PROGRESS", "plain")],
    )
    .ok();
    assert!(
        out.stderr.starts_with("#1 [1/2] FROM scratch\n"),
        "{}",
        out.stderr
    );
    let out = build(
        root.path(),
        ctx.path(),
        &[],
        &[("BUILDKIT_PROGRESS", "rawjson")],
    )
    .ok();
    assert_only_image_id(&out);
    assert!(
        out.stderr
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{}",
        out.stderr
    );
    let out = build(
        root.path(),
        ctx.path(),
        &["--progress=plain"],
        &[("BUILDKIT_PROGRESS", "rawjson")],
    )
    .ok();
    assert!(out.stderr.starts_with("#1 "), "{}", out.stderr);
    let out = build(
        root.path(),
        ctx.path(),
        &[],
        &[("BUILDKIT_PROGRESS", "fancy")],
    )
    .fails_with(1);
    assert!(
        out.stderr
            .contains("unsupported --progress `fancy`: use auto, tty, plain, rawjson or quiet"),
        "{}",
        out.stderr
    );
}

#[test]
fn quiet_prints_only_the_image_id_and_errors_still_show() {
    let root = harness::tempdir();
    let ctx = context("FROM scratch\nCOPY a.txt /\n");
    for flags in [
        &["--progress=quiet"][..],
        &["-q"],
        &["-q", "--progress=plain"],
    ] {
        let out = build(root.path(), ctx.path(), flags, &[]).ok();
        assert_only_image_id(&out);
        assert_eq!(out.stderr, "", "{flags:?}");
    }
    let bad = context("FROM scratch\nCOPY missing.txt /\n");
    let out = build(root.path(), bad.path(), &["-q"], &[]).fails_with(1);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("missing.txt"), "{}", out.stderr);
    assert!(out.stderr.contains("Dockerfile:2"), "{}", out.stderr);
}

#[test]
fn tty_needs_a_terminal() {
    let root = harness::tempdir();
    let ctx = context("FROM scratch\nCOPY a.txt /\n");
    let out = build(root.path(), ctx.path(), &["--progress=tty"], &[]).fails_with(1);
    assert!(
        out.stderr
            .contains("--progress=tty needs a terminal on stderr"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
}

/// Run `kiln ARGS` under `script` (a pseudo-terminal of 72×30 on stdin/stderr; stdout goes
/// to `stdout_file`), returning what the terminal received.
fn in_terminal(root: &Path, args: &[&str], stdout_file: &Path) -> Result<String, Skip> {
    let script = harness::which("script")?;
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut command = format!(
        "stty cols 72 rows 30; exec {} --root {}",
        quote(harness::kiln_exe().to_str().unwrap()),
        quote(root.to_str().unwrap())
    );
    for a in args {
        command.push(' ');
        command.push_str(&quote(a));
    }
    command.push_str(" > ");
    command.push_str(&quote(stdout_file.to_str().unwrap()));
    let out = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("BUILDKIT_PROGRESS")
        .env("KILN_ROOT", root)
        .output()
        .expect("script runs");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kiln in a terminal failed ({:?}):\n{screen}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(screen)
}

#[test]
fn tty_draws_live_frames_in_a_terminal() {
    let root = skip_unless!(busybox_store(&[]));
    let id_file = harness::tempdir();
    let id_path = id_file.path().join("id");
    for mode in ["tty", "auto"] {
        // The output differs from the instruction's text (`$((40+2))`), and from one mode to
        // the other (no cache hit).
        let ctx = context(&format!(
            "FROM busybox:local\nRUN echo out-{mode}-$((40+2)) && sleep 1\nCOPY a.txt /a.txt\n"
        ));
        let progress = format!("--progress={mode}");
        let screen = skip_unless!(in_terminal(
            root.path(),
            &[
                "build",
                &progress,
                "-t",
                "tty:1",
                ctx.path().to_str().unwrap()
            ],
            &id_path,
        ));
        // The frames: a header, one line per step with a timer, the RUN's output while it
        // runs, redrawn in place with the cursor hidden meanwhile.
        assert!(screen.contains("[+] Building "), "{screen:?}");
        assert!(
            screen.contains(" => [1/3] FROM busybox:local"),
            "{screen:?}"
        );
        assert!(
            screen.contains(&format!(
                " => [2/3] RUN echo out-{mode}-$((40+2)) && sleep 1"
            )),
            "{screen:?}"
        );
        assert!(
            screen.contains(&format!(" => => # out-{mode}-42")),
            "{screen:?}"
        );
        assert!(screen.contains("\x1b[?25l") && screen.contains("\x1b[?25h"));
        assert!(screen.contains("\x1b[K"), "{screen:?}");
        assert!(has_cursor_up(&screen), "redrawn in place: {screen:?}");
        let last = screen.rsplit("[+] Building ").next().unwrap();
        assert!(last.contains("(3/3) FINISHED"), "last frame: {last:?}");
        assert!(
            !last.contains(" => => # "),
            "the finished step collapses to one line: {last:?}"
        );
        assert!(last.contains(" => => naming to tty:1"), "{last:?}");
        // No line is as wide as the terminal.
        for line in screen.split('\n') {
            let visible = strip_escapes(line);
            assert!(visible.chars().count() < 72, "too wide: {visible:?}");
        }
        let id = fs_err::read_to_string(&id_path).unwrap();
        assert!(
            id.starts_with("sha256:") && id.trim_end().len() == 71,
            "stdout is the image ID: {id:?}"
        );
    }
}

/// Whether `s` moves the cursor up (`CSI n A`).
fn has_cursor_up(s: &str) -> bool {
    s.split("\x1b[").skip(1).any(|rest| {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with('A')
    })
}

/// `line` without CSI escape sequences and carriage returns.
fn strip_escapes(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                assert_eq!(chars.next(), Some('['), "only CSI sequences: {line:?}");
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}
