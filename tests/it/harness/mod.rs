//! Test harness for kiln's integration tests (`tests/it`).
//!
//! What it provides:
//! - [`Skip`] and [`skip_unless!`]: a test whose prerequisites are missing (a tool, root, a kernel
//!   feature) prints `SKIP <test>: <reason>` and returns; it never passes silently. Set
//!   `KILN_TEST_NO_SKIP=1` to turn every skip into a failure (for CI machines that are supposed to
//!   have everything).
//! - [`Registry`]: a throw-away local registry (Debian's `docker-registry`) on a free port,
//!   optionally with htpasswd Basic auth or bearer tokens from a [`TokenServer`].
//! - [`busybox_layout`]: a busybox base image as an OCI layout, built once per `target/` by
//!   `testdata/make-busybox-image.sh`; [`skopeo_push_busybox`] pushes it to a [`Registry`].
//! - [`kiln_cmd`], [`tempdir`], [`which`], [`root_required`], [`require`].
//!
//! Typical use:
//!
//! ```ignore
//! use crate::harness::{self, Registry, skip_unless};
//!
//! #[test]
//! fn pull_from_local_registry() {
//!     let reg = skip_unless!(Registry::start());
//!     let pushed = skip_unless!(harness::skopeo_push_busybox(&reg, "library/busybox:latest"));
//!     let root = harness::tempdir();
//!     let out = harness::run_ok(
//!         harness::kiln_cmd(root.path())
//!             .args(["pull", &format!("{}/library/busybox:latest", reg.host_port())]),
//!     );
//!     assert!(out.contains(&pushed), "{out}");
//! }
//! ```
//!
//! Skip reports are written straight to the process's stderr (not through `eprintln!`, which the
//! test runner captures and hides for passing tests), so they show up in `cargo test` output.

// A helper library: not every test uses every helper.
#![allow(dead_code)]

pub mod docker;
pub mod faultproxy;
mod fixtures;
mod http;
mod registry;
pub mod rootfs;
mod selftest;
mod token_server;

use std::ffi::OsStr;
use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

// The harness's API; a given test binary need not use all of it.
#[allow(unused_imports)]
pub use fixtures::{BUSYBOX_TAG, busybox_layout, layout_manifest_digest, skopeo_push_busybox};
#[allow(unused_imports)]
pub use http::Response;
#[allow(unused_imports)]
pub use registry::{MANIFEST_ACCEPT, Registry, RegistryAuth, htpasswd_file};
#[allow(unused_imports)]
pub use token_server::{TokenRequestSeen, TokenServer};

/// Why a test cannot run here (a missing tool, not root, ...). Not an error: report it with
/// [`skip_unless!`] (or [`report_skip`]) and return from the test.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Skip(String);

impl Skip {
    pub fn new(reason: impl Into<String>) -> Self {
        Skip(reason.into())
    }

    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Unwraps `Ok(value)`; on `Err(Skip)` reports `SKIP <test>: <reason>` and returns from the
/// enclosing test function (which must return `()`).
///
/// ```ignore
/// let reg = skip_unless!(Registry::start());
/// skip_unless!(harness::root_required());
/// ```
macro_rules! skip_unless {
    ($result:expr $(,)?) => {
        match $result {
            ::std::result::Result::Ok(value) => value,
            ::std::result::Result::Err(skip) => {
                $crate::harness::report_skip(&skip);
                return;
            }
        }
    };
}
pub(crate) use skip_unless;

/// Reports a skipped test as `SKIP <test>: <reason>` on the real stderr (bypassing the test
/// runner's output capture). With `KILN_TEST_NO_SKIP=1` it panics instead, so that a CI machine
/// that should have every prerequisite fails loudly rather than skipping.
pub fn report_skip(skip: &Skip) {
    let thread = std::thread::current();
    // libtest runs each test on a thread named after the test.
    let test = match thread.name() {
        Some(name) if name != "main" => name,
        _ => "<test>",
    };
    if std::env::var_os("KILN_TEST_NO_SKIP").is_some_and(|v| v != "0" && !v.is_empty()) {
        panic!("SKIP {test}: {skip} (KILN_TEST_NO_SKIP is set, so this is a failure)");
    }
    // One write call per line so parallel tests do not interleave within a line.
    let line = format!("SKIP {test}: {skip}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// `Ok(())` if `condition` holds, else a [`Skip`] with `reason`:
/// `skip_unless!(harness::require(cgroup_v2(), "needs cgroup v2"));`
pub fn require(condition: bool, reason: impl Into<String>) -> Result<(), Skip> {
    if condition {
        Ok(())
    } else {
        Err(Skip::new(reason))
    }
}

/// `Ok(())` when running with effective uid 0, else a [`Skip`].
pub fn root_required() -> Result<(), Skip> {
    let euid = rustix::process::geteuid();
    if euid.is_root() {
        Ok(())
    } else {
        Err(Skip::new(format!(
            "requires root (euid is {})",
            euid.as_raw()
        )))
    }
}

/// The absolute path of the executable `cmd`, looked up in `PATH` (or checked as given when it
/// contains a `/`); a [`Skip`] reading "`cmd` not installed" when there is none.
pub fn which(cmd: &str) -> Result<PathBuf, Skip> {
    fn is_executable(path: &Path) -> bool {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }

    if cmd.contains('/') {
        let path = Path::new(cmd);
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(Skip::new(format!("{cmd} not installed")))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(cmd))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| Skip::new(format!("{cmd} not installed")))
}

/// A `kiln` command (the binary built from this package) working on the store at `root`:
/// both `--root ROOT` (before any subcommand the caller adds) and `KILN_ROOT=ROOT` are set.
pub fn kiln_cmd(root: &Path) -> Command {
    let mut cmd = Command::new(kiln_exe());
    cmd.arg("--root").arg(root).env("KILN_ROOT", root);
    cmd
}

/// Path of the `kiln` binary under test.
pub fn kiln_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kiln"))
}

/// The repository root (where `Cargo.toml` and `testdata/` are).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory (`target/`, or `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map_or_else(|| tmp.to_path_buf(), Path::to_path_buf)
}

/// A fresh temporary directory under `target/tmp` (removed on drop). Prefer it over `/tmp` for
/// stores and build contexts: `target/` is on a real disk, so overlayfs upper dirs and xattrs
/// work, and leftovers of a killed run are removed by `cargo clean`.
pub fn tempdir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if let Err(e) = fs_err::create_dir_all(base) {
        panic!("{e}");
    }
    tempfile::Builder::new()
        .prefix("kiln-it-")
        .tempdir_in(base)
        .unwrap_or_else(|e| panic!("creating a temp dir in {}: {e}", base.display()))
}

/// Runs `cmd` to completion with captured output; panics with the command line, exit status,
/// stdout and stderr if it fails. Returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let shown = show_command(cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `program arg1 arg2 ...`, for messages.
fn show_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}
