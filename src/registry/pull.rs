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
//! Unpacking overlaps with the downloads: [`pull_unpacking`] hands each layer to the caller's
//! unpack function (the CLI applies it into a snapshot) as soon as it and every layer below it
//! are stored, on a thread of its own, while the layers above still download. It says which
//! layers this pull verified against their DiffIDs itself, so that their apply need not hash
//! them again. The reference is set only after every layer was stored and unpacked.
//!
//! Not responsible for: how a layer is unpacked (the solver and snapshotter do that).
//! The index of a multi-platform image is kept as a blob only to resolve its digest later; the
//! reference points at the selected image, whose blobs are what garbage collection tracks.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use snapshotter::{DiffId, Digest};

use super::RegistryOptions;
use super::auth::Access;
use super::client::Client;
use super::download::{self, Fetched as BlobFetched, Wanted};
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
    pull_unpacking(store, reference, opts, observer, &|_| {
        Ok::<_, RegistryError>(())
    })
}

/// A layer handed to [`pull_unpacking`]'s unpack function: it and every layer below it are in
/// the store.
#[derive(Debug, Clone, Copy)]
pub struct ReadyLayer<'a> {
    /// The image's layers up to and including this one, bottom first.
    pub layers: &'a [Descriptor],
    /// Their DiffIDs, from the image config.
    pub diff_ids: &'a [DiffId],
    /// For each of `layers`: whether this pull downloaded its blob and verified both its
    /// digest and its DiffID (`diff_ids[i]`) on the bytes now stored. A blob that was already
    /// in the store is `false`: it was verified for some image, not against this config.
    pub verified: &'a [bool],
}

