//! Running a spec through an OCI runtime binary (`runc`, `crun`) on a bundle: the cross-check
//! backend ([`super::Backend::Oci`]).
//!
//! [`start`] makes a private temporary directory holding the bundle (`config.json`: the spec,
//! with `root.path` made absolute and `process.terminal` false), the runtime's state root and its
//! log, and runs `<runtime> --root <dir>/state --log <dir>/runtime.log --log-format json run
//! --bundle <dir> <id>` in the foreground: the runtime process is the container process's parent
//! and passes the streams of [`super::StdioConfig`] straight through. [`Process::wait`] waits
//! for the runtime process, deletes what a killed runtime left (`<runtime> delete -f`) and
//! removes the directory; a private state root per container means nothing is left behind and
//! two containers never share state.
//!
//! Exit status: `runc run` and `crun run` exit with the container process's code, or with
//! 128 + n when a signal n killed it. From the outside the two cannot be told apart (a process
//! may `exit(137)`), so the status is [`ExitStatus::Code`]`(128 + n)` in that case, and
//! [`ExitStatus::Signal`] only when the runtime process itself was killed by a signal. Compare
//! with the embedded backend through [`ExitStatus::code`], which is the same for both. A
//! runtime that fails before the container process runs (bad spec, missing executable) exits
//! with 1 after logging an error; that becomes [`SandboxError::Runtime`] with the logged
//! message.
//!
//! cgroup v1 hybrid hosts: crun refuses to run when the cgroup2 hierarchy has controllers
//! attached ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"; seen
//! with crun 1.8.1 on the development machine, whose `/sys/fs/cgroup/unified` has `hugetlb`).
//! For a runtime named `crun` on a hybrid host, the runtime process therefore starts in a new
//! mount namespace where `/` is made a downstream (slave) mount, so nothing propagates back, and
//! the cgroup2 mount is detached: crun then sees a v1 host. runc handles hybrid hosts itself and
//! runs unchanged.
//!
//! Not responsible for: making the spec (the spec builder) or the rootfs (the solver); `terminal:
//! true` (there is no console socket).

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use super::{Container, ExitStatus, Process, Result, SandboxError, Spec, Stdio, StdioConfig};

/// An OCI runtime binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRuntime {
    /// `runc`, `crun` (looked up in `PATH`) or a path.
    pub binary: PathBuf,
}

impl OciRuntime {
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
        }
    }

    /// The runtime's name for messages (`crun`, `runc`, or the path as given).
    pub fn name(&self) -> String {
        self.binary.display().to_string()
    }

    /// The binary's path: a path with a `/` as given, a bare name looked up in `PATH`.
    pub fn resolve(&self) -> Result<PathBuf> {
        let is_executable = |path: &Path| {
            rustix::fs::access(path, rustix::fs::Access::EXEC_OK).is_ok() && path.is_file()
        };
        if self.binary.as_os_str().as_bytes().contains(&b'/') {
            return if is_executable(&self.binary) {
                Ok(self.binary.clone())
            } else {
                Err(self.error(format!("`{}` is not an executable file", self.name())))
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(&self.binary))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| self.error(format!("`{}` not found in PATH", self.name())))
    }

    /// Whether this is crun, which needs the cgroup2 mount hidden on hybrid hosts.
    fn is_crun(&self) -> bool {
        self.binary
            .file_name()
            .is_some_and(|name| name.as_bytes().starts_with(b"crun"))
    }

    fn error(&self, message: impl Into<String>) -> SandboxError {
        SandboxError::Runtime {
            runtime: self.name(),
            message: message.into(),
        }
    }
}

