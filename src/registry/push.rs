//! `push`: local store → registry.
//!
//! For each destination repository: the config and the layers are made present in the registry
//! a bounded number at a time (see `upload`: skipped when present, mounted from another
//! repository of the same registry that an image in the store came from, else uploaded
//! monolithically or in chunks, with retries and resumption), and only then the manifest is
//! `PUT`, exactly as stored and under its media type, at each destination tag (or digest) of
//! that repository, checking the digest the registry reports. Several tags of one repository
//! share the blob uploads; the registry verifies each blob against the digest it is uploaded
//! under.
//!
//! Not responsible for: the blobs' bytes (streamed from the store as they are) or building
//! manifests for the destination (the stored manifest is pushed unchanged).

use std::collections::{BTreeMap, BTreeSet};

use snapshotter::Digest;
use ureq::http::Method;

use super::RegistryOptions;
use super::auth::Access;
use super::client::{self, Call, Client, RequestBody, Subject};
use super::endpoint;
use super::error::{RegistryError, Result};
use super::observer::{BlobKind, TransferEvent, TransferObserver};
use super::parallel;
use super::retry::{self, Policy};
use super::upload::{self, Mode, Upload};
use crate::image::{Descriptor, ImageRef, Manifest};
use crate::store::{Store, StoredImage};

/// Blobs uploaded at the same time (Docker's default), unless `KILN_MAX_CONCURRENT_UPLOADS`
/// says otherwise.
const PARALLEL_UPLOADS: usize = 5;

/// Push `image` from `store` to `dest` and return the manifest's descriptor.
pub fn push(
    store: &Store,
    image: &StoredImage,
    dest: &ImageRef,
    opts: &RegistryOptions,
    observer: &dyn TransferObserver,
) -> Result<Descriptor> {
    push_all(store, image, std::slice::from_ref(dest), opts, observer)
}

/// Push `image` to every reference of `dests` (several tags, possibly of several
/// repositories): the blobs once per repository, then the manifest at each reference, in the
/// order given. Returns the manifest's descriptor.
pub fn push_all(
    store: &Store,
    image: &StoredImage,
    dests: &[ImageRef],
    opts: &RegistryOptions,
    observer: &dyn TransferObserver,
) -> Result<Descriptor> {
    push_manifest_all(
        store,
        &image.manifest_descriptor,
        &image.manifest,
        dests,
        opts,
        observer,
    )
}

/// Push the manifest `manifest` (stored in `store` under the descriptor `manifest_desc`) with
/// its config and layers to every reference of `dests`: [`push_all`] for any manifest, image
/// or not (the build cache's, see `cache::share`).
pub fn push_manifest_all(
    store: &Store,
    manifest_desc: &Descriptor,
    parsed: &Manifest,
    dests: &[ImageRef],
    opts: &RegistryOptions,
    observer: &dyn TransferObserver,
) -> Result<Descriptor> {
    let manifest = manifest_desc;
    for dest in dests {
        if let Some(pinned) = dest.digest()
            && *pinned != manifest.digest
        {
            return Err(RegistryError::DestinationDigest {
                destination: dest.familiar(),
                manifest: manifest.digest,
            });
        }
    }
    let _lease = store.lease().map_err(|source| RegistryError::Store {
        action: "taking the store's content lease".to_owned(),
        source,
    })?;
    let policy = Policy::from_env();
    let mode = Mode::from_env();
    // Repositories in the order they first appear, each with its references.
    let mut repositories: Vec<(String, Vec<&ImageRef>)> = Vec::new();
    for dest in dests {
        let key = dest.repository();
        match repositories.iter_mut().find(|(k, _)| *k == key) {
            Some((_, refs)) => refs.push(dest),
            None => repositories.push((key, vec![dest])),
        }
    }
    for (_, refs) in &repositories {
        let first = refs[0];
        observer.event(TransferEvent::Resolving {
            reference: first.clone(),
        });
        let client = retry::run(&policy, || Client::connect(first, Access::Push, opts))?;
        let sources = mount_sources(store, first);
        // Tokens must also allow pulling from the repositories blobs are mounted from.
        let from: BTreeSet<&String> = sources.values().flatten().collect();
        for repository in from {
            client.add_mount_source(repository);
        }
        let blobs = std::iter::once((&parsed.config, BlobKind::Config))
            .chain(parsed.layers.iter().map(|l| (l, BlobKind::Layer)));
        let mut seen = BTreeSet::new();
        let uploads: Vec<Upload<'_>> = blobs
            .filter(|(desc, _)| seen.insert(desc.digest))
            .map(|(desc, kind)| Upload {
                client: &client,
                store,
                desc,
                kind,
                mount_from: sources.get(&desc.digest).map_or(&[][..], Vec::as_slice),
                mode,
                policy: &policy,
                observer,
            })
            .collect();
        upload_all(&uploads)?;
        for dest in refs {
            push_manifest(&client, store, manifest, dest, &policy, observer)?;
        }
    }
    Ok(manifest.clone())
}

/// For each blob, the other repositories of `dest`'s registry that images in the store came
/// from and that hold it (by the store's references), as mount sources.
fn mount_sources(store: &Store, dest: &ImageRef) -> BTreeMap<Digest, Vec<String>> {
    let mut sources: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    let Ok(refs) = store.refs() else {
        return sources;
    };
    let mut seen = BTreeSet::new();
    for (reference, target) in &refs {
        if reference.domain() != dest.domain() || reference.path() == dest.path() {
            continue;
        }
        if !seen.insert((reference.path().to_owned(), target.manifest.digest)) {
            continue;
        }
        let Ok(image) = store.image(&target.manifest) else {
            continue;
        };
        for desc in std::iter::once(&image.manifest.config).chain(&image.manifest.layers) {
            let repos = sources.entry(desc.digest).or_default();
            if !repos.iter().any(|r| r == reference.path()) {
                repos.push(reference.path().to_owned());
            }
        }
    }
    sources
}

/// Run the uploads, `KILN_MAX_CONCURRENT_UPLOADS` (else [`PARALLEL_UPLOADS`]) at a time; the
/// first failure stops uploads not yet started and is returned once the running ones end.
fn upload_all(uploads: &[Upload<'_>]) -> Result<()> {
    let workers = parallel::from_env("KILN_MAX_CONCURRENT_UPLOADS", PARALLEL_UPLOADS);
    parallel::for_each(uploads, workers, Upload::run)
}

fn push_manifest(
    client: &Client,
    store: &Store,
    manifest: &Descriptor,
    dest: &ImageRef,
    policy: &Policy,
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
    // Putting the same bytes again is harmless: the manifest PUT is retried like a read.
    let response = retry::send(client, &call, policy)?;
    let shown = dest.familiar();
    if !response.status().is_success() {
        return Err(client.status_error(
            &format!("pushing manifest {digest} to {shown}"),
            Subject::Other,
            response,
        ));
    }
    upload::check_reported_digest(&response, &digest, || format!("manifest pushed to {shown}"))?;
    client::drain(response);
    observer.event(TransferEvent::ManifestPushed {
        reference: dest.clone(),
        digest,
        size: manifest.size,
    });
    Ok(())
}
