//! `pull`: registry → local store.
//!
//! Order of work, so that a reference never points at an incomplete image: resolve the manifest
//! (selecting the platform from an index), fetch the config and the layers not already in the
//! store (each streamed into the content store and committed only if its digest and size match
//! the descriptor), store the manifest bytes exactly as received, and only then set the
//! reference. The store's content lease is held throughout, so a concurrent `rmi` cannot delete
//! a blob this pull has found present and is about to reference.
//!
//! Not responsible for: unpacking layers into snapshots (the solver and snapshotter do that),
//! or storing the index of a multi-platform image (only the selected image is kept; its blobs
//! are what the store's garbage collection tracks).

use std::io::{Read, Write};

use ureq::http::Method;

use super::RegistryOptions;
use super::auth::Access;
use super::client::{Call, Client, Subject};
use super::endpoint;
use super::error::{RegistryError, Result};
use super::manifest::{self, Fetched};
use super::observer::{BlobKind, ProgressReader, TransferEvent, TransferObserver};
use super::transport;
use crate::image::{Descriptor, ImageRef, Index, Manifest, Platform, media_type};
use crate::store::{Expected, Store, StoreError, StoredImage};

/// Copy buffer for blob downloads.
const COPY_BUFFER: usize = 256 * 1024;

/// Pull `reference` into `store` and point the reference at it.
///
/// For a tag, the tag is set; for a digest reference, the digest reference (a pinned index
/// digest then names the image selected for `opts.platform`). Blobs already in the store are
/// not downloaded again.
pub fn pull(
    store: &Store,
    reference: &ImageRef,
    opts: &RegistryOptions,
    observer: &dyn TransferObserver,
) -> Result<StoredImage> {
    observer.event(TransferEvent::Resolving {
        reference: reference.clone(),
    });
    let client = Client::connect(reference, Access::Pull, opts)?;
    let shown = reference.familiar();
    let top = manifest::fetch(
        &client,
        &reference.manifest_reference(),
        &shown,
        reference.digest(),
    )?;
    let top_digest = top.digest;
    let image_manifest = if top.is_index() {
        select_platform(&client, &top, &shown, &opts.platform)?
    } else {
        top
    };
    let descriptor = image_manifest.descriptor();
    let parsed: Manifest = serde_json::from_slice(&image_manifest.bytes).map_err(|source| {
        RegistryError::InvalidJson {
            what: "image manifest",
            reference: shown.clone(),
            source,
        }
    })?;
    if !matches!(
        parsed.config.media_type.as_str(),
        media_type::OCI_CONFIG | media_type::DOCKER_CONFIG
    ) {
        return Err(RegistryError::UnsupportedMediaType {
            what: format!("the config of {shown}"),
            media_type: parsed.config.media_type.clone(),
        });
    }
    observer.event(TransferEvent::Resolved {
        reference: reference.clone(),
        digest: top_digest,
        manifest: descriptor.digest,
    });

    let _lease = store.lease().map_err(|source| RegistryError::Store {
        action: "taking the store's content lease".to_owned(),
        source,
    })?;
    fetch_blob(&client, store, &parsed.config, BlobKind::Config, observer)?;
    for layer in &parsed.layers {
        fetch_blob(&client, store, layer, BlobKind::Layer, observer)?;
    }
    put_manifest(store, &image_manifest)?;

    let stored_ref = match reference.digest() {
        Some(d) => reference.with_digest(*d),
        None => reference.clone(),
    };
    store
        .set_ref(&stored_ref, &descriptor)
        .map_err(|source| RegistryError::Store {
            action: format!("setting reference {stored_ref}"),
            source,
        })?;
    store
        .image(&descriptor)
        .map_err(|source| RegistryError::Store {
            action: format!("reading back image {}", descriptor.digest),
            source,
        })
}

