//! The stage scheduler, end to end: independent stages run at the same time, a failure cancels
//! the rest and is the one reported, stages the target does not need are not built, and the
//! image is the one a one-stage-at-a-time build makes.
//!
//! Base image: `busybox:local`, built into each test's store `FROM scratch` from a rootfs made
//! of Debian's busybox-static (see `harness::rootfs`), as in `build_run.rs`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{self, Skip, skip_unless};
use crate::support::{Run, busybox_store, kiln_env, write_files};

/// `SOURCE_DATE_EPOCH` of the builds whose images are compared.
const EPOCH: &str = "1700000000";

/// A store with `busybox:local` in it, and a context directory for the test's Dockerfile.
struct Fixture {
    root: tempfile::TempDir,
    ctx: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Result<Self, Skip> {
        // A reproducible base (`busybox_store` fixes SOURCE_DATE_EPOCH), so that images built
        // on it in two stores can be compared.
        Ok(Self {
            root: busybox_store(&[])?,
            ctx: harness::tempdir(),
        })
    }

    fn kiln(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        kiln_env(self.root.path(), args, env)
    }

    /// Build `dockerfile` as `test:1` with plain progress.
    fn build(&self, dockerfile: &str, env: &[(&str, &str)]) -> Run {
        write_files(self.ctx.path(), &[("Dockerfile", dockerfile)]);
        let ctx = self.ctx.path().to_str().unwrap();
        self.kiln(&["build", "--progress=plain", "-t", "test:1", ctx], env)
    }
}

/// In plain progress, the position of the line that opens step `name`'s block (`#N [name]`)
/// for the first time, and the step's number `N`.
fn step_start(lines: &[&str], name: &str) -> Option<(usize, String)> {
    lines.iter().enumerate().find_map(|(i, l)| {
        let (n, rest) = l.split_once(' ')?;
        (n.starts_with('#') && rest.starts_with('[') && rest.contains(name))
            .then(|| (i, n.to_owned()))
    })
}

/// The position of the first line of step `n` (`#N`) that starts with `what` after its number.
fn step_line(lines: &[&str], n: &str, what: &str) -> Option<usize> {
    lines.iter().position(|l| {
        l.strip_prefix(n)
            .and_then(|r| r.strip_prefix(' '))
            .is_some_and(|r| r.starts_with(what))
    })
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let f = skip_unless!(Fixture::new());
    let dockerfile = "\
FROM busybox:local AS a
RUN sleep 2 && echo a > /a

FROM busybox:local AS b
RUN sleep 2 && echo b > /b

FROM busybox:local
COPY --from=a /a /a
COPY --from=b /b /b
";
    let started = Instant::now();
    let out = f.build(dockerfile, &[("KILN_MAX_PARALLELISM", "2")]).ok();
    let elapsed = started.elapsed();
    let lines: Vec<&str> = out.stderr.lines().collect();
    let (a_start, a) = step_start(&lines, "[a 2/").expect("a's RUN started");
    let (b_start, b) = step_start(&lines, "[b 4/").expect("b's RUN started");
    let a_done = step_line(&lines, &a, "DONE").expect("a's RUN finished");
    let b_done = step_line(&lines, &b, "DONE").expect("b's RUN finished");
    assert!(
        a_start.max(b_start) < a_done.min(b_done),
        "both RUN steps must start before either finishes:\n{}",
        out.stderr
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "two 2 s RUN steps in parallel took {elapsed:?}:\n{}",
        out.stderr
    );
    // The target stage ran after both and has both files.
    let (copy_a, _) = step_start(&lines, "COPY --from=a").expect("COPY --from=a started");
    assert!(copy_a > a_done && copy_a > b_done, "{}", out.stderr);
}

#[test]
fn stages_the_target_does_not_need_are_not_built() {
    let f = skip_unless!(Fixture::new());
    let dockerfile = "\
FROM busybox:local AS unused
RUN echo this stage must not run; false

FROM busybox:local AS needed
RUN echo needed > /needed

FROM busybox:local AS final
COPY --from=needed /needed /needed

FROM busybox:local AS other
RUN false
";
    write_files(f.ctx.path(), &[("Dockerfile", dockerfile)]);
    let ctx = f.ctx.path().to_str().unwrap();
    let out = f
        .kiln(
            &[
                "build",
                "--progress=plain",
                "--target",
                "final",
                "-t",
                "t:1",
                ctx,
            ],
            &[],
        )
        .ok();
    assert!(out.stderr.contains("[needed "), "{}", out.stderr);
    assert!(out.stderr.contains("[final "), "{}", out.stderr);
    for unused in ["[unused ", "[other ", "must not run"] {
        assert!(
            !out.stderr.contains(unused),
            "{unused} appears in the progress:\n{}",
            out.stderr
        );
    }
}

