//! The registry client's error type, and the distribution API's JSON error bodies
//! (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":...}]}`,
//! distribution spec "Error Codes").
//!
//! Responsible for: saying what failed, on which registry, repository, manifest or blob, and
//! why. Not responsible for: deciding when a request failed (the callers in `client`, `pull`
//! and `push` do that) or rendering help text for the CLI.

use std::fmt;
use std::io;

use serde::Deserialize;
use snapshotter::Digest;

use crate::store::StoreError;

/// Result of registry operations.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Errors of the registry client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No connection could be made: connection refused, DNS failure, network unreachable.
    #[error("cannot reach registry {host}: {reason}")]
    Unreachable {
        host: String,
        reason: String,
        #[source]
        source: Box<ureq::Error>,
    },

    /// The TLS handshake failed (untrusted certificate, plain-HTTP server, protocol mismatch).
    #[error("tls connection to registry {host} failed: {reason}")]
    Tls {
        host: String,
        reason: String,
        #[source]
        source: Box<ureq::Error>,
    },

    /// A certificate or key of a `certs.d` directory could not be read or parsed.
    #[error("registry {host}: certificate file {path}: {reason}")]
    CertsDir {
        host: String,
        path: std::path::PathBuf,
        reason: String,
    },

    /// A registries configuration file (registries.conf, daemon.json) could not be read.
    #[error("registry configuration {path}: {reason}")]
    Config {
        path: std::path::PathBuf,
        reason: String,
    },

    /// The proxy the environment names for a registry is not a usable proxy URL.
    #[error("registry {host}: proxy {url} (from the environment): {reason}")]
    Proxy {
        host: String,
        url: String,
        reason: String,
    },

    /// A connection was made but the exchange broke down (reset, timeout, malformed HTTP).
    #[error("{method} {url} to registry {host} failed: {reason}")]
    Transport {
        host: String,
        method: String,
        url: String,
        reason: String,
        #[source]
        source: Box<ureq::Error>,
    },

    /// The connection broke while a response body was being received.
    #[error("receiving {what} from registry {host} failed")]
    Receive {
        host: String,
        what: String,
        #[source]
        source: io::Error,
    },

    /// `MANIFEST_UNKNOWN` (or a 404 for a manifest).
    #[error("manifest for {reference} not found: {errors}")]
    ManifestNotFound {
        reference: String,
        errors: ApiErrors,
    },

    /// `NAME_UNKNOWN`: the repository does not exist.
    #[error("repository {repository} not found: {errors}")]
    RepositoryNotFound {
        repository: String,
        errors: ApiErrors,
    },

    /// `BLOB_UNKNOWN` (or a 404 for a blob).
    #[error("blob {digest} not found in {repository}: {errors}")]
    BlobNotFound {
        repository: String,
        digest: Digest,
        errors: ApiErrors,
    },

    /// The registry wants credentials that kiln does not have (a 401 that an anonymous token
    /// did not satisfy).
    #[error("authentication required for {registry}: {detail}")]
    AuthRequired { registry: String, detail: String },

    /// The registry (or its token server) refused the credentials kiln sent.
    #[error("registry {registry} rejected {who}: {detail}")]
    CredentialsRejected {
        registry: String,
        /// `the password of user alice`, `the stored identity token`.
        who: String,
        detail: String,
    },

    /// Reading or storing credentials failed (config file, credential helper).
    #[error("credentials for registry {registry}")]
    Credentials {
        registry: String,
        #[source]
        source: crate::registry::credentials::CredentialError,
    },

    /// `DENIED` / `UNAUTHORIZED` with a 403: authenticated, but not allowed.
    #[error("access to {repository} denied: {errors}")]
    Denied {
        repository: String,
        errors: ApiErrors,
    },

    /// Any other unexpected HTTP status, with the registry's error codes.
    #[error("{operation} failed: registry answered HTTP {status}: {errors}")]
    Status {
        operation: String,
        status: u16,
        errors: ApiErrors,
    },

    /// The token server refused to issue a token, or answered with something unusable.
    #[error("token request to {realm} for registry {registry} failed: {detail}")]
    Token {
        registry: String,
        realm: String,
        detail: String,
    },

    /// Content whose digest is not the one it was asked for (registry answer or local blob).
    #[error("{what} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    /// Content whose size is not the one its descriptor gives.
    #[error("{what} has {actual} bytes, but its descriptor says {expected}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    /// A manifest larger than kiln accepts (protection against unbounded reads).
    #[error("manifest for {reference} is larger than the {limit}-byte limit")]
    ManifestTooLarge { reference: String, limit: u64 },

    /// A manifest, index or token response that does not parse.
    #[error("invalid {what} for {reference}")]
    InvalidJson {
        what: &'static str,
        reference: String,
        #[source]
        source: serde_json::Error,
    },

    /// A media type kiln cannot handle (e.g. Docker schema 1, or an artifact that is not an
    /// image).
    #[error("{what} has unsupported media type `{media_type}`")]
    UnsupportedMediaType { what: String, media_type: String },

    /// An index without an entry for the requested platform.
    #[error("{reference} has no image for platform {wanted} (available: {})", list_or_none(.available))]
    PlatformNotFound {
        reference: String,
        wanted: String,
        available: Vec<String>,
    },

    /// A response that breaks the protocol (missing `Location`, unparsable URL, ...).
    #[error("invalid response from registry {host} to {operation}: {detail}")]
    InvalidResponse {
        host: String,
        operation: String,
        detail: String,
    },

    /// A URL of the API could not be built (e.g. from a registry's `Location` header).
    #[error("cannot build the URL for {what} on registry {host}")]
    Url {
        host: String,
        what: String,
        #[source]
        source: url::ParseError,
    },

    /// A request could not be built (e.g. a header value with control characters).
    #[error("cannot build the request {what}")]
    Request {
        what: String,
        #[source]
        source: ureq::http::Error,
    },

    /// A push destination pinned to a digest other than the image's manifest digest.
    #[error(
        "cannot push manifest {manifest} to {destination}: the destination pins a different digest"
    )]
    DestinationDigest {
        destination: String,
        manifest: Digest,
    },

    /// Reading from or writing to the local store failed.
    #[error("{action}")]
    Store {
        action: String,
        #[source]
        source: StoreError,
    },
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// One entry of a distribution API error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// `MANIFEST_UNKNOWN`, `NAME_UNKNOWN`, `BLOB_UNKNOWN`, `UNAUTHORIZED`, `DENIED`, ...
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

