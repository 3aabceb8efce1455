//! `pull`: registry → local store.
//!
//! Order of work, so that a reference never points at an incomplete image: resolve the manifest
//! (selecting the platform from an index), fetch the config, then the layers not already in the
//! store, several at a time (each streamed into the content store, resumed when its connection
//! breaks, and committed only if its digest, size and DiffID match; see `download`), store the
//! manifest bytes exactly as received, and only then set the reference. The store's content
//! lease is held throughout, so a concurrent `rmi` cannot delete a blob this pull has found
//! present and is about to reference.
//!
//! A reference pinned by digest whose image is already complete in the store is resolved
//! without contacting the registry: by its reference, by the manifest blob of that digest, or
//! (for an index digest) by the index blob kept from an earlier pull and the manifest it selects
//! for the platform. The registry is contacted with retries (see `retry`).
//!
//! Not responsible for: unpacking layers into snapshots (the solver and snapshotter do that).
//! The index of a multi-platform image is kept as a blob only to resolve its digest later; the
//! reference points at the selected image, whose blobs are what garbage collection tracks.

use std::collections::BTreeSet;
use std::io::Write;

use snapshotter::Digest;

use super::RegistryOptions;
use super::auth::Access;
use super::client::Client;
use super::download::{self, Wanted};
use super::error::{RegistryError, Result};
use super::manifest::{self, Fetched};
use super::observer::{BlobKind, TransferEvent, TransferObserver};
use super::parallel;
use super::retry::{self, Policy};
use crate::image::{Descriptor, ImageConfig, ImageRef, Index, Manifest, Platform, media_type};
use crate::store::{Expected, Store, StoreError, StoredImage};

