//! The registry client: the OCI distribution v2 API (Docker Registry HTTP API v2) over `ureq`,
//! with Docker's conventions for hosts (`docker.io` → `registry-1.docker.io`), insecure
//! registries (loopback, or `--tls-verify=false`: unverified HTTPS, then plain HTTP) and
//! authentication (Basic, and bearer tokens, with credentials from Docker's config file or
//! credential helpers).
//!
//! - [`pull`]: registry → store, digest- and DiffID-verified while streaming, layers in
//!   parallel, interrupted downloads resumed, reference set last.
//! - [`push`], [`push_all`]: store → registry, skipping blobs the registry has, mounting or
//!   uploading the rest (monolithic or chunked, in parallel, resumed), manifest last.
//! - [`TransferObserver`]: progress events for the CLI.
//! - [`login`]: check credentials; [`credentials`]: where they are kept.
//!
//! Module map: `endpoint` (hosts, schemes, URLs), `transport` (HTTP agents, transport errors),
//! `tls` (certs.d certificates, proxies), `config` (insecure registries and pull mirrors
//! declared in registries.conf and daemon.json), `auth` (challenges, tokens, login),
//! `credentials` (config file, helpers), `client` (a session with one repository), `retry`
//! (backoff), `manifest` (fetching and identifying manifests), `download` and `upload` (one
//! blob each way), `parallel` (a bounded number of transfers at once), `pull`, `push`,
//! `observer`, `error`.
//!
//! Not responsible for: unpacking layers.

mod artifact;
mod auth;
mod client;
mod config;
pub mod credentials;
mod download;
mod endpoint;
mod error;
mod manifest;
mod observer;
mod parallel;
mod pull;
mod push;
mod retry;
mod tls;
mod transport;
mod upload;

pub use artifact::{CONFIG_LIMIT, RemoteArtifact};
pub use auth::login::{LoginOutcome, login};
pub use credentials::{CredentialStore, Credentials, Secret, StoredIn};
pub use endpoint::DOCKER_HUB_API_HOST;
pub use error::{ApiError, ApiErrors, RegistryError, Result};
pub use observer::{BlobKind, NoopObserver, PROGRESS_STEP, TransferEvent, TransferObserver};
pub use pull::{ReadyLayer, pull, pull_unpacking};
pub use push::{push, push_all, push_manifest_all};

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
    /// Where credentials are found (default: Docker's config file and credential helpers,
    /// as the environment names them; see [`CredentialStore::from_env`]).
    pub credentials: CredentialStore,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            tls_verify: None,
            platform: Platform::host(),
            credentials: CredentialStore::from_env(),
        }
    }
}
