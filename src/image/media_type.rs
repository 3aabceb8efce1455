//! Media types of the OCI image spec and their Docker schema 2 equivalents.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Whether a media type names a single-platform image manifest.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Whether a media type names a multi-platform index.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The OCI media type for a layer of any known media type, so layers of a Docker schema 2 base
/// image can be listed in the OCI manifests kiln writes. `None` for unknown layer types.
pub fn oci_layer_type(media_type: &str) -> Option<&'static str> {
    match media_type {
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Some(OCI_LAYER_GZIP),
        OCI_LAYER_TAR | DOCKER_LAYER_TAR => Some(OCI_LAYER_TAR),
        OCI_LAYER_ZSTD => Some(OCI_LAYER_ZSTD),
        _ => None,
    }
}
