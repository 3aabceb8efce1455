//! The OCI-runtime backend (`Backend::Oci`) with runc and with crun, on a busybox rootfs:
//! exit codes, streams, environment, working directory, user, signals, start failures, and
//! that no bundle or state directory is left behind.
//!
//! Each test runs for both runtimes and skips, with the reason printed, when not root or when
//! a runtime or Debian's busybox-static is missing. The rootfs is `harness::rootfs`'s.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln::sandbox::oci::OciRuntime;
use kiln::sandbox::{Backend, Container, ExitStatus, SandboxError, Spec, Stdio, StdioConfig};
use oci_spec::runtime::{ProcessBuilder, UserBuilder};

use crate::harness::rootfs::{BusyboxRootfs, busybox_rootfs};
use crate::harness::{self, Skip};

const RUNTIMES: [&str; 2] = ["runc", "crun"];

/// Root, the runtime, and a rootfs.
fn setup(runtime: &str) -> Result<(Backend, BusyboxRootfs), Skip> {
    harness::root_required()?;
    let binary = harness::which(runtime)?;
    Ok((Backend::Oci(OciRuntime::new(binary)), busybox_rootfs()?))
}

/// [`setup`], or `None` after reporting the skip (so the other runtime still runs).
fn setup_or_skip(runtime: &str) -> Option<(Backend, BusyboxRootfs)> {
    match setup(runtime) {
        Ok(ready) => Some(ready),
        Err(skip) => {
            harness::report_skip(&Skip::new(format!("{runtime}: {skip}")));
            None
        }
    }
}

