//! Image archives: `type=oci` (an OCI image layout in a tar) and `type=docker` (the same layout
//! plus Docker's `manifest.json`, with Docker schema 2 media types), written the way BuildKit's
//! `exporter/oci` writes them through containerd's `images/archive` exporter:
//!
//! * `oci-layout`, `index.json`, then `blobs/sha256/<hex>` for the manifest, the config and each
//!   layer (each blob once);
//! * each name gives the manifest's entry in `index.json` two annotations:
//!   `io.containerd.image.name` (the full name, `docker.io/library/app:1`) and
//!   `org.opencontainers.image.ref.name` (only the tag, `1`, as the OCI image-layout spec defines
//!   it and containerd's `ociReferenceName` writes it);
//! * `type=docker` converts the manifest to Docker's media types (BuildKit's default
//!   `oci-mediatypes=false` for this exporter), unless a layer has no Docker media type (zstd), in
//!   which case the OCI manifest is kept as BuildKit does when it forces OCI media types; its
//!   `manifest.json` lists the config and layer blob paths and the names in their familiar form
//!   (`RepoTags: ["app:1"]`), which is what `docker load` and `podman load` read. No legacy
//!   `repositories` file is written: BuildKit's exporter writes none, and `docker load` only
//!   reads it for archives without `manifest.json`.
//!
//! Entries are owned by 0:0 with mtime 0, so the same image gives the same archive bytes.
//!
//! Not responsible for: where the bytes go (a file or stdout: the caller passes a writer).

use std::io::{self, Write};

use serde::Serialize;
use snapshotter::Digest;

use crate::image::{self, Descriptor, ImageRef, Manifest, media_type};
use crate::store::{Store, StoredImage};

use super::OutputError;

/// Which archive flavour to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Oci,
    Docker,
}

/// The manifest an archive holds: what `index.json` (and the build metadata) points at.
#[derive(Debug, Clone)]
pub struct ArchivedManifest {
    pub descriptor: Descriptor,
    bytes: Vec<u8>,
}

/// `index.json` annotation with the full image name (containerd's `images.AnnotationImageName`).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// `index.json` annotation with the tag (OCI image spec `org.opencontainers.image.ref.name`).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The manifest as `format` stores it: the store's OCI manifest for `Oci`, the Docker schema 2
/// form for `Docker` (when every layer has a Docker media type).
pub fn manifest_for(
    store: &Store,
    image: &StoredImage,
    format: ArchiveFormat,
) -> Result<ArchivedManifest, OutputError> {
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

/// The Docker schema 2 form of an OCI manifest; `None` when a layer has no Docker media type.
fn docker_manifest(oci: &Manifest) -> Option<Manifest> {
    let layer_type = |t: &str| match t {
        media_type::OCI_LAYER_GZIP | media_type::DOCKER_LAYER_GZIP => {
            Some(media_type::DOCKER_LAYER_GZIP)
        }
        media_type::OCI_LAYER_TAR | media_type::DOCKER_LAYER_TAR => {
            Some(media_type::DOCKER_LAYER_TAR)
        }
        _ => None,
    };
    let mut layers = Vec::with_capacity(oci.layers.len());
    for l in &oci.layers {
        let mut d = l.clone();
        d.media_type = layer_type(&l.media_type)?.to_owned();
        layers.push(d);
    }
    let mut config = oci.config.clone();
    config.media_type = media_type::DOCKER_CONFIG.to_owned();
    Some(Manifest {
        schema_version: 2,
        media_type: Some(media_type::DOCKER_MANIFEST.to_owned()),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: oci.annotations.clone(),
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

/// Write `image` as a `format` archive to `out`; returns the manifest descriptor it holds.
pub fn write_archive(
    store: &Store,
    image: &StoredImage,
    names: &[ImageRef],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<ArchivedManifest, OutputError> {
    let manifest = manifest_for(store, image, format)?;
    let mut tar = tar::Builder::new(out);
    append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;

    let mut entry = manifest.descriptor.clone();
    let entries: Vec<Descriptor> = if names.is_empty() {
        vec![entry]
    } else {
        names
            .iter()
            .map(|n| {
                entry.annotations.clear();
                entry
                    .annotations
                    .insert(ANNOTATION_IMAGE_NAME.to_owned(), n.to_string());
                entry
                    .annotations
                    .insert(ANNOTATION_REF_NAME.to_owned(), ref_name(n));
                entry.clone()
            })
            .collect()
    };
    let index = Index {
        schema_version: 2,
        media_type: media_type::OCI_INDEX,
        manifests: entries.iter().collect(),
    };
    append_bytes(&mut tar, "index.json", &image::canonical_json(&index))?;

    append_dir(&mut tar, "blobs/")?;
    append_dir(&mut tar, "blobs/sha256/")?;
    append_bytes(
        &mut tar,
        &blob_path(&manifest.descriptor.digest),
        &manifest.bytes,
    )?;
    let mut written = vec![manifest.descriptor.digest];
    for d in std::iter::once(&image.manifest.config).chain(&image.manifest.layers) {
        if written.contains(&d.digest) {
            continue;
        }
        written.push(d.digest);
        let size = store.content().size(&d.digest)?;
        if size != d.size {
            return Err(crate::store::StoreError::SizeMismatch {
                digest: d.digest,
                expected: d.size,
                actual: size,
            }
            .into());
        }
        let blob = store.content().open_blob(&d.digest)?;
        let mut header = file_header(size);
        tar.append_data(&mut header, blob_path(&d.digest), blob)?;
    }

    if format == ArchiveFormat::Docker {
        let docker = [DockerManifestEntry {
            config: blob_path(&image.manifest.config.digest),
            repo_tags: names.iter().map(ImageRef::familiar).collect(),
            layers: image
                .manifest
                .layers
                .iter()
                .map(|l| blob_path(&l.digest))
                .collect(),
        }];
        append_bytes(&mut tar, "manifest.json", &image::canonical_json(&docker))?;
    }
    tar.into_inner()?.flush()?;
    Ok(manifest)
}

/// The OCI `ref.name` of a name: its tag (or digest), as containerd's `ociReferenceName`.
fn ref_name(name: &ImageRef) -> String {
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

    #[test]
    fn docker_manifest_converts_media_types() {
        let oci = Manifest {
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
        };
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
}