/// Blobs downloaded at the same time by one pull (Docker's default), unless
/// `KILN_MAX_CONCURRENT_DOWNLOADS` says otherwise.
const PARALLEL_DOWNLOADS: usize = 3;

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
    if let Some(image) = local_pinned(store, reference, &opts.platform)? {
        observer.event(TransferEvent::Resolved {
            reference: reference.clone(),
            digest: *reference
                .digest()
                .expect("only pinned references resolve locally"),
            manifest: image.manifest_descriptor.digest,
        });
        let blobs = std::iter::once((&image.manifest.config, BlobKind::Config))
            .chain(image.manifest.layers.iter().map(|l| (l, BlobKind::Layer)));
        let mut seen = BTreeSet::new();
        for (desc, kind) in blobs {
            if seen.insert(desc.digest) {
                observer.event(TransferEvent::BlobExists {
                    digest: desc.digest,
                    kind,
                });
            }
        }
        return Ok(image);
    }
    let policy = Policy::from_env();
    let shown = reference.familiar();
    // The configured mirrors first (`config`), then the registry itself: the first that serves
    // the manifest serves the blobs too. Names in the store stay the reference's.
    let pin = match reference.digest() {
        Some(digest) => format!("@{digest}"),
        None => format!(":{}", reference.manifest_reference()),
    };
    let mut sources: Vec<ImageRef> = super::config::Registries::load()?
        .mirrors_of(&format!("{}/{}", reference.domain(), reference.path()))
        .iter()
        .filter_map(|mirror| ImageRef::parse(&format!("{mirror}{pin}")).ok())
        .collect();
    sources.push(reference.clone());
    let mut reached = None;
    for (i, source) in sources.iter().enumerate() {
        let attempt = retry::run(&policy, || Client::connect(source, Access::Pull, opts)).and_then(
            |client| {
                let top = retry::run(&policy, || {
                    manifest::fetch(
                        &client,
                        &source.manifest_reference(),
                        &shown,
                        reference.digest(),
                    )
                })?;
                Ok((client, top))
            },
        );
        match attempt {
            Ok(found) => {
                reached = Some(found);
                break;
            }
            // A mirror that fails is passed over; the registry's own failure is the answer.
            Err(e) if i + 1 == sources.len() => return Err(e),
            Err(_) => {}
        }
    }
    let (client, top) = reached.expect("the last source returns its error");
    let top_digest = top.digest;
    let image_manifest = if top.is_index() {
        let selected = retry::run(&policy, || {
            select_platform(&client, &top, &shown, &opts.platform)
        })?;
        // Kept so that this index digest resolves locally next time (see `local_pinned`).
        put_manifest(store, &top)?;
        selected
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
    let config = Wanted {
        desc: &parsed.config,
        kind: BlobKind::Config,
        diff_id: None,
    };
    download::fetch_blob(&client, store, &config, &policy, observer)?;
    let diff_ids = diff_ids(store, &parsed)?;
    let mut seen = BTreeSet::new();
    let layers: Vec<Wanted<'_>> = parsed
        .layers
        .iter()
        .zip(diff_ids)
        .filter(|(layer, _)| seen.insert(layer.digest))
        .map(|(desc, diff_id)| Wanted {
            desc,
            kind: BlobKind::Layer,
            diff_id,
        })
        .collect();
    fetch_all(&client, store, &layers, &policy, observer)?;
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

/// The DiffID of each layer, from the (stored) config; `None`s when the config does not list
/// one per layer (nothing to verify against).
fn diff_ids(store: &Store, manifest: &Manifest) -> Result<Vec<Option<snapshotter::DiffId>>> {
    let digest = manifest.config.digest;
    let bytes = store
        .content()
        .read(&digest)
        .map_err(|source| RegistryError::Store {
            action: format!("reading config {digest}"),
            source,
        })?;
    let listed = serde_json::from_slice::<ImageConfig>(&bytes)
        .map(|c| c.rootfs.diff_ids)
        .unwrap_or_default();
    if listed.len() == manifest.layers.len() {
        Ok(listed.into_iter().map(Some).collect())
    } else {
        Ok(vec![None; manifest.layers.len()])
    }
}

/// Download `blobs`, `KILN_MAX_CONCURRENT_DOWNLOADS` (else [`PARALLEL_DOWNLOADS`]) at a time.
/// The first failure stops blobs not yet started and is returned once the running ones end.
fn fetch_all(
    client: &Client,
    store: &Store,
    blobs: &[Wanted<'_>],
    policy: &Policy,
    observer: &dyn TransferObserver,
) -> Result<()> {
    let workers = parallel::from_env("KILN_MAX_CONCURRENT_DOWNLOADS", PARALLEL_DOWNLOADS);
    parallel::for_each(blobs, workers, |wanted| {
        download::fetch_blob(client, store, wanted, policy, observer)
    })
}

/// A reference pinned by digest whose image is complete in the store, found without the
/// registry: by the reference itself, else by the stored manifest or index blob of that digest
/// (an index selects the manifest for `platform`). The reference is then set, as a pull would.
fn local_pinned(
    store: &Store,
    reference: &ImageRef,
    platform: &Platform,
) -> Result<Option<StoredImage>> {
    let Some(pinned) = reference.digest() else {
        return Ok(None);
    };
    let store_error = |action: String| move |source| RegistryError::Store { action, source };
    if let Some(image) = store
        .resolve(reference)
        .map_err(store_error(format!("resolving {reference}")))?
        && complete(store, &image)
    {
        return Ok(Some(image));
    }
    let Some(descriptor) = local_manifest(store, pinned, platform) else {
        return Ok(None);
    };
    let Ok(image) = store.image(&descriptor) else {
        return Ok(None);
    };
    if !complete(store, &image) {
        return Ok(None);
    }
    store
        .set_ref(reference, &descriptor)
        .map_err(store_error(format!("setting reference {reference}")))?;
    Ok(Some(image))
}

/// The descriptor of the image manifest `digest` names in the store: itself, or the entry an
/// index of that digest selects for `platform` (when that manifest is stored too).
fn local_manifest(store: &Store, digest: &Digest, platform: &Platform) -> Option<Descriptor> {
    let bytes = store.content().read(digest).ok()?;
    let media_type = manifest::detect_media_type(&bytes, None, &digest.to_string()).ok()?;
    if media_type::is_manifest(&media_type) {
        return Some(Descriptor::new(media_type, *digest, bytes.len() as u64));
    }
    if !media_type::is_index(&media_type) {
        return None;
    }
    let index: Index = serde_json::from_slice(&bytes).ok()?;
    let entry = index.select(platform)?;
    let entry_bytes = store.content().read(&entry.digest).ok()?;
    (media_type::is_manifest(&entry.media_type) && entry_bytes.len() as u64 == entry.size)
        .then(|| Descriptor::new(entry.media_type.clone(), entry.digest, entry.size))
}

/// Whether every blob of the image is in the store.
fn complete(store: &Store, image: &StoredImage) -> bool {
    std::iter::once(&image.manifest.config)
        .chain(&image.manifest.layers)
        .all(|d| store.content().contains(&d.digest))
}
