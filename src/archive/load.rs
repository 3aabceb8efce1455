//! Loading an archive into the store (`kiln load`).
//!
//! Order of work, so that the store never holds half an archive: stream the whole tar into
//! staged blobs (digest, and DiffID of compressed files, computed on the way; files named by
//! digest checked at once, see `scan`), then read the archive's metadata and check every image
//! against what was staged: each referenced file is present, sizes match descriptors, each
//! layer's DiffID matches the config's `rootfs.diff_ids`. Only then are the blobs published
//! (under the store's content lease) and, last, the names set. An error at any step drops the
//! staged files: no blob, no tag.
//!
//! Formats (`docker::detect`): with `manifest.json`, Docker's format — its entries give each
//! image's config, layers and names; when the archive also carries an OCI layout whose manifest
//! matches an entry (kiln's and Docker 25+'s archives), that manifest is kept byte for byte (so
//! its digest survives a save/load round trip), else a Docker schema 2 manifest is made for the
//! layers as they are in the archive (uncompressed layers stay uncompressed, as Docker keeps
//! them). Without `manifest.json`, an OCI layout: `index.json` entries (a nested index is
//! resolved to the requested platform) named by their `io.containerd.image.name` annotation, or
//! by `org.opencontainers.image.ref.name` when that is a full reference (podman, skopeo).
//!
//! Images without any name (`docker save IMAGE_ID`, `skopeo copy` to an archive without a
//! reference, an `index.json` without name annotations) are stored as untagged images, as
//! `docker load` keeps them (`<none>` in `kiln images`, addressed by ID) — unless the store
//! already holds an image with that ID, which then stands for it (its blobs are not added).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use snapshotter::{DiffId, Digest};

use super::docker::{self, Detected};
use super::scan::{self, Compression, Scanned};
use super::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, ArchiveError, ArchiveFormat};
use crate::image::{
    self, Descriptor, ImageConfig, ImageRef, Index, Manifest, Platform, media_type,
};
use crate::store::Store;

/// Largest `manifest.json`, `index.json`, manifest or config read into memory.
const JSON_LIMIT: u64 = 64 * 1024 * 1024;

/// One image stored by a load.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The manifest the names point at.
    pub manifest: Descriptor,
    /// The image ID (config digest).
    pub id: Digest,
    /// The names set, in archive order; none for an image the archive does not name (kept as
    /// an untagged image).
    pub names: Vec<ImageRef>,
    /// Names that pointed at another image before the load, with that image's ID.
    pub replaced: Vec<(ImageRef, Digest)>,
}

/// What a load did.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub format: ArchiveFormat,
    /// The images, in archive order (an image the archive lists twice, once).
    pub images: Vec<LoadedImage>,
}

/// Where an image's manifest comes from.
#[derive(Debug)]
enum ManifestSource {
    /// A file of the archive (kept byte for byte).
    Staged(usize),
    /// Made by the load (a docker-archive without a matching OCI manifest).
    Made(Vec<u8>),
}

/// One image of the archive, checked and ready to publish.
#[derive(Debug)]
struct Plan {
    descriptor: Descriptor,
    manifest: ManifestSource,
    id: Digest,
    config: usize,
    layers: Vec<usize>,
    names: Vec<ImageRef>,
}

/// Load the (possibly compressed) archive `input` into `store`. A nested index in an OCI
/// archive is resolved to `platform`.
pub fn load(store: &Store, input: impl Read, platform: &Platform) -> Result<Loaded, ArchiveError> {
    let mut scanned = scan::scan(store, input)?;
    let (format, plans) = match docker::detect(|p| scanned.has(p)) {
        Detected::Docker => (ArchiveFormat::Docker, plan_docker(&scanned, platform)?),
        Detected::Oci => (ArchiveFormat::Oci, plan_oci(&scanned, platform)?),
        Detected::LegacyV1 => return Err(ArchiveError::LegacyV1),
        Detected::Unknown => return Err(ArchiveError::NotAnImageArchive),
    };
    if plans.is_empty() {
        return Err(ArchiveError::Empty);
    }
    // An image listed without a name and again with one (or twice without) is loaded once.
    let named_ids: BTreeSet<Digest> = plans
        .iter()
        .filter(|p| !p.names.is_empty())
        .map(|p| p.id)
        .collect();
    let mut unnamed_ids = BTreeSet::new();
    let kept: Vec<Plan> = plans
        .into_iter()
        .filter(|p| !p.names.is_empty() || (!named_ids.contains(&p.id) && unnamed_ids.insert(p.id)))
        .collect();
    let images = commit(store, &mut scanned, kept)?;
    Ok(Loaded { format, images })
}

