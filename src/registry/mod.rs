//! The registry client: the OCI distribution v2 API (Docker Registry HTTP API v2) over `ureq`,
//! with Docker's conventions for hosts (`docker.io` → `registry-1.docker.io`), insecure
//! registries (loopback, or `--tls-verify=false`: unverified HTTPS, then plain HTTP) and
//! anonymous bearer-token authentication.
//!
//! - [`pull`]: registry → store, digest- and DiffID-verified while streaming, layers in
//!   parallel, interrupted downloads resumed, reference set last.
//! - [`push`], [`push_all`]: store → registry, skipping blobs the registry has, mounting or
//!   uploading the rest (monolithic or chunked, in parallel, resumed), manifest last.
//! - [`TransferObserver`]: progress events for the CLI.
//!
//! Module map: `endpoint` (hosts, schemes, URLs), `transport` (HTTP agents, transport errors),
//! `auth` (challenges, tokens), `client` (a session with one repository), `retry` (backoff),
//! `manifest` (fetching and identifying manifests), `download` and `upload` (one blob each
//! way), `pull`, `push`, `observer`, `error`.
//!
//! Not responsible for: credentials and custom CAs (issue [F] points 1-2: `auth`,
//! `transport`), nor unpacking layers.

mod auth;
mod client;
mod download;
mod endpoint;
mod error;
mod manifest;
mod observer;
mod pull;
mod push;
mod retry;
mod transport;
mod upload;

pub use endpoint::DOCKER_HUB_API_HOST;
pub use error::{ApiError, ApiErrors, RegistryError, Result};
pub use observer::{BlobKind, NoopObserver, PROGRESS_STEP, TransferEvent, TransferObserver};
pub use pull::pull;
pub use push::{push, push_all};

use crate::image::Platform;

/// Options of pulls and pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// `--tls-verify`: `Some(true)` requires verified HTTPS (even for loopback registries);
    /// `Some(false)` tries HTTPS without verification, then plain HTTP; `None` (not given)
    /// means verified HTTPS, except for `localhost`, `127.0.0.0/8` and `::1`, which are treated
    /// as insecure (Docker's default).
    pub tls_verify: Option<bool>,
    /// The platform to select from a multi-platform image (default: the host's).
    pub platform: Platform,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            tls_verify: None,
            platform: Platform::host(),
        }
    }
}
