//! Run one process tree in new namespaces on a rootfs (DESIGN.md decision 7).
//!
//! The input is an [`oci_spec::runtime::Spec`] whose `root.path` is an already-mounted,
//! writable rootfs directory (the solver mounts the step's snapshot there) and whose mounts,
//! namespaces, capabilities, seccomp profile, rlimits and cgroup resources say everything else.
//! [`spec::build`] makes Docker's defaults; two backends run a spec:
//!
//! - [`Backend::Embedded`]: our own runtime ([`linux`]): `clone(2)` into new namespaces, the
//!   child becomes PID 1 of the container (a tiny init that reaps zombies and forwards signals),
//!   sets up mounts with the new mount API, `pivot_root`s, and forks the user process, which
//!   takes its identity, capabilities, `no_new_privs` and seccomp filter and `execve`s. Everything
//!   the children need (paths as C strings, the BPF programs, cgroup files) is prepared in the
//!   parent: nothing after `clone` allocates or takes a lock, so it is safe from a multi-threaded
//!   process, and it never changes the calling process's working directory or other state.
//! - [`Backend::Oci`]: an OCI runtime binary (`runc`, `crun`) run on a bundle holding the same
//!   spec (`config.json`), used to cross-check behaviour.
//!
//! Not responsible for: images, caches, layers (the solver), choosing what to mount.

pub mod cgroup;
pub mod linux;
pub mod oci;
pub mod seccomp;
pub mod spec;
pub mod user;

use std::os::fd::OwnedFd;

pub use oci_spec::runtime::Spec;

/// Which runtime executes a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// kiln's own runtime (the default).
    Embedded,
    /// An OCI runtime binary, e.g. `runc` or `crun` (a name looked up in `PATH`, or a path).
    Oci(oci::OciRuntime),
}

/// Where a standard stream of the container's process goes.
#[derive(Debug, Default)]
pub enum Stdio {
    /// `/dev/null`.
    #[default]
    Null,
    /// A new pipe; the read end (stdout/stderr) or write end (stdin) is in [`Started`].
    Pipe,
    /// The caller's own stream (fd 0, 1 or 2).
    Inherit,
    /// This descriptor (e.g. a pty's side, a log file).
    Fd(OwnedFd),
}

/// The container process's standard streams.
#[derive(Debug, Default)]
pub struct StdioConfig {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == Self::Code(0)
    }

    /// The shell's convention: the code, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            Self::Code(c) => c,
            Self::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(c) => write!(f, "exit code {c}"),
            Self::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Why a container could not be started or waited for.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec asks for something this backend cannot do.
    #[error("invalid container spec: {0}")]
    Spec(String),
    /// A setup step inside the new container failed (reported back by the child).
    #[error("container setup failed: {step}")]
    Setup {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("user `{user}` not found in the image's {file}")]
    UnknownUser { user: String, file: &'static str },
    #[error("seccomp profile: {0}")]
    Seccomp(String),
    #[error("cgroup {path}")]
    Cgroup {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("OCI runtime `{runtime}`: {message}")]
    Runtime { runtime: String, message: String },
    #[error("{op}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            op: op.into(),
            source,
        }
    }
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// A started container: its process (PID 1 of the container, as the caller sees it) and the
/// caller's ends of the streams configured as [`Stdio::Pipe`].
#[derive(Debug)]
pub struct Container {
    pub stdin: Option<std::fs::File>,
    pub stdout: Option<std::fs::File>,
    pub stderr: Option<std::fs::File>,
    process: Box<dyn Process>,
}

/// A backend's handle on a running container.
pub trait Process: Send + std::fmt::Debug {
    /// The host PID of the container's first process (or of the runtime process).
    fn pid(&self) -> i32;
    /// Send `signal` to the container's main process.
    fn signal(&self, signal: i32) -> Result<()>;
    /// Wait for the container's main process to end; every process left in the container is
    /// killed, and the container's resources (cgroup, bundle) released, before this returns.
    fn wait(&mut self) -> Result<ExitStatus>;
}

impl Container {
    pub fn new(
        process: Box<dyn Process>,
        stdin: Option<std::fs::File>,
        stdout: Option<std::fs::File>,
        stderr: Option<std::fs::File>,
    ) -> Self {
        Self {
            stdin,
            stdout,
            stderr,
            process,
        }
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    pub fn signal(&self, signal: i32) -> Result<()> {
        self.process.signal(signal)
    }

    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.process.wait()
    }
}

/// Start `spec` as container `id` (unique among running containers; names its cgroup).
pub fn start(backend: &Backend, id: &str, spec: &Spec, stdio: StdioConfig) -> Result<Container> {
    match backend {
        Backend::Embedded => linux::start(id, spec, stdio),
        Backend::Oci(rt) => oci::start(rt, id, spec, stdio),
    }
}