/// Publish the blobs of `plans`, then set their names, or keep them as untagged images.
fn commit(
    store: &Store,
    scanned: &mut Scanned,
    plans: Vec<Plan>,
) -> Result<Vec<LoadedImage>, ArchiveError> {
    let _lease = store.lease()?;
    // An unnamed image the store already has (by ID) adds nothing: that one stands for it.
    let mut existing: Vec<Option<Descriptor>> = Vec::with_capacity(plans.len());
    for plan in &plans {
        existing.push(match plan.names.is_empty() {
            true => store.manifest_with_id(&plan.id)?,
            false => None,
        });
    }
    for (plan, existing) in plans.iter().zip(&existing) {
        if existing.is_some() {
            continue;
        }
        for &i in std::iter::once(&plan.config).chain(&plan.layers) {
            if let Some(blob) = scanned.files[i].blob.take() {
                blob.publish()?;
            }
        }
        match &plan.manifest {
            ManifestSource::Staged(i) => {
                if let Some(blob) = scanned.files[*i].blob.take() {
                    blob.publish()?;
                }
            }
            ManifestSource::Made(bytes) => {
                store.content().put(bytes)?;
            }
        }
    }
    let before = store.refs()?;
    let mut loaded = Vec::with_capacity(plans.len());
    for (plan, existing) in plans.into_iter().zip(existing) {
        if plan.names.is_empty() {
            let manifest = match existing {
                Some(m) => m,
                None => store.keep_untagged(&plan.descriptor)?,
            };
            loaded.push(LoadedImage {
                manifest,
                id: plan.id,
                names: Vec::new(),
                replaced: Vec::new(),
            });
            continue;
        }
        let mut replaced = Vec::new();
        for name in &plan.names {
            if let Some(old) = before.get(name)
                && old.manifest.digest != plan.descriptor.digest
                && let Ok(old_image) = store.image(&old.manifest)
                && old_image.id() != plan.id
            {
                replaced.push((name.clone(), old_image.id()));
            }
            store.set_ref(name, &plan.descriptor)?;
        }
        loaded.push(LoadedImage {
            manifest: plan.descriptor,
            id: plan.id,
            names: plan.names,
            replaced,
        });
    }
    Ok(loaded)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &str,
    what: &'static str,
) -> Result<T, ArchiveError> {
    serde_json::from_slice(bytes).map_err(|source| ArchiveError::BadJson {
        path: path.to_owned(),
        what,
        source,
    })
}

