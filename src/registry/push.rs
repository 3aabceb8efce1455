//! `push`: local store → registry.
//!
//! For the config and each layer: `HEAD` the blob and skip it if the registry has it; else start
//! an upload session (`POST /v2/<name>/blobs/uploads/`) and complete it with one monolithic
//! `PUT <location>?digest=<digest>` streamed from the store file with its `Content-Length`.
//! Then `PUT` the manifest bytes exactly as stored, under their media type, at the destination
//! tag (or digest), and check the digest the registry reports. The registry verifies each blob
//! against the digest it is uploaded under.
//!
//! Not responsible for: chunked or resumed uploads, cross-repository mounts and parallel blob
//! uploads (issue [F]; each slots in at `push_blob`).

use std::collections::BTreeSet;
use std::io::Read;

use snapshotter::Digest;
use ureq::http::{self, Method};

use super::RegistryOptions;
use super::auth::Access;
use super::client::{self, Call, Client, RequestBody, Subject};
use super::endpoint;
use super::error::{RegistryError, Result};
use super::observer::{BlobKind, ProgressReader, TransferEvent, TransferObserver};
use crate::image::{Descriptor, ImageRef};
use crate::store::{Store, StoredImage};

/// Push `image` from `store` to `dest` and return the manifest's descriptor.
pub fn push(
    store: &Store,
    image: &StoredImage,
    dest: &ImageRef,
    opts: &RegistryOptions,
    observer: &dyn TransferObserver,
) -> Result<Descriptor> {
    let manifest = &image.manifest_descriptor;
    if let Some(pinned) = dest.digest()
        && *pinned != manifest.digest
    {
        return Err(RegistryError::DestinationDigest {
            destination: dest.familiar(),
            manifest: manifest.digest,
        });
    }
    observer.event(TransferEvent::Resolving {
        reference: dest.clone(),
    });
    let client = Client::connect(dest, Access::Push, opts)?;
    let _lease = store.lease().map_err(|source| RegistryError::Store {
        action: "taking the store's content lease".to_owned(),
        source,
    })?;

    let blobs = std::iter::once((&image.manifest.config, BlobKind::Config))
        .chain(image.manifest.layers.iter().map(|l| (l, BlobKind::Layer)));
    let mut seen = BTreeSet::new();
    for (desc, kind) in blobs {
        if seen.insert(desc.digest) {
            push_blob(&client, store, desc, kind, observer)?;
        }
    }
    push_manifest(&client, store, manifest, dest, observer)?;
    Ok(manifest.clone())
}

fn push_blob(
    client: &Client,
    store: &Store,
    desc: &Descriptor,
    kind: BlobKind,
    observer: &dyn TransferObserver,
) -> Result<()> {
    let digest = desc.digest;
    let blob_url = client.url(
        endpoint::blob_url(client.base(), client.name(), &digest),
        "a blob",
    )?;
    let head = client.send(&Call::new(Method::HEAD, blob_url))?;
    match head.status().as_u16() {
        200 => {
            observer.event(TransferEvent::BlobExists { digest, kind });
            return Ok(());
        }
        404 => {}
        _ => {
            return Err(client.status_error(
                &format!("checking for blob {digest}"),
                Subject::Other,
                head,
            ));
        }
    }

    let size = store
        .content()
        .size(&digest)
        .map_err(|source| RegistryError::Store {
            action: format!("reading blob {digest} to push it"),
            source,
        })?;
    if size != desc.size {
        return Err(RegistryError::SizeMismatch {
            what: format!("blob {digest} in the local store"),
            expected: desc.size,
            actual: size,
        });
    }
    observer.event(TransferEvent::BlobStarted { digest, size, kind });

    let session = start_upload(client, &digest)?;
    let put_url = endpoint::upload_complete_url(&session, &digest);
    let open = || -> Result<Box<dyn Read + '_>> {
        let file = store
            .content()
            .open_blob(&digest)
            .map_err(|source| RegistryError::Store {
                action: format!("opening blob {digest} to push it"),
                source,
            })?;
        Ok(Box::new(ProgressReader::new(file, observer, digest, size)))
    };
    let call = Call::new(Method::PUT, put_url)
        .header("content-type", "application/octet-stream")
        .body(RequestBody::Stream { size, open: &open });
    let response = client.send(&call)?;
    if !response.status().is_success() {
        return Err(client.status_error(
            &format!("uploading blob {digest}"),
            Subject::Other,
            response,
        ));
    }
    check_reported_digest(&response, &digest, || {
        format!("blob {digest} uploaded to {}", client.repository())
    })?;
    client::drain(response);
    observer.event(TransferEvent::BlobDone { digest, kind });
    Ok(())
}

/// `POST /v2/<name>/blobs/uploads/` → the session URL from `Location`.
fn start_upload(client: &Client, digest: &Digest) -> Result<url::Url> {
    let url = client.url(
        endpoint::upload_start_url(client.base(), client.name()),
        "a blob upload",
    )?;
    let response = client.send(&Call::new(Method::POST, url.clone()))?;
    let operation = format!("starting the upload of blob {digest}");
    if response.status() != http::StatusCode::ACCEPTED {
        return Err(client.status_error(&operation, Subject::Other, response));
    }
    let invalid = |detail: String| RegistryError::InvalidResponse {
        host: client.host().to_owned(),
        operation: operation.clone(),
        detail,
    };
    let location = client::header(&response, "location")
        .map(str::to_owned)
        .ok_or_else(|| invalid("no Location header".to_owned()))?;
    let session = endpoint::resolve_location(&url, &location)
        .map_err(|e| invalid(format!("Location `{location}` is not a valid URL: {e}")))?;
    client::drain(response);
    Ok(session)
}

fn push_manifest(
    client: &Client,
    store: &Store,
    manifest: &Descriptor,
    dest: &ImageRef,
    observer: &dyn TransferObserver,
) -> Result<()> {
    let digest = manifest.digest;
    let bytes = store
        .content()
        .read(&digest)
        .map_err(|source| RegistryError::Store {
            action: format!("reading manifest {digest} to push it"),
            source,
        })?;
    if bytes.len() as u64 != manifest.size {
        return Err(RegistryError::SizeMismatch {
            what: format!("manifest {digest} in the local store"),
            expected: manifest.size,
            actual: bytes.len() as u64,
        });
    }
    let reference = dest.manifest_reference();
    let url = client.url(
        endpoint::manifest_url(client.base(), client.name(), &reference),
        "a manifest",
    )?;
    let call = Call::new(Method::PUT, url)
        .header("content-type", manifest.media_type.clone())
        .body(RequestBody::Bytes(&bytes));
    let response = client.send(&call)?;
    let shown = dest.familiar();
    if !response.status().is_success() {
        return Err(client.status_error(
            &format!("pushing manifest {digest} to {shown}"),
            Subject::Other,
            response,
        ));
    }
    check_reported_digest(&response, &digest, || format!("manifest pushed to {shown}"))?;
    client::drain(response);
    observer.event(TransferEvent::ManifestPushed {
        reference: dest.clone(),
        digest,
        size: manifest.size,
    });
    Ok(())
}

/// A registry that reports a `Docker-Content-Digest` must report the digest that was sent. An
/// unparsable or non-sha256 header says nothing and is ignored.
fn check_reported_digest(
    response: &http::Response<ureq::Body>,
    sent: &Digest,
    what: impl Fn() -> String,
) -> Result<()> {
    match client::header(response, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok()) {
        Some(reported) if reported != *sent => Err(RegistryError::DigestMismatch {
            what: what(),
            expected: *sent,
            actual: reported,
        }),
        _ => Ok(()),
    }
}