#[test]
fn a_failure_is_reported_and_starts_nothing_else() {
    let f = skip_unless!(Fixture::new());
    // `slow` is running (sleep 1) when `broken` fails; its next step must never start.
    let dockerfile = "\
FROM busybox:local AS slow
RUN sleep 1
RUN echo after the failure > /never

FROM busybox:local AS broken
RUN echo breaking; exit 3

FROM busybox:local
COPY --from=slow /never /never
COPY --from=broken / /b
";
    let out = f
        .build(dockerfile, &[("KILN_MAX_PARALLELISM", "2")])
        .fails_with(1);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        step_start(&lines, "RUN echo after the failure").is_none(),
        "a step started after the failure:\n{}",
        out.stderr
    );
    assert!(
        step_start(&lines, "COPY --from").is_none(),
        "the target stage started:\n{}",
        out.stderr
    );
    let (_, broken) = step_start(&lines, "RUN echo breaking").expect("broken's RUN started");
    assert!(
        step_line(&lines, &broken, "ERROR: process").is_some(),
        "{}",
        out.stderr
    );
    // The located error names the failing step, exactly once.
    assert!(out.stderr.contains("Dockerfile:6"), "{}", out.stderr);
    assert!(out.stderr.contains("exit code: 3"), "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("ERROR:").count(),
        1,
        "only the first failure is an error:\n{}",
        out.stderr
    );
}

/// A failure kills a long RUN of another stage: the build ends in seconds, the RUN is shown
/// `CANCELED` and the error is the failing step's.
/// (RUN hands its container to the build's cancellation, `Cancel::kill_on_cancel`.)
#[test]
fn a_failure_cancels_a_long_run_in_another_stage() {
    let f = skip_unless!(Fixture::new());
    let dockerfile = "\
FROM busybox:local AS long
RUN sleep 100

FROM busybox:local AS broken
RUN sleep 1; exit 7

FROM busybox:local
COPY --from=long / /l
COPY --from=broken / /b
";
    write_files(f.ctx.path(), &[("Dockerfile", dockerfile)]);
    let started = Instant::now();
    let mut child = harness::kiln_cmd(f.root.path())
        .args(["build", "--progress=plain", "-t", "test:1"])
        .arg(f.ctx.path())
        .env("KILN_MAX_PARALLELISM", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln starts");
    // Never leave a 100 s build behind: kill our own child if it overstays.
    let deadline = Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let elapsed = started.elapsed();
    let status = status
        .unwrap_or_else(|| panic!("the build was still running after {deadline:?}:\n{stderr}"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(15),
        "the failure did not cancel `RUN sleep 100` ({elapsed:?}):\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    let (_, long) = step_start(&lines, "RUN sleep 100").expect("the long RUN started");
    assert!(
        step_line(&lines, &long, "CANCELED").is_some(),
        "the long RUN is shown canceled:\n{stderr}"
    );
    assert!(stderr.contains("Dockerfile:5"), "{stderr}");
    assert!(stderr.contains("exit code: 7"), "{stderr}");
    assert_eq!(stderr.matches("ERROR:").count(), 1, "{stderr}");
}

/// The same image, byte for byte, whether the stages run together or one at a time.
#[test]
fn parallel_and_sequential_builds_give_the_same_image() {
    let f = skip_unless!(Fixture::new());
    let dockerfile = "\
FROM busybox:local AS a
RUN sleep 0.5 && echo a > /a && mkdir -p /out && cp /a /out/

FROM busybox:local AS b
RUN echo b > /b
WORKDIR /w
RUN echo in-w > f

FROM a AS c
COPY --from=b /w/f /c
RUN --mount=from=b,target=/mnt cat /mnt/b > /c2

FROM busybox:local
COPY --from=c /c /c2 /
COPY --from=a /out/ /out/
ENV X=1
";
    // A fresh store for each build: nothing is shared between them.
    let stores = [f, skip_unless!(Fixture::new())];
    let ids: Vec<String> = stores
        .iter()
        .zip(["1", "4"])
        .map(|(g, jobs)| {
            write_files(g.ctx.path(), &[("Dockerfile", dockerfile)]);
            let ctx = g.ctx.path().to_str().unwrap();
            let env = [("KILN_MAX_PARALLELISM", jobs), ("SOURCE_DATE_EPOCH", EPOCH)];
            let out = g.kiln(&["build", "-q", ctx], &env).ok();
            out.stdout.trim().to_owned()
        })
        .collect();
    assert!(ids[0].starts_with("sha256:"), "{ids:?}");
    assert_eq!(ids[0], ids[1], "one at a time vs four at once");
}
