//! Docker's archive metadata: `manifest.json` (one entry per image: config path, names, layer
//! paths), as `docker save` (moby `image/tarexport`), `podman save` and `skopeo copy` write it,
//! and telling the archive formats apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::image::Descriptor;

/// One entry of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestEntry {
    /// Path of the config in the archive.
    pub config: String,
    /// Familiar names (`app:1`); `null` when the image was saved by ID.
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer files, base first.
    pub layers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Foreign layers (Windows base layers) that are not in the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_sources: Option<BTreeMap<String, Descriptor>>,
}

/// Parse `manifest.json`.
pub fn parse_manifest(bytes: &[u8]) -> Result<Vec<ManifestEntry>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// What kind of archive a set of top-level files makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// `manifest.json`: Docker's format (docker 20.10's legacy layout, or docker 25+, podman,
    /// skopeo and kiln, which may also carry an OCI layout beside it).
    Docker,
    /// `index.json` without `manifest.json`: an OCI image layout.
    Oci,
    /// Only `repositories`: Docker's pre-1.10 format.
    LegacyV1,
    /// None of these.
    Unknown,
}

/// Tell the format from which files the archive has (`has(path)`). `manifest.json` wins over
/// `index.json`, as `docker load` reads it first.
pub fn detect(has: impl Fn(&str) -> bool) -> Detected {
    if has("manifest.json") {
        Detected::Docker
    } else if has("index.json") {
        Detected::Oci
    } else if has("repositories") {
        Detected::LegacyV1
    } else {
        Detected::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_by_their_files() {
        let with = |files: &'static [&'static str]| move |p: &str| files.contains(&p);
        assert_eq!(
            detect(with(&["manifest.json", "repositories", "abc/layer.tar"])),
            Detected::Docker
        );
        assert_eq!(
            detect(with(&["oci-layout", "index.json", "manifest.json"])),
            Detected::Docker
        );
        assert_eq!(detect(with(&["oci-layout", "index.json"])), Detected::Oci);
        assert_eq!(
            detect(with(&["repositories", "abc/json"])),
            Detected::LegacyV1
        );
        assert_eq!(detect(with(&["hello.txt"])), Detected::Unknown);
    }

    #[test]
    fn parses_docker_20_10_manifest() {
        // As docker 20.10 `docker save busybox:1 app` writes it (abridged digests).
        let json = r#"[{"Config":"4a3a2b0a.json","RepoTags":["busybox:1"],"Layers":["0f9e/layer.tar","77aa/layer.tar"]},{"Config":"9f1e.json","RepoTags":null,"Layers":["0f9e/layer.tar"],"Parent":"sha256:4a3a"}]"#;
        let m = parse_manifest(json.as_bytes()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].config, "4a3a2b0a.json");
        assert_eq!(
            m[0].repo_tags.as_deref(),
            Some(&["busybox:1".to_owned()][..])
        );
        assert_eq!(m[0].layers, ["0f9e/layer.tar", "77aa/layer.tar"]);
        assert_eq!(m[1].repo_tags, None);
        assert_eq!(m[1].parent.as_deref(), Some("sha256:4a3a"));
    }

    #[test]
    fn parses_podman_and_oci_layout_style_manifests() {
        let podman =
            r#"[{"Config":"ab.json","RepoTags":["localhost/app:latest"],"Layers":["cd.tar"]}]"#;
        assert_eq!(
            parse_manifest(podman.as_bytes()).unwrap()[0].layers,
            ["cd.tar"]
        );
        let docker25 = r#"[{"Config":"blobs/sha256/ab","RepoTags":["app:1"],"Layers":["blobs/sha256/cd"],"LayerSources":{"sha256:cd":{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":1,"digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}}}]"#;
        let m = parse_manifest(docker25.as_bytes()).unwrap();
        assert_eq!(m[0].config, "blobs/sha256/ab");
        assert_eq!(m[0].layer_sources.as_ref().unwrap().len(), 1);
        assert!(parse_manifest(b"{}").is_err());
    }
}