/// From an index, fetch the manifest for `platform`, verified against its descriptor.
fn select_platform(
    client: &Client,
    index_doc: &Fetched,
    shown: &str,
    platform: &Platform,
) -> Result<Fetched> {
    let index: Index =
        serde_json::from_slice(&index_doc.bytes).map_err(|source| RegistryError::InvalidJson {
            what: "image index",
            reference: shown.to_owned(),
            source,
        })?;
    let Some(entry) = index.select(platform) else {
        let available = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(Platform::slash_form)
            .collect();
        return Err(RegistryError::PlatformNotFound {
            reference: shown.to_owned(),
            wanted: platform.slash_form(),
            available,
        });
    };
    if !media_type::is_manifest(&entry.media_type) {
        return Err(RegistryError::UnsupportedMediaType {
            what: format!("the {} entry of {shown}", platform.slash_form()),
            media_type: entry.media_type.clone(),
        });
    }
    let entry_shown = format!("{shown}@{}", entry.digest);
    let fetched = manifest::fetch(
        client,
        &entry.digest.to_string(),
        &entry_shown,
        Some(&entry.digest),
    )?;
    if fetched.bytes.len() as u64 != entry.size {
        return Err(RegistryError::SizeMismatch {
            what: format!("manifest {} from {}", entry.digest, client.repository()),
            expected: entry.size,
            actual: fetched.bytes.len() as u64,
        });
    }
    if !media_type::is_manifest(&fetched.media_type) {
        return Err(RegistryError::UnsupportedMediaType {
            what: format!("manifest for {entry_shown}"),
            media_type: fetched.media_type,
        });
    }
    Ok(fetched)
}

/// Download one blob into the store unless it is there already.
fn fetch_blob(
    client: &Client,
    store: &Store,
    desc: &Descriptor,
    kind: BlobKind,
    observer: &dyn TransferObserver,
) -> Result<()> {
    let digest = desc.digest;
    if store.content().contains(&digest) {
        observer.event(TransferEvent::BlobExists { digest, kind });
        return Ok(());
    }
    observer.event(TransferEvent::BlobStarted {
        digest,
        size: desc.size,
        kind,
    });
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
    let what = format!("blob {digest} from {}", client.repository());
    let mut writer = store
        .content()
        .writer()
        .map_err(|source| RegistryError::Store {
            action: format!("starting to store {what}"),
            source,
        })?;
    // One byte more than the descriptor allows is enough to detect an oversized blob without
    // letting a misbehaving registry fill the disk.
    let body = response
        .into_body()
        .into_reader()
        .take(desc.size.saturating_add(1));
    let mut reader = ProgressReader::new(body, observer, digest, desc.size);
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(RegistryError::Receive {
                    host: transport::host_of(&url),
                    what: format!("blob {digest}"),
                    source,
                });
            }
        };
        writer
            .write_all(&buf[..n])
            .map_err(|e| RegistryError::Store {
                action: format!("writing {what}"),
                source: StoreError::Io(e),
            })?;
    }
    match writer.commit(Some(Expected {
        digest,
        size: Some(desc.size),
    })) {
        Ok(_) => {}
        Err(StoreError::DigestMismatch { expected, actual }) => {
            return Err(RegistryError::DigestMismatch {
                what,
                expected,
                actual,
            });
        }
        Err(StoreError::SizeMismatch {
            expected, actual, ..
        }) => {
            return Err(RegistryError::SizeMismatch {
                what,
                expected,
                actual,
            });
        }
        Err(source) => {
            return Err(RegistryError::Store {
                action: format!("storing {what}"),
                source,
            });
        }
    }
    observer.event(TransferEvent::BlobDone { digest, kind });
    Ok(())
}

/// Store the manifest bytes as received (their digest was verified when fetched).
fn put_manifest(store: &Store, fetched: &Fetched) -> Result<()> {
    let action = || format!("storing manifest {}", fetched.digest);
    let mut writer = store
        .content()
        .writer()
        .map_err(|source| RegistryError::Store {
            action: action(),
            source,
        })?;
    writer
        .write_all(&fetched.bytes)
        .map_err(|e| RegistryError::Store {
            action: action(),
            source: StoreError::Io(e),
        })?;
    writer
        .commit(Some(Expected {
            digest: fetched.digest,
            size: Some(fetched.bytes.len() as u64),
        }))
        .map_err(|source| RegistryError::Store {
            action: action(),
            source,
        })?;
    Ok(())
}