/// Start `spec` as container `id` with the runtime `rt` (see the module docs).
pub(crate) fn start(
    rt: &OciRuntime,
    id: &str,
    spec: &Spec,
    stdio: StdioConfig,
) -> Result<Container> {
    let binary = rt.resolve()?;
    validate_id(id)?;
    let bundle = Bundle::create(id, spec)?;
    let mut cmd = Command::new(&binary);
    cmd.arg("--root")
        .arg(bundle.state())
        .arg("--log")
        .arg(bundle.log())
        .args(["--log-format", "json", "run", "--bundle"])
        .arg(bundle.dir.path())
        .arg(id)
        .stdin(process_stdio(stdio.stdin))
        .stdout(process_stdio(stdio.stdout))
        .stderr(process_stdio(stdio.stderr));
    if rt.is_crun()
        && let Some(cgroup2) = super::cgroup::hybrid_cgroup2_mount()
    {
        hide_cgroup2(&mut cmd, cgroup2)?;
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| rt.error(format!("starting {}: {e}", binary.display())))?;
    let stdin = child
        .stdin
        .take()
        .map(|p| std::fs::File::from(OwnedFd::from(p)));
    let stdout = child
        .stdout
        .take()
        .map(|p| std::fs::File::from(OwnedFd::from(p)));
    let stderr = child
        .stderr
        .take()
        .map(|p| std::fs::File::from(OwnedFd::from(p)));
    let process = OciProcess {
        rt: rt.clone(),
        binary,
        id: id.to_string(),
        child,
        bundle: Some(bundle),
        status: None,
    };
    Ok(Container::new(Box::new(process), stdin, stdout, stderr))
}

/// The ids runc accepts (`^[\w+\-.]+$`), which also keep them usable as file names.
fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(SandboxError::Spec(format!(
            "container id `{id}` may only contain letters, digits, `_`, `+`, `-` and `.`"
        )))
    }
}

fn process_stdio(stdio: Stdio) -> std::process::Stdio {
    match stdio {
        Stdio::Null => std::process::Stdio::null(),
        Stdio::Pipe => std::process::Stdio::piped(),
        Stdio::Inherit => std::process::Stdio::inherit(),
        Stdio::Fd(owned) => std::process::Stdio::from(owned),
    }
}

/// In the runtime's child, before `execve`: a new mount namespace whose mounts are downstream
/// of the host's (so the unmount does not propagate back), without the cgroup2 mount.
fn hide_cgroup2(cmd: &mut Command, cgroup2: &Path) -> Result<()> {
    let target = CString::new(cgroup2.as_os_str().as_bytes())
        .map_err(|e| SandboxError::io("cgroup2 mount point", std::io::Error::other(e)))?;
    let hide = move || -> std::io::Result<()> {
        use rustix::mount::{MountPropagationFlags, UnmountFlags};
        // SAFETY: NEWNS only (no FILES): nothing about descriptors changes; this runs in the
        // single-threaded child between fork and exec and only makes system calls.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        )?;
        rustix::mount::unmount(target.as_c_str(), UnmountFlags::DETACH)?;
        Ok(())
    };
    // SAFETY: the closure allocates nothing and takes no lock (the path was made before).
    unsafe { cmd.pre_exec(hide) };
    Ok(())
}

/// The private directory of one container: `config.json` and the rootfs reference, the
/// runtime's state root (`state/`) and log (`runtime.log`).
#[derive(Debug)]
struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    fn create(id: &str, spec: &Spec) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kiln-oci-{id}-"))
            .tempdir()
            .map_err(|e| SandboxError::io("creating the OCI bundle directory", e))?;
        let config = bundle_config(spec)?;
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| SandboxError::Spec(format!("serializing the spec: {e}")))?;
        fs_err::write(dir.path().join("config.json"), json)
            .map_err(|e| SandboxError::io("writing the bundle's config.json", e))?;
        Ok(Self { dir })
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("runtime.log")
    }

    /// Whether the runtime still has state for `id` (it was killed before cleaning up).
    fn has_state(&self, id: &str) -> bool {
        self.state().join(id).exists()
    }

    /// The messages of `error`-level entries in the runtime's JSON log.
    fn logged_errors(&self) -> Vec<String> {
        let text = fs_err::read_to_string(self.log()).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| {
                matches!(
                    entry.get("level").and_then(|l| l.as_str()),
                    Some("error" | "fatal")
                )
            })
            .filter_map(|entry| entry.get("msg").and_then(|m| m.as_str()).map(String::from))
            .collect()
    }
}

/// The spec as the bundle's `config.json`: `root.path` absolute (the bundle is elsewhere) and
/// `process.terminal` false (streams are passed through).
fn bundle_config(spec: &Spec) -> Result<Spec> {
    let mut config = spec.clone();
    let root = config
        .root_mut()
        .as_mut()
        .ok_or_else(|| SandboxError::Spec("the spec has no `root`".into()))?;
    let absolute = std::path::absolute(root.path())
        .map_err(|e| SandboxError::io(format!("rootfs {}", root.path().display()), e))?;
    root.set_path(absolute);
    if let Some(process) = config.process_mut().as_mut() {
        process.set_terminal(Some(false));
    }
    Ok(config)
}

