//! Reading a non-image artifact from a registry: one manifest (an OCI image manifest whose
//! config is not an image config, such as the build cache `cache::share` exports), its small
//! config blob read into memory, and its layers fetched on demand into the content store.
//!
//! Everything is verified as for images: the manifest against its digest (`manifest`), the
//! config against its descriptor, and each layer's digest, size and DiffID while it streams
//! (`download`).
//!
//! Not responsible for: what the config means (the caller parses it), pushing (see
//! `push::push_manifest_all`).

use snapshotter::{DiffId, Digest};
use ureq::http::Method;

use super::RegistryOptions;
use super::auth::Access;
use super::client::{Call, Client, Subject};
use super::download::{self, Wanted};
use super::endpoint;
use super::error::{RegistryError, Result};
use super::manifest;
use super::observer::{BlobKind, NoopObserver};
use super::retry::{self, Policy};
use super::transport;
use crate::image::{Descriptor, ImageRef, Manifest, media_type};
use crate::store::Store;

/// Largest artifact config read into memory.
pub const CONFIG_LIMIT: u64 = 64 * 1024 * 1024;

/// An artifact found in a registry, with the session that found it.
pub struct RemoteArtifact {
    client: Client,
    policy: Policy,
    /// The manifest's descriptor (its digest as received).
    pub descriptor: Descriptor,
    pub manifest: Manifest,
    /// The config blob's bytes, verified against `manifest.config`.
    pub config: Vec<u8>,
}

impl std::fmt::Debug for RemoteArtifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteArtifact")
            .field("repository", &self.client.repository())
            .field("descriptor", &self.descriptor)
            .finish_non_exhaustive()
    }
}

impl RemoteArtifact {
    /// Fetch the manifest `reference` names (an image manifest, not an index) and its config.
    pub fn fetch(reference: &ImageRef, opts: &RegistryOptions) -> Result<Self> {
        let policy = Policy::from_env();
        let shown = reference.familiar();
        let client = retry::run(&policy, || Client::connect(reference, Access::Pull, opts))?;
        let fetched = retry::run(&policy, || {
            manifest::fetch(
                &client,
                &reference.manifest_reference(),
                &shown,
                reference.digest(),
            )
        })?;
        if !media_type::is_manifest(&fetched.media_type) {
            return Err(RegistryError::UnsupportedMediaType {
                what: format!("manifest for {shown}"),
                media_type: fetched.media_type,
            });
        }
        let manifest: Manifest = serde_json::from_slice(&fetched.bytes).map_err(|source| {
            RegistryError::InvalidJson {
                what: "manifest",
                reference: shown.clone(),
                source,
            }
        })?;
        let config = retry::run(&policy, || read_small_blob(&client, &manifest.config))?;
        Ok(Self {
            descriptor: fetched.descriptor(),
            client,
            policy,
            manifest,
            config,
        })
    }

    /// The repository the artifact is in (`127.0.0.1:5000/app/cache`).
    pub fn repository(&self) -> &str {
        self.client.repository()
    }

    /// Download the layer `desc` into `store` (nothing when it is there), verifying its digest,
    /// size and, when given, the DiffID of its uncompressed tar.
    pub fn fetch_layer(
        &self,
        store: &Store,
        desc: &Descriptor,
        diff_id: Option<DiffId>,
    ) -> Result<()> {
        let wanted = Wanted {
            desc,
            kind: BlobKind::Layer,
            diff_id,
        };
        download::fetch_blob(&self.client, store, &wanted, &self.policy, &NoopObserver).map(|_| ())
    }
}

/// `GET` a blob of at most [`CONFIG_LIMIT`] bytes into memory and check it against `desc`.
fn read_small_blob(client: &Client, desc: &Descriptor) -> Result<Vec<u8>> {
    let digest = desc.digest;
    let what = format!("blob {digest} of {}", client.repository());
    if desc.size > CONFIG_LIMIT {
        return Err(RegistryError::SizeMismatch {
            what: format!("{what} (the limit)"),
            expected: CONFIG_LIMIT,
            actual: desc.size,
        });
    }
    let url = client.url(
        endpoint::blob_url(client.base(), client.name(), &digest),
        "a blob",
    )?;
    let response = client.send(&Call::new(Method::GET, url.clone()))?;
    if response.status() != 200 {
        return Err(client.status_error(
            &format!("fetching blob {digest}"),
            Subject::Blob(&digest),
            response,
        ));
    }
    let bytes = transport::read_body(response.into_body(), desc.size + 1)
        .map_err(|e| transport::classify(e, &Method::GET, &url))?
        .unwrap_or_default();
    if bytes.len() as u64 != desc.size {
        return Err(RegistryError::SizeMismatch {
            what,
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(&bytes);
    if actual != digest {
        return Err(RegistryError::DigestMismatch {
            what,
            expected: digest,
            actual,
        });
    }
    Ok(bytes)
}
