//! Writing image archives from the store, the way BuildKit's `exporter/oci` (through containerd's
//! `images/archive` exporter) and `docker save` write them:
//!
//! * `oci-layout`, `index.json`, then `blobs/sha256/<hex>` for each manifest, config and layer
//!   (each blob once, however many images share it);
//! * each name of an image gives its manifest an entry in `index.json` with two annotations:
//!   `io.containerd.image.name` (the full name, `docker.io/library/app:1`) and
//!   `org.opencontainers.image.ref.name` (only the tag, `1`, as the OCI image-layout spec defines
//!   it and containerd's `ociReferenceName` writes it); an image without a name gets one entry
//!   without annotations;
//! * [`ArchiveFormat::Docker`] converts each manifest to Docker's media types (BuildKit's default
//!   `oci-mediatypes=false`), unless a layer has no Docker media type (zstd), in which case the
//!   OCI manifest is kept as BuildKit does; `manifest.json` lists, per image, the config and layer
//!   blob paths and the names in their familiar form (`RepoTags: ["app:1"]`), which is what
//!   `docker load` and `podman load` read. With [`WriteOptions::repositories`] (`kiln save`, as
//!   `docker save`) the legacy `repositories` file is added (`{"app":{"1":"<top layer>"}}`);
//!   BuildKit's exporter writes none, so the build output does not.
//!
//! Layers are written as the store holds them (compressed or not): `docker load` (20.10 and later)
//! and `podman load` decompress layer files of a docker-archive by their magic bytes.
//! Entries are owned by 0:0 with mtime 0, so the same images give the same archive bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;
use snapshotter::Digest;

use super::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, ArchiveError, ArchiveFormat};
use crate::image::{self, Descriptor, ImageRef, Manifest, media_type};
use crate::store::{Store, StoreError, StoredImage};

/// One image to write and the names it goes by in the archive.
#[derive(Debug, Clone)]
pub struct SaveImage {
    pub image: StoredImage,
    pub names: Vec<ImageRef>,
}

/// How to write an archive.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub format: ArchiveFormat,
    /// Add Docker's legacy `repositories` file (docker-archive only).
    pub repositories: bool,
}

/// The manifest an archive holds for one image: what `index.json` points at.
#[derive(Debug, Clone)]
pub struct ArchivedManifest {
    pub descriptor: Descriptor,
    bytes: Vec<u8>,
}

/// The manifest of `image` as `format` stores it: the store's manifest for `Oci`, the Docker
/// schema 2 form for `Docker` (when every layer has a Docker media type).
pub fn manifest_for(
    store: &Store,
    image: &StoredImage,
    format: ArchiveFormat,
) -> Result<ArchivedManifest, StoreError> {
    if format == ArchiveFormat::Docker
        && let Some(docker) = docker_manifest(&image.manifest)
    {
        let bytes = image::canonical_json(&docker);
        let descriptor = Descriptor::new(
            media_type::DOCKER_MANIFEST,
            Digest::of(&bytes),
            bytes.len() as u64,
        );
        return Ok(ArchivedManifest { descriptor, bytes });
    }
    let bytes = store.content().read(&image.manifest_descriptor.digest)?;
    let mut descriptor = image.manifest_descriptor.clone();
    descriptor.annotations.clear();
    descriptor.platform = None;
    Ok(ArchivedManifest { descriptor, bytes })
}