/// oci-spec's default spec (namespaces, `/proc`, `/dev`, ... like `runc spec`) running `args`.
fn spec(rootfs: &Path, args: &[&str]) -> Spec {
    let mut spec = Spec::default();
    spec.root_mut()
        .as_mut()
        .unwrap()
        .set_path(rootfs.to_path_buf());
    let process = ProcessBuilder::default()
        .args(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        .env(vec!["PATH=/bin".to_string()])
        .cwd("/")
        .build()
        .unwrap();
    spec.set_process(Some(process));
    spec
}

/// A container id unique to this test run.
fn id(runtime: &str, name: &str) -> String {
    format!("kiln-it-{runtime}-{name}-{}", std::process::id())
}

/// Bundle directories of container `id` in the temp dir.
fn bundles_of(id: &str) -> Vec<PathBuf> {
    let prefix = format!("kiln-oci-{id}-");
    fs_err::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

fn piped() -> StdioConfig {
    StdioConfig {
        stdin: Stdio::Null,
        stdout: Stdio::Pipe,
        stderr: Stdio::Pipe,
    }
}

fn read_all(file: Option<std::fs::File>) -> String {
    let mut text = String::new();
    file.unwrap().read_to_string(&mut text).unwrap();
    text
}

#[test]
fn runs_with_env_cwd_user_and_exit_code() {
    for runtime in RUNTIMES {
        let Some((backend, rootfs)) = setup_or_skip(runtime) else {
            continue;
        };
        let mut spec = spec(
            rootfs.path(),
            &[
                "sh",
                "-c",
                "echo \"$GREETING\"; pwd; id -u; id -g; echo oops >&2; exit 7",
            ],
        );
        let process = spec.process_mut().as_mut().unwrap();
        process.set_env(Some(vec![
            "PATH=/bin".into(),
            "GREETING=hello world".into(),
        ]));
        process.set_cwd("/tmp".into());
        process.set_user(
            UserBuilder::default()
                .uid(65534u32)
                .gid(65534u32)
                .build()
                .unwrap(),
        );
        let id = id(runtime, "basics");
        let mut container = kiln::sandbox::start(&backend, &id, &spec, piped())
            .unwrap_or_else(|e| panic!("{runtime}: {e}"));
        assert!(container.pid() > 0);
        assert!(
            !bundles_of(&id).is_empty(),
            "{runtime}: bundle made in the temp dir"
        );
        let stdout = read_all(container.stdout.take());
        let stderr = read_all(container.stderr.take());
        let status = container.wait().unwrap();
        assert_eq!(status, ExitStatus::Code(7), "{runtime}: {stderr}");
        assert_eq!(stdout, "hello world\n/tmp\n65534\n65534\n", "{runtime}");
        assert_eq!(stderr, "oops\n", "{runtime}");
        assert_eq!(
            bundles_of(&id),
            Vec::<PathBuf>::new(),
            "{runtime}: bundle left"
        );
        assert_eq!(container.wait().unwrap(), status, "{runtime}: second wait");
    }
}

#[test]
fn stdin_pipe_reaches_the_container() {
    for runtime in RUNTIMES {
        let Some((backend, rootfs)) = setup_or_skip(runtime) else {
            continue;
        };
        let spec = spec(
            rootfs.path(),
            &["sh", "-c", "read line; echo \"got $line\""],
        );
        let stdio = StdioConfig {
            stdin: Stdio::Pipe,
            ..piped()
        };
        let mut container =
            kiln::sandbox::start(&backend, &id(runtime, "stdin"), &spec, stdio).unwrap();
        let mut stdin = container.stdin.take().unwrap();
        stdin.write_all(b"ping\n").unwrap();
        drop(stdin);
        let stdout = read_all(container.stdout.take());
        assert_eq!(container.wait().unwrap(), ExitStatus::Code(0), "{runtime}");
        assert_eq!(stdout, "got ping\n", "{runtime}");
    }
}

/// `signal` goes through `<runtime> kill`; the container's death by SIGKILL comes back as
/// 128 + 9 (see the module docs of `sandbox::oci` on why it is not `Signal(9)`).
#[test]
fn signal_kills_the_container() {
    for runtime in RUNTIMES {
        let Some((backend, rootfs)) = setup_or_skip(runtime) else {
            continue;
        };
        let spec = spec(rootfs.path(), &["sh", "-c", "echo ready; exec sleep 600"]);
        let id = id(runtime, "signal");
        let mut container: Container = kiln::sandbox::start(&backend, &id, &spec, piped()).unwrap();
        let mut stdout = BufReader::new(container.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n", "{runtime}");
        let started = Instant::now();
        container.signal(libc::SIGKILL).unwrap();
        let status = container.wait().unwrap();
        assert_eq!(status.code(), 128 + libc::SIGKILL, "{runtime}: {status}");
        assert!(started.elapsed() < Duration::from_secs(30), "{runtime}");
        assert_eq!(
            bundles_of(&id),
            Vec::<PathBuf>::new(),
            "{runtime}: bundle left"
        );
    }
}

/// A start failure is an error carrying the runtime's message, not exit code 1.
#[test]
fn a_missing_executable_is_a_runtime_error() {
    for runtime in RUNTIMES {
        let Some((backend, rootfs)) = setup_or_skip(runtime) else {
            continue;
        };
        let spec = spec(rootfs.path(), &["/bin/kiln-no-such-program"]);
        let id = id(runtime, "noexec");
        let mut container = kiln::sandbox::start(&backend, &id, &spec, piped()).unwrap();
        let _ = read_all(container.stderr.take());
        let err = container.wait().unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, SandboxError::Runtime { .. }),
            "{runtime}: {message}"
        );
        assert!(
            message.contains("kiln-no-such-program"),
            "{runtime}: {message}"
        );
        assert_eq!(
            bundles_of(&id),
            Vec::<PathBuf>::new(),
            "{runtime}: bundle left"
        );
    }
}

/// A container dropped without `wait` is killed and its bundle removed.
#[test]
fn dropping_kills_and_cleans_up() {
    for runtime in RUNTIMES {
        let Some((backend, rootfs)) = setup_or_skip(runtime) else {
            continue;
        };
        let spec = spec(rootfs.path(), &["sh", "-c", "echo ready; exec sleep 600"]);
        let id = id(runtime, "drop");
        let mut container = kiln::sandbox::start(&backend, &id, &spec, piped()).unwrap();
        let mut stdout = BufReader::new(container.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let pid = container.pid();
        drop(container);
        assert_eq!(
            bundles_of(&id),
            Vec::<PathBuf>::new(),
            "{runtime}: bundle left"
        );
        // The runtime process was reaped: its PID is gone (or reused by something else).
        let stat = fs_err::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!stat.contains(&id), "{runtime}: still running: {stat}");
    }
}

#[test]
fn a_missing_runtime_is_a_clear_error() {
    let backend = Backend::Oci(OciRuntime::new("kiln-no-such-runtime"));
    let err =
        kiln::sandbox::start(&backend, "x", &Spec::default(), StdioConfig::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "OCI runtime `kiln-no-such-runtime`: `kiln-no-such-runtime` not found in PATH"
    );
}