/// A container run by `<runtime> run` in the foreground.
#[derive(Debug)]
struct OciProcess {
    rt: OciRuntime,
    binary: PathBuf,
    id: String,
    /// The runtime process (the container process's parent).
    child: Child,
    /// Removed once the container is gone.
    bundle: Option<Bundle>,
    /// Set by the first `wait`.
    status: Option<ExitStatus>,
}

impl OciProcess {
    /// `<runtime> --root <state> <verb...> <id> <after...>`, with its stderr in the error.
    fn runtime(&self, verb: &[&str], after: &[&str]) -> Result<()> {
        let Some(bundle) = &self.bundle else {
            return Err(self.rt.error(format!("container `{}` is gone", self.id)));
        };
        let out = Command::new(&self.binary)
            .arg("--root")
            .arg(bundle.state())
            .args(verb)
            .arg(&self.id)
            .args(after)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                self.rt
                    .error(format!("running {}: {e}", self.binary.display()))
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.rt.error(format!(
                "`{} {} {} {}` failed ({}): {}",
                self.rt.name(),
                verb.join(" "),
                self.id,
                after.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// After the runtime process ended: delete what it left, remove the bundle.
    fn clean_up(&mut self) {
        if let Some(bundle) = &self.bundle
            && bundle.has_state(&self.id)
        {
            let _ = self.runtime(&["delete", "-f"], &[]);
        }
        self.bundle = None;
    }
}

impl Process for OciProcess {
    /// The runtime process's PID (the container process is its child).
    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(i32::MAX)
    }

    fn signal(&self, signal: i32) -> Result<()> {
        self.runtime(&["kill"], &[&signal.to_string()])
    }

    fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let waited = self.child.wait();
        let errors = self
            .bundle
            .as_ref()
            .map(Bundle::logged_errors)
            .unwrap_or_default();
        self.clean_up();
        let status =
            waited.map_err(|e| SandboxError::io(format!("waiting for {}", self.rt.name()), e))?;
        let status = match (status.code(), status.signal()) {
            (Some(code), _) if code != 0 && !errors.is_empty() => {
                return Err(self.rt.error(errors.join("; ")));
            }
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(signal)) => ExitStatus::Signal(signal),
            (None, None) => ExitStatus::Code(-1),
        };
        self.status = Some(status);
        Ok(status)
    }
}

impl Drop for OciProcess {
    /// A container that was never waited for is killed and cleaned up.
    fn drop(&mut self) {
        if self.status.is_some() || self.bundle.is_none() {
            return;
        }
        if self.runtime(&["kill"], &["KILL"]).is_err() {
            // Not created yet (or already gone): stop the runtime itself.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        self.clean_up();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        for ok in ["abc", "kiln-1.step_2+x"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ä"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_missing_runtime_is_named() {
        let err = OciRuntime::new("kiln-no-such-runtime")
            .resolve()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "OCI runtime `kiln-no-such-runtime`: `kiln-no-such-runtime` not found in PATH"
        );
        let err = OciRuntime::new("/nonexistent/crun").resolve().unwrap_err();
        assert!(err.to_string().contains("not an executable file"), "{err}");
        assert!(OciRuntime::new("/nonexistent/crun").is_crun());
        assert!(!OciRuntime::new("runc").is_crun());
    }

    #[test]
    fn the_bundle_config_has_an_absolute_root_and_no_terminal() {
        let mut spec = Spec::default();
        spec.root_mut()
            .as_mut()
            .unwrap()
            .set_path(PathBuf::from("rel/rootfs"));
        spec.process_mut()
            .as_mut()
            .unwrap()
            .set_terminal(Some(true));
        let config = bundle_config(&spec).unwrap();
        let root = config.root().as_ref().unwrap().path();
        assert!(
            root.is_absolute() && root.ends_with("rel/rootfs"),
            "{root:?}"
        );
        assert_eq!(config.process().as_ref().unwrap().terminal(), Some(false));

        let mut rootless = Spec::default();
        rootless.set_root(None);
        assert!(matches!(
            bundle_config(&rootless),
            Err(SandboxError::Spec(_))
        ));
    }
}
