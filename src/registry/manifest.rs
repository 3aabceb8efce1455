//! Fetching manifests and indexes from a registry: the `Accept` header, the size limit, digest
//! verification (against the pinned digest or descriptor, else the `Docker-Content-Digest`
//! header), and deciding the media type of what came back.
//!
//! The bytes are kept exactly as received: their digest is the manifest's identity.
//! Not responsible for: platform selection or storing anything (see `pull`).

use serde::Deserialize;
use serde::de::IgnoredAny;
use snapshotter::Digest;
use ureq::http::Method;

use super::client::{self, Call, Client, Subject};
use super::endpoint;
use super::error::{RegistryError, Result};
use super::transport;
use crate::image::{Descriptor, media_type};

/// Largest manifest or index accepted (the limit distribution's registry applies to manifests
/// it accepts, so no valid image has a larger one).
pub const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

/// Media types asked for: OCI and Docker schema 2, single- and multi-platform.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Docker's legacy signed manifest, which kiln does not read.
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// A manifest or index as received.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl Fetched {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.digest,
            self.bytes.len() as u64,
        )
    }

    pub fn is_index(&self) -> bool {
        media_type::is_index(&self.media_type)
    }
}

/// `GET /v2/<name>/manifests/<reference>` (a tag or a digest). `shown` names the manifest in
/// messages; `expected` is the digest the bytes must have, when known (a pinned reference, or
/// a descriptor from an index).
pub fn fetch(
    client: &Client,
    reference: &str,
    shown: &str,
    expected: Option<&Digest>,
) -> Result<Fetched> {
    let url = client.url(
        endpoint::manifest_url(client.base(), client.name(), reference),
        "a manifest",
    )?;
    let call = Call::new(Method::GET, url.clone()).header("accept", ACCEPT);
    let response = client.send(&call)?;
    if response.status() != 200 {
        return Err(client.status_error(
            &format!("fetching manifest for {shown}"),
            Subject::Manifest(shown),
            response,
        ));
    }
    let header_digest =
        client::header(&response, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok());
    let content_type = client::header(&response, "content-type").map(str::to_owned);
    let bytes = transport::read_body(response.into_body(), MANIFEST_LIMIT)
        .map_err(|e| transport::classify(e, &Method::GET, &url))?
        .ok_or_else(|| RegistryError::ManifestTooLarge {
            reference: shown.to_owned(),
            limit: MANIFEST_LIMIT,
        })?;

    let digest = Digest::of(&bytes);
    // A pinned digest is what the user asked for; the header is only the registry's claim
    // (an unparsable or non-sha256 header is no evidence either way and is ignored).
    if let Some(want) = expected.or(header_digest.as_ref())
        && *want != digest
    {
        return Err(RegistryError::DigestMismatch {
            what: format!("manifest for {shown} from {}", client.repository()),
            expected: *want,
            actual: digest,
        });
    }
    let media_type = detect_media_type(&bytes, content_type.as_deref(), shown)?;
    Ok(Fetched {
        bytes,
        media_type,
        digest,
    })
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u64>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<IgnoredAny>,
    #[serde(default)]
    config: Option<IgnoredAny>,
}

/// The media type of a manifest document: its own `mediaType` field, else the `Content-Type`
/// header, else its shape (`manifests` → OCI index, `config` → OCI manifest). Schema 1 and
/// anything else that is not an image manifest or index is refused.
pub fn detect_media_type(bytes: &[u8], content_type: Option<&str>, shown: &str) -> Result<String> {
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|source| RegistryError::InvalidJson {
            what: "manifest",
            reference: shown.to_owned(),
            source,
        })?;
    let unsupported = |media_type: &str| RegistryError::UnsupportedMediaType {
        what: format!("manifest for {shown}"),
        media_type: media_type.to_owned(),
    };
    if probe.schema_version == Some(1) {
        return Err(unsupported(DOCKER_SCHEMA1));
    }
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .filter(|c| !c.is_empty());
    let declared = probe
        .media_type
        .as_deref()
        .or(header.filter(|h| media_type::is_manifest(h) || media_type::is_index(h)));
    match declared {
        Some(m) if media_type::is_manifest(m) || media_type::is_index(m) => Ok(m.to_owned()),
        Some(m) => Err(unsupported(m)),
        None if probe.manifests.is_some() => Ok(media_type::OCI_INDEX.to_owned()),
        None if probe.config.is_some() => Ok(media_type::OCI_MANIFEST.to_owned()),
        None => Err(unsupported(header.unwrap_or("(none)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(body: &str, content_type: Option<&str>) -> Result<String> {
        detect_media_type(body.as_bytes(), content_type, "x:latest")
    }

    #[test]
    fn body_media_type_wins_then_header_then_shape() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"layers":[]}"#;
        assert_eq!(
            detect(m, Some(media_type::OCI_MANIFEST)).unwrap(),
            media_type::DOCKER_MANIFEST
        );
        let bare = r#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            detect(
                bare,
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8")
            )
            .unwrap(),
            media_type::DOCKER_MANIFEST
        );
        assert_eq!(
            detect(bare, Some("application/json")).unwrap(),
            media_type::OCI_MANIFEST
        );
        assert_eq!(
            detect(r#"{"schemaVersion":2,"manifests":[]}"#, None).unwrap(),
            media_type::OCI_INDEX
        );
    }

    #[test]
    fn refuses_schema1_artifacts_and_garbage() {
        let e = detect(
            r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#,
            Some(DOCKER_SCHEMA1),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("manifest for x:latest has unsupported media type `{DOCKER_SCHEMA1}`")
        );
        let e = detect(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.cncf.helm.chart.v1+json"}"#,
            None,
        )
        .unwrap_err();
        assert!(
            matches!(e, RegistryError::UnsupportedMediaType { .. }),
            "{e}"
        );
        let e = detect("<html>", Some("text/html")).unwrap_err();
        assert!(matches!(e, RegistryError::InvalidJson { .. }), "{e}");
        let e = detect(r#"{"schemaVersion":2}"#, Some("text/plain")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "manifest for x:latest has unsupported media type `text/plain`"
        );
    }
}