/// The Docker schema 2 form of a manifest; `None` when a layer has no Docker media type.
fn docker_manifest(m: &Manifest) -> Option<Manifest> {
    let layer_type = |t: &str| match t {
        media_type::OCI_LAYER_GZIP | media_type::DOCKER_LAYER_GZIP => {
            Some(media_type::DOCKER_LAYER_GZIP)
        }
        media_type::OCI_LAYER_TAR | media_type::DOCKER_LAYER_TAR => {
            Some(media_type::DOCKER_LAYER_TAR)
        }
        _ => None,
    };
    let mut layers = Vec::with_capacity(m.layers.len());
    for l in &m.layers {
        let mut d = l.clone();
        d.media_type = layer_type(&l.media_type)?.to_owned();
        layers.push(d);
    }
    let mut config = m.config.clone();
    config.media_type = media_type::DOCKER_CONFIG.to_owned();
    Some(Manifest {
        schema_version: 2,
        media_type: Some(media_type::DOCKER_MANIFEST.to_owned()),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: m.annotations.clone(),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<&'a Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Write `images` as an archive to `out`; returns the manifest held for each image (in order).
pub fn write_archive(
    store: &Store,
    images: &[SaveImage],
    options: WriteOptions,
    out: impl Write,
) -> Result<Vec<ArchivedManifest>, ArchiveError> {
    let manifests = images
        .iter()
        .map(|i| manifest_for(store, &i.image, options.format))
        .collect::<Result<Vec<_>, _>>()?;
    let w = ArchiveError::Write;
    let mut tar = tar::Builder::new(out);
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(w)?;

    let mut entries: Vec<Descriptor> = Vec::new();
    for (image, manifest) in images.iter().zip(&manifests) {
        let mut entry = manifest.descriptor.clone();
        if image.names.is_empty() {
            entries.push(entry);
            continue;
        }
        for n in &image.names {
            entry.annotations.clear();
            entry
                .annotations
                .insert(ANNOTATION_IMAGE_NAME.to_owned(), n.to_string());
            entry
                .annotations
                .insert(ANNOTATION_REF_NAME.to_owned(), ref_name(n));
            entries.push(entry.clone());
        }
    }
    let index = Index {
        schema_version: 2,
        media_type: media_type::OCI_INDEX,
        manifests: entries.iter().collect(),
    };
    append_bytes(&mut tar, "index.json", &image::canonical_json(&index)).map_err(w)?;

    append_dir(&mut tar, "blobs/").map_err(w)?;
    append_dir(&mut tar, "blobs/sha256/").map_err(w)?;
    let mut written: Vec<Digest> = Vec::new();
    for manifest in &manifests {
        if written.contains(&manifest.descriptor.digest) {
            continue;
        }
        written.push(manifest.descriptor.digest);
        append_bytes(
            &mut tar,
            &blob_path(&manifest.descriptor.digest),
            &manifest.bytes,
        )
        .map_err(w)?;
    }
    for image in images {
        let m = &image.image.manifest;
        for d in std::iter::once(&m.config).chain(&m.layers) {
            if written.contains(&d.digest) {
                continue;
            }
            written.push(d.digest);
            let size = store.content().size(&d.digest)?;
            if size != d.size {
                return Err(StoreError::SizeMismatch {
                    digest: d.digest,
                    expected: d.size,
                    actual: size,
                }
                .into());
            }
            let blob = store.content().open_blob(&d.digest)?;
            let mut header = file_header(size);
            tar.append_data(&mut header, blob_path(&d.digest), blob)
                .map_err(w)?;
        }
    }

    if options.format == ArchiveFormat::Docker {
        let docker: Vec<DockerManifestEntry> = images
            .iter()
            .map(|i| DockerManifestEntry {
                config: blob_path(&i.image.manifest.config.digest),
                repo_tags: i
                    .names
                    .iter()
                    .filter(|n| n.tag().is_some())
                    .map(ImageRef::familiar)
                    .collect(),
                layers: i
                    .image
                    .manifest
                    .layers
                    .iter()
                    .map(|l| blob_path(&l.digest))
                    .collect(),
            })
            .collect();
        append_bytes(&mut tar, "manifest.json", &image::canonical_json(&docker)).map_err(w)?;
        if options.repositories {
            let repos = repositories(images);
            if !repos.is_empty() {
                append_bytes(&mut tar, "repositories", &image::canonical_json(&repos))
                    .map_err(w)?;
            }
        }
    }
    tar.into_inner().map_err(w)?.flush().map_err(w)?;
    Ok(manifests)
}

/// Docker's legacy `repositories` file: familiar repository → tag → top layer ID (here the top
/// layer's blob, as Docker 25+ writes it); images without layers or tags are left out.
fn repositories(images: &[SaveImage]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for i in images {
        let Some(top) = i.image.manifest.layers.last() else {
            continue;
        };
        for n in &i.names {
            if let Some(tag) = n.tag() {
                repos
                    .entry(n.familiar_repository())
                    .or_default()
                    .insert(tag.to_owned(), top.digest.hex());
            }
        }
    }
    repos
}

/// The OCI `ref.name` of a name: its tag (or digest), as containerd's `ociReferenceName`.
pub(crate) fn ref_name(name: &ImageRef) -> String {
    match (name.tag(), name.digest()) {
        (Some(t), _) => t.to_owned(),
        (None, Some(d)) => d.to_string(),
        (None, None) => image::reference::DEFAULT_TAG.to_owned(),
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = file_header(bytes.len() as u64);
    tar.append_data(&mut h, path, bytes)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    tar.append_data(&mut h, path, io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageConfig, RootFs};

    #[test]
    fn ref_name_is_the_tag() {
        let r = ImageRef::parse("localhost:5000/a/b:v1").unwrap();
        assert_eq!(ref_name(&r), "v1");
        let r = ImageRef::parse("app").unwrap();
        assert_eq!(ref_name(&r), "latest");
    }

    fn desc(media: &str, byte: u8) -> Descriptor {
        Descriptor::new(media, Digest::of(&[byte]), 1)
    }

    fn oci_manifest() -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config: desc(media_type::OCI_CONFIG, 0),
            layers: vec![
                desc(media_type::OCI_LAYER_GZIP, 1),
                desc(media_type::OCI_LAYER_TAR, 2),
            ],
            subject: None,
            annotations: Default::default(),
        }
    }

    #[test]
    fn docker_manifest_converts_media_types() {
        let oci = oci_manifest();
        let d = docker_manifest(&oci).unwrap();
        assert_eq!(d.media_type.as_deref(), Some(media_type::DOCKER_MANIFEST));
        assert_eq!(d.config.media_type, media_type::DOCKER_CONFIG);
        assert_eq!(d.config.digest, oci.config.digest);
        assert_eq!(d.layers[0].media_type, media_type::DOCKER_LAYER_GZIP);
        assert_eq!(d.layers[1].media_type, media_type::DOCKER_LAYER_TAR);

        let mut zstd = oci.clone();
        zstd.layers.push(desc(media_type::OCI_LAYER_ZSTD, 3));
        assert!(docker_manifest(&zstd).is_none());
    }

    #[test]
    fn repositories_maps_familiar_names_to_the_top_layer() {
        let manifest = oci_manifest();
        let image = StoredImage {
            manifest_descriptor: desc(media_type::OCI_MANIFEST, 9),
            config: ImageConfig {
                architecture: "amd64".into(),
                os: "linux".into(),
                rootfs: RootFs::default(),
                ..Default::default()
            },
            manifest: manifest.clone(),
        };
        let pinned = format!("app@sha256:{}", "a".repeat(64));
        let names = ["app:1", "localhost:5000/x/app:2", &pinned];
        let save = SaveImage {
            image,
            names: names.iter().map(|n| ImageRef::parse(n).unwrap()).collect(),
        };
        let repos = repositories(std::slice::from_ref(&save));
        let top = manifest.layers[1].digest.hex();
        assert_eq!(repos["app"]["1"], top);
        assert_eq!(repos["localhost:5000/x/app"]["2"], top);
        assert_eq!(repos.len(), 2, "{repos:?}");
    }
}
