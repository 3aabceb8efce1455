//! Running a spec through an OCI runtime binary (`runc`, `crun`) on a bundle.

use super::{Container, Result, SandboxError, Spec, StdioConfig};

/// An OCI runtime binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRuntime {
    /// `runc`, `crun` (looked up in `PATH`) or a path.
    pub binary: std::path::PathBuf,
}

pub(crate) fn start(
    _rt: &OciRuntime,
    _id: &str,
    _spec: &Spec,
    _stdio: StdioConfig,
) -> Result<Container> {
    Err(SandboxError::Spec("the OCI runtime backend is being written".into()))
}