fn parse_name(name: &str) -> Result<ImageRef, ArchiveError> {
    ImageRef::parse(name).map_err(|e| ArchiveError::BadName {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Plans for a docker-archive (`manifest.json`).
fn plan_docker(scanned: &Scanned, platform: &Platform) -> Result<Vec<Plan>, ArchiveError> {
    let mi = scanned.at("manifest.json").expect("detected by it");
    let bytes = scanned.read_small(mi, "manifest.json", JSON_LIMIT)?;
    let entries = docker::parse_manifest(&bytes).map_err(|source| ArchiveError::BadJson {
        path: "manifest.json".to_owned(),
        what: "a docker-archive manifest",
        source,
    })?;
    // OCI manifests the archive carries beside manifest.json, to keep their digests.
    let oci = if scanned.has("index.json") {
        plan_oci(scanned, platform).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut plans = Vec::with_capacity(entries.len());
    for entry in entries {
        let names = entry
            .repo_tags
            .iter()
            .flatten()
            .map(|n| parse_name(n))
            .collect::<Result<Vec<_>, _>>()?;
        let missing = |path: &str| ArchiveError::Missing {
            path: path.to_owned(),
            referrer: "manifest.json".to_owned(),
        };
        let config = scanned
            .at(&entry.config)
            .ok_or_else(|| missing(&entry.config))?;
        let id = scanned.files[config].digest;
        let shown = names
            .first()
            .map_or_else(|| id.to_string(), ImageRef::familiar);
        let parsed = read_config(scanned, config)?;
        let layers = entry
            .layers
            .iter()
            .map(|p| scanned.at(p).ok_or_else(|| missing(p)))
            .collect::<Result<Vec<_>, _>>()?;
        check_layers(scanned, &shown, &layers, &parsed.rootfs.diff_ids)?;

        let digests: Vec<Digest> = layers.iter().map(|&i| scanned.files[i].digest).collect();
        let same = oci.iter().find(|p| {
            p.id == id
                && p.layers.len() == digests.len()
                && p.layers
                    .iter()
                    .zip(&digests)
                    .all(|(&i, d)| scanned.files[i].digest == *d)
        });
        let (descriptor, manifest) = match same {
            Some(p) => (
                p.descriptor.clone(),
                match p.manifest {
                    ManifestSource::Staged(i) => ManifestSource::Staged(i),
                    ManifestSource::Made(ref b) => ManifestSource::Made(b.clone()),
                },
            ),
            None => {
                let m = make_manifest(scanned, config, &layers);
                let bytes = image::canonical_json(&m);
                let media = m.media_type.clone().unwrap_or_default();
                (
                    Descriptor::new(media, Digest::of(&bytes), bytes.len() as u64),
                    ManifestSource::Made(bytes),
                )
            }
        };
        plans.push(Plan {
            descriptor,
            manifest,
            id,
            config,
            layers,
            names,
        });
    }
    Ok(plans)
}

/// A manifest for a docker-archive image: Docker schema 2 media types (uncompressed or gzip
/// layers, as the archive holds them), OCI ones when a layer is zstd (Docker has no zstd type).
fn make_manifest(scanned: &Scanned, config: usize, layers: &[usize]) -> Manifest {
    let zstd = layers
        .iter()
        .any(|&i| scanned.files[i].compression == Compression::Zstd);
    let layer_type = |c: Compression| match (zstd, c) {
        (_, Compression::Zstd) => media_type::OCI_LAYER_ZSTD,
        (false, Compression::Gzip) => media_type::DOCKER_LAYER_GZIP,
        (false, _) => media_type::DOCKER_LAYER_TAR,
        (true, Compression::Gzip) => media_type::OCI_LAYER_GZIP,
        (true, _) => media_type::OCI_LAYER_TAR,
    };
    let c = &scanned.files[config];
    let (manifest_type, config_type) = if zstd {
        (media_type::OCI_MANIFEST, media_type::OCI_CONFIG)
    } else {
        (media_type::DOCKER_MANIFEST, media_type::DOCKER_CONFIG)
    };
    Manifest {
        schema_version: 2,
        media_type: Some(manifest_type.to_owned()),
        artifact_type: None,
        config: Descriptor::new(config_type, c.digest, c.size),
        layers: layers
            .iter()
            .map(|&i| {
                let f = &scanned.files[i];
                Descriptor::new(layer_type(f.compression), f.digest, f.size)
            })
            .collect(),
        subject: None,
        annotations: BTreeMap::new(),
    }
}

fn read_config(scanned: &Scanned, i: usize) -> Result<ImageConfig, ArchiveError> {
    let bytes = scanned.read_small(i, "an image config", JSON_LIMIT)?;
    parse_json(&bytes, &scanned.files[i].path, "an image config")
}

/// Every layer's DiffID is the one the config lists at its position.
fn check_layers(
    scanned: &Scanned,
    shown: &str,
    layers: &[usize],
    diff_ids: &[DiffId],
) -> Result<(), ArchiveError> {
    if layers.len() != diff_ids.len() {
        return Err(ArchiveError::LayerCount {
            image: shown.to_owned(),
            layers: layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    for (index, (&l, want)) in layers.iter().zip(diff_ids).enumerate() {
        let f = &scanned.files[l];
        match &f.uncompressed {
            Ok(actual) if actual == want.digest() => {}
            Ok(actual) => {
                return Err(ArchiveError::DiffIdMismatch {
                    image: shown.to_owned(),
                    index,
                    path: f.path.clone(),
                    expected: *want.digest(),
                    actual: *actual,
                });
            }
            Err(reason) => {
                return Err(ArchiveError::BadCompression {
                    image: shown.to_owned(),
                    index,
                    path: f.path.clone(),
                    compression: f.compression.name(),
                    reason: reason.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The name an `index.json` entry gives its image: `io.containerd.image.name`, else
/// `org.opencontainers.image.ref.name` when it is a full reference rather than a bare tag.
pub fn name_from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<ImageRef>, ArchiveError> {
    if let Some(n) = annotations.get(ANNOTATION_IMAGE_NAME) {
        return parse_name(n).map(Some);
    }
    match annotations.get(ANNOTATION_REF_NAME) {
        Some(r) if r.contains(['/', ':', '@']) => Ok(ImageRef::parse(r).ok()),
        _ => Ok(None),
    }
}

/// Plans for an OCI layout (`index.json`).
fn plan_oci(scanned: &Scanned, platform: &Platform) -> Result<Vec<Plan>, ArchiveError> {
    let ii = scanned
        .at("index.json")
        .ok_or(ArchiveError::NotAnImageArchive)?;
    let bytes = scanned.read_small(ii, "index.json", JSON_LIMIT)?;
    let index: Index = parse_json(&bytes, "index.json", "an OCI image index")?;
    let mut plans: Vec<Plan> = Vec::new();
    for entry in &index.manifests {
        let name = name_from_annotations(&entry.annotations)?;
        let desc = if media_type::is_index(&entry.media_type) {
            select(scanned, entry, platform)?
        } else if media_type::is_manifest(&entry.media_type) {
            entry.clone()
        } else {
            return Err(ArchiveError::UnsupportedMediaType {
                what: format!("index.json entry {}", entry.digest),
                media_type: entry.media_type.clone(),
            });
        };
        let plan = match plans
            .iter_mut()
            .find(|p| p.descriptor.digest == desc.digest)
        {
            Some(p) => p,
            None => {
                let shown = name
                    .as_ref()
                    .map_or_else(|| desc.digest.to_string(), ImageRef::familiar);
                plans.push(plan_manifest(scanned, &desc, &shown)?);
                plans.last_mut().expect("just pushed")
            }
        };
        if let Some(n) = name
            && !plan.names.contains(&n)
        {
            plan.names.push(n);
        }
    }
    Ok(plans)
}

/// The staged file with `desc`'s digest, of `desc`'s size.
fn blob(scanned: &Scanned, desc: &Descriptor, referrer: &str) -> Result<usize, ArchiveError> {
    let i = scanned
        .with_digest(&desc.digest)
        .ok_or_else(|| ArchiveError::MissingBlob {
            digest: desc.digest,
            referrer: referrer.to_owned(),
        })?;
    let size = scanned.files[i].size;
    if size != desc.size {
        return Err(ArchiveError::SizeMismatch {
            digest: desc.digest,
            referrer: referrer.to_owned(),
            expected: desc.size,
            actual: size,
        });
    }
    Ok(i)
}

/// The manifest for `platform` from the nested index `entry`.
fn select(
    scanned: &Scanned,
    entry: &Descriptor,
    platform: &Platform,
) -> Result<Descriptor, ArchiveError> {
    let i = blob(scanned, entry, "index.json")?;
    let bytes = scanned.read_small(i, "an image index", JSON_LIMIT)?;
    let nested: Index = parse_json(&bytes, &scanned.files[i].path, "an image index")?;
    let chosen = nested.select(platform).or_else(|| {
        // A single image without a platform (as some tools write): that one.
        let manifests: Vec<&Descriptor> = nested
            .manifests
            .iter()
            .filter(|d| media_type::is_manifest(&d.media_type))
            .collect();
        match manifests[..] {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        }
    });
    match chosen {
        Some(d) if media_type::is_manifest(&d.media_type) => Ok(d.clone()),
        Some(d) => Err(ArchiveError::UnsupportedMediaType {
            what: format!("index {} entry {}", entry.digest, d.digest),
            media_type: d.media_type.clone(),
        }),
        None => Err(ArchiveError::NoPlatform {
            what: format!("index {}", entry.digest),
            platform: platform.slash_form(),
        }),
    }
}

/// Check one image manifest of an OCI layout and everything it references.
fn plan_manifest(scanned: &Scanned, desc: &Descriptor, shown: &str) -> Result<Plan, ArchiveError> {
    let mi = blob(scanned, desc, "index.json")?;
    let path = scanned.files[mi].path.clone();
    let bytes = scanned.read_small(mi, "an image manifest", JSON_LIMIT)?;
    let manifest: Manifest = parse_json(&bytes, &path, "an image manifest")?;
    let referrer = format!("manifest {}", desc.digest);
    if !matches!(
        manifest.config.media_type.as_str(),
        media_type::OCI_CONFIG | media_type::DOCKER_CONFIG
    ) {
        return Err(ArchiveError::UnsupportedMediaType {
            what: format!("the config of {shown}"),
            media_type: manifest.config.media_type.clone(),
        });
    }
    let config = blob(scanned, &manifest.config, &referrer)?;
    let parsed = read_config(scanned, config)?;
    let layers = manifest
        .layers
        .iter()
        .map(|l| blob(scanned, l, &referrer))
        .collect::<Result<Vec<_>, _>>()?;
    check_layers(scanned, shown, &layers, &parsed.rootfs.diff_ids)?;
    Ok(Plan {
        descriptor: Descriptor::new(desc.media_type.clone(), desc.digest, desc.size),
        manifest: ManifestSource::Staged(mi),
        id: manifest.config.digest,
        config,
        layers,
        names: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, p, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A docker-archive as docker 20.10 lays it out, with a gzip and a zstd layer, and a second
    /// image without a name.
    fn legacy_archive(diff_id_override: Option<Digest>) -> (Vec<u8>, Digest) {
        use std::io::Write as _;
        let layer = |name: &str| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            h.set_size(3);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &b"abc"[..]).unwrap();
            b.into_inner().unwrap()
        };
        let (l1, l2) = (layer("one"), layer("two"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&l1).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&l2[..], 3).unwrap();
        let diff_ids = [
            Digest::of(&l1).to_string(),
            diff_id_override.unwrap_or(Digest::of(&l2)).to_string(),
        ];
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config2 = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_ids[0]]},
        }))
        .unwrap();
        let id = Digest::of(&config);
        let manifest = serde_json::json!([
            {"Config": format!("{}.json", id.hex()), "RepoTags": ["app:1", "localhost:5000/app:2"],
             "Layers": ["a/layer.tar", "b/layer.tar"]},
            {"Config": format!("{}.json", Digest::of(&config2).hex()), "RepoTags": null,
             "Layers": ["a/layer.tar"]},
        ]);
        let files = vec![
            ("a/layer.tar".to_owned(), gz),
            ("b/layer.tar".to_owned(), zst),
            (format!("{}.json", id.hex()), config),
            (format!("{}.json", Digest::of(&config2).hex()), config2),
            (
                "manifest.json".to_owned(),
                serde_json::to_vec(&manifest).unwrap(),
            ),
        ];
        (tar_of(&files), id)
    }

    #[test]
    fn a_legacy_docker_archive_with_gzip_and_zstd_layers_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (archive, id) = legacy_archive(None);
        let loaded = load(&store, &archive[..], &Platform::host()).unwrap();
        assert_eq!(loaded.format, ArchiveFormat::Docker);
        assert_eq!(loaded.images.len(), 2, "{loaded:?}");
        let image = &loaded.images[0];
        assert_eq!(image.id, id);
        let names: Vec<String> = image.names.iter().map(ImageRef::familiar).collect();
        assert_eq!(names, ["app:1", "localhost:5000/app:2"]);
        let stored = store
            .resolve(&ImageRef::parse("app:1").unwrap())
            .unwrap()
            .unwrap();
        // A zstd layer has no Docker media type: the manifest made for it is OCI.
        assert_eq!(
            stored.manifest_descriptor.media_type,
            media_type::OCI_MANIFEST
        );
        let types: Vec<&str> = stored
            .manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect();
        assert_eq!(
            types,
            [media_type::OCI_LAYER_GZIP, media_type::OCI_LAYER_ZSTD]
        );
        assert!(stored.blobs().all(|b| store.content().contains(&b)));

        // The image without a name is kept untagged, found by a short ID, its blobs stored.
        let untagged = &loaded.images[1];
        assert!(untagged.names.is_empty());
        assert_ne!(untagged.id, id);
        let refs = store.all_refs().unwrap();
        assert_eq!(
            refs.untagged().keys().collect::<Vec<_>>(),
            [&untagged.manifest.digest]
        );
        let (found, names) = store.find(&untagged.id.hex()[..12]).unwrap();
        assert!(names.is_empty());
        assert_eq!(found.id(), untagged.id);
        assert!(found.blobs().all(|b| store.content().contains(&b)));

        // Loading again changes nothing; the same image by ID in another archive is the one
        // already stored.
        let again = load(&store, &archive[..], &Platform::host()).unwrap();
        assert_eq!(again.images[1].manifest, untagged.manifest);
        assert_eq!(store.all_refs().unwrap(), refs);
    }

    /// An OCI layout whose `index.json` names nothing, with the image listed twice.
    #[test]
    fn an_oci_layout_without_names_loads_untagged() {
        let layer = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            h.set_size(2);
            h.set_mode(0o644);
            b.append_data(&mut h, "f", &b"hi"[..]).unwrap();
            b.into_inner().unwrap()
        };
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": media_type::OCI_LAYER_TAR, "digest": Digest::of(&layer).to_string(), "size": layer.len()}],
        }))
        .unwrap();
        let entry = serde_json::json!({
            "mediaType": media_type::OCI_MANIFEST,
            "digest": Digest::of(&manifest).to_string(),
            "size": manifest.len(),
        });
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry, entry]});
        let blob = |b: &[u8]| (format!("blobs/sha256/{}", Digest::of(b).hex()), b.to_vec());
        let archive = tar_of(&[
            (
                "oci-layout".to_owned(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_owned(), serde_json::to_vec(&index).unwrap()),
            blob(&manifest),
            blob(&config),
            blob(&layer),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let loaded = load(&store, &archive[..], &Platform::host()).unwrap();
        assert_eq!(loaded.format, ArchiveFormat::Oci);
        assert_eq!(loaded.images.len(), 1, "{loaded:?}");
        assert_eq!(loaded.images[0].id, Digest::of(&config));
        assert_eq!(loaded.images[0].manifest.digest, Digest::of(&manifest));
        assert!(store.refs().unwrap().is_empty());
        let (found, names) = store
            .find(&format!("sha256:{}", Digest::of(&config).hex()))
            .unwrap();
        assert!(names.is_empty());
        assert_eq!(found.manifest_descriptor.digest, Digest::of(&manifest));
    }

    #[test]
    fn a_wrong_diff_id_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (archive, _) = legacy_archive(Some(Digest::of(b"other")));
        let err = load(&store, &archive[..], &Platform::host()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::DiffIdMismatch { index: 1, .. }),
            "{err}"
        );
        assert_eq!(
            fs_err::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            fs_err::read_dir(dir.path().join("ingest")).unwrap().count(),
            0
        );
        assert!(store.refs().unwrap().is_empty());
    }

    #[test]
    fn names_come_from_the_image_name_annotation_or_a_full_ref_name() {
        let n = name_from_annotations(&ann(&[
            (ANNOTATION_IMAGE_NAME, "docker.io/library/app:1"),
            (ANNOTATION_REF_NAME, "1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(n.familiar(), "app:1");
        // podman and skopeo write the whole reference as ref.name.
        let n = name_from_annotations(&ann(&[(ANNOTATION_REF_NAME, "localhost/app:2")]))
            .unwrap()
            .unwrap();
        assert_eq!(n.to_string(), "localhost/app:2");
        // A bare tag names no repository.
        assert_eq!(
            name_from_annotations(&ann(&[(ANNOTATION_REF_NAME, "latest")])).unwrap(),
            None
        );
        assert_eq!(name_from_annotations(&BTreeMap::new()).unwrap(), None);
        assert!(matches!(
            name_from_annotations(&ann(&[(ANNOTATION_IMAGE_NAME, "Bad Name")])),
            Err(ArchiveError::BadName { .. })
        ));
    }
}