/// [`pull`], calling `unpack` for each layer in stack order as soon as the layer and every layer
/// below it are stored (on a thread of its own, overlapping the downloads of the layers above).
/// The reference is set only after every `unpack` succeeded; the first failure of a download or
/// of `unpack` stops the downloads not yet started and is returned once the running ones end.
/// An image whose config does not list one DiffID per layer is handed over in one call, with
/// the DiffIDs the config lists, after its downloads (nothing to pipeline against).
pub fn pull_unpacking<E>(
    store: &Store,
    reference: &ImageRef,
    opts: &RegistryOptions,
    observer: &dyn TransferObserver,
    unpack: &(dyn Fn(ReadyLayer<'_>) -> std::result::Result<(), E> + Sync),
) -> std::result::Result<StoredImage, E>
where
    E: From<RegistryError> + Send,
{
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
        let layers = &image.manifest.layers;
        let diff_ids = &image.config.rootfs.diff_ids;
        let verified = vec![false; layers.len()];
        if layers.len() == diff_ids.len() {
            for top in 1..=layers.len() {
                unpack(ReadyLayer {
                    layers: &layers[..top],
                    diff_ids: &diff_ids[..top],
                    verified: &verified[..top],
                })?;
            }
        } else {
            unpack(ReadyLayer {
                layers,
                diff_ids,
                verified: &verified,
            })?;
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
            Err(e) if i + 1 == sources.len() => return Err(e.into()),
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
        }
        .into());
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
    let (diff_ids, listed) = diff_ids(store, &parsed)?;
    let mut seen = BTreeSet::new();
    let layers: Vec<Wanted<'_>> = parsed
        .layers
        .iter()
        .zip(diff_ids.iter().copied())
        .filter(|(layer, _)| seen.insert(layer.digest))
        .map(|(desc, diff_id)| Wanted {
            desc,
            kind: BlobKind::Layer,
            diff_id,
        })
        .collect();
    match diff_ids.iter().copied().collect::<Option<Vec<DiffId>>>() {
        Some(diff_ids) => {
            let fetch = Fetch {
                client: &client,
                store,
                policy: &policy,
                observer,
            };
            fetch_and_unpack(&fetch, &layers, &parsed.layers, &diff_ids, unpack)?;
        }
        None => {
            fetch_all(&client, store, &layers, &policy, observer)?;
            let verified = vec![false; parsed.layers.len()];
            unpack(ReadyLayer {
                layers: &parsed.layers,
                diff_ids: &listed,
                verified: &verified,
            })?;
        }
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
    Ok(store
        .image(&descriptor)
        .map_err(|source| RegistryError::Store {
            action: format!("reading back image {}", descriptor.digest),
            source,
        })?)
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
/// one per layer (nothing to verify against). Also what the config lists, as it lists it.
fn diff_ids(store: &Store, manifest: &Manifest) -> Result<(Vec<Option<DiffId>>, Vec<DiffId>)> {
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
        Ok((listed.iter().copied().map(Some).collect(), listed))
    } else {
        Ok((vec![None; manifest.layers.len()], listed))
    }
}

/// What every download of one pull shares.
struct Fetch<'a> {
    client: &'a Client,
    store: &'a Store,
    policy: &'a Policy,
    observer: &'a dyn TransferObserver,
}

/// Which layer blobs of a pull are stored, and how: by digest, the DiffID the download verified
/// (`Some(None)`: stored, not verified by this pull). `stopped` when a download failed.
#[derive(Default)]
struct Stored {
    blobs: BTreeMap<Digest, Option<DiffId>>,
    stopped: bool,
}

/// Download the unique `blobs` of the image's `layers` (see [`fetch_all`]) while a thread of its
/// own hands each layer to `unpack` once it and the layers below it are stored.
fn fetch_and_unpack<E>(
    fetch: &Fetch<'_>,
    blobs: &[Wanted<'_>],
    layers: &[Descriptor],
    diff_ids: &[DiffId],
    unpack: &(dyn Fn(ReadyLayer<'_>) -> std::result::Result<(), E> + Sync),
) -> std::result::Result<(), E>
where
    E: From<RegistryError> + Send,
{
    let stored = Mutex::new(Stored::default());
    let changed = Condvar::new();
    let stop = AtomicBool::new(false);
    let lock = || stored.lock().unwrap_or_else(PoisonError::into_inner);
    let (downloads, unpacked) = std::thread::scope(|scope| {
        let unpacker = scope.spawn(|| {
            let mut verified = Vec::with_capacity(layers.len());
            for (i, layer) in layers.iter().enumerate() {
                let mut state = lock();
                let by = loop {
                    if let Some(by) = state.blobs.get(&layer.digest) {
                        break *by;
                    }
                    if state.stopped {
                        return Ok(());
                    }
                    state = changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                };
                drop(state);
                verified.push(by == Some(diff_ids[i]));
                let top = i + 1;
                let result = unpack(ReadyLayer {
                    layers: &layers[..top],
                    diff_ids: &diff_ids[..top],
                    verified: &verified,
                });
                if result.is_err() {
                    stop.store(true, Ordering::SeqCst);
                    return result;
                }
            }
            Ok(())
        });
        let workers = parallel::from_env("KILN_MAX_CONCURRENT_DOWNLOADS", PARALLEL_DOWNLOADS);
        let downloads = parallel::for_each_until(blobs, workers, &stop, |wanted| {
            let fetched = download::fetch_blob(
                fetch.client,
                fetch.store,
                wanted,
                fetch.policy,
                fetch.observer,
            );
            let mut state = lock();
            match &fetched {
                Ok(BlobFetched::Present) => {
                    state.blobs.insert(wanted.desc.digest, None);
                }
                Ok(BlobFetched::Downloaded { diff_id }) => {
                    state.blobs.insert(wanted.desc.digest, *diff_id);
                }
                Err(_) => state.stopped = true,
            }
            changed.notify_all();
            fetched.map(drop)
        });
        // Also when the caller's stop ended the downloads early: the unpacker must not wait for
        // blobs that will not come.
        lock().stopped = true;
        changed.notify_all();
        let unpacked = unpacker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (downloads, unpacked)
    });
    // An unpack failure is what stopped the downloads, unless one failed on its own first.
    match (downloads, unpacked) {
        (Err(e), _) => Err(e.into()),
        (Ok(()), unpacked) => unpacked,
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
        download::fetch_blob(client, store, wanted, policy, observer).map(drop)
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