/// The errors a registry returned with an HTTP error status. Displays as the registry's
/// messages (`manifest unknown`), or `HTTP <status>` when the body had none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiErrors {
    pub status: u16,
    pub errors: Vec<ApiError>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ApiError>,
}

impl ApiErrors {
    /// Parse an error body; anything that is not the distribution error JSON gives no entries.
    pub fn parse(status: u16, body: &[u8]) -> Self {
        let errors = serde_json::from_slice::<ErrorBody>(body)
            .map(|b| b.errors)
            .unwrap_or_default();
        Self { status, errors }
    }

    /// Whether any entry has this error code (compared case-insensitively).
    pub fn has_code(&self, code: &str) -> bool {
        self.errors
            .iter()
            .any(|e| e.code.eq_ignore_ascii_case(code))
    }
}

impl fmt::Display for ApiErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = 0;
        for e in &self.errors {
            let text = if e.message.is_empty() {
                e.code.to_ascii_lowercase().replace('_', " ")
            } else {
                e.message.clone()
            };
            if text.is_empty() {
                continue;
            }
            if shown > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&text)?;
            shown += 1;
        }
        if shown == 0 {
            write!(f, "HTTP {}", self.status)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_display_messages_or_status() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        let e = ApiErrors::parse(404, body);
        assert!(e.has_code("manifest_unknown"));
        assert_eq!(e.to_string(), "manifest unknown");

        let e = ApiErrors::parse(
            404,
            br#"{"errors":[{"code":"NAME_UNKNOWN"},{"code":"X","message":"second"}]}"#,
        );
        assert_eq!(e.to_string(), "name unknown; second");

        assert_eq!(
            ApiErrors::parse(502, b"<html>bad gateway</html>").to_string(),
            "HTTP 502"
        );
        assert_eq!(ApiErrors::parse(404, b"").to_string(), "HTTP 404");
    }

    #[test]
    fn manifest_not_found_reads_like_docker() {
        let err = RegistryError::ManifestNotFound {
            reference: "localhost:5000/foo:latest".into(),
            errors: ApiErrors::parse(
                404,
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        };
        assert_eq!(
            err.to_string(),
            "manifest for localhost:5000/foo:latest not found: manifest unknown"
        );
    }

    #[test]
    fn platform_not_found_lists_what_exists() {
        let err = RegistryError::PlatformNotFound {
            reference: "busybox:latest".into(),
            wanted: "linux/s390x".into(),
            available: vec!["linux/amd64".into(), "linux/arm64/v8".into()],
        };
        assert_eq!(
            err.to_string(),
            "busybox:latest has no image for platform linux/s390x (available: linux/amd64, linux/arm64/v8)"
        );
    }
}
