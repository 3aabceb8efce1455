//! `--metadata-file`: the JSON object buildx writes after a build (`commands/build.go`
//! `writeMetadataFile`, from the exporter response of BuildKit's image, `oci` and `docker`
//! exporters):
//!
//! ```json
//! {
//!   "containerimage.config.digest": "sha256:…",
//!   "containerimage.descriptor": {
//!     "mediaType": "application/vnd.oci.image.manifest.v1+json",
//!     "digest": "sha256:…",
//!     "size": 1234,
//!     "platform": { "architecture": "amd64", "os": "linux" }
//!   },
//!   "containerimage.digest": "sha256:…",
//!   "image.name": "docker.io/library/app:1,docker.io/library/app:latest"
//! }
//! ```
//!
//! Keys are sorted (Go marshals maps sorted) and the file is indented by two spaces. The image
//! keys are written only when the build exported an image (the store, `oci` or `docker`); a
//! build with only `local`/`tar` outputs writes `{}`, as BuildKit's filesystem exporters
//! return no image digest. `image.name` is present only when the image has names. buildx's own
//! `buildx.build.ref` (a builder session reference) has no meaning without a builder and is
//! not written.
//!
//! Not responsible for: what the digests are (the caller passes the exported manifest).

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};
use snapshotter::Digest;

use crate::image::{Descriptor, ImageRef, Platform};

use super::OutputError;

/// What the metadata file describes.
#[derive(Debug, Clone)]
pub struct BuildMetadata {
    /// The exported image's manifest and config digest; `None` when no image was exported.
    pub image: Option<(Descriptor, Digest)>,
    pub names: Vec<ImageRef>,
    pub platform: Platform,
}

impl BuildMetadata {
    /// The JSON object buildx writes.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some((manifest, config)) = &self.image {
            m.insert(
                "containerimage.config.digest".to_owned(),
                Value::String(config.to_string()),
            );
            let mut desc = manifest.clone();
            desc.platform = Some(self.platform.clone());
            m.insert(
                "containerimage.descriptor".to_owned(),
                serde_json::to_value(&desc).expect("a descriptor serializes"),
            );
            m.insert(
                "containerimage.digest".to_owned(),
                Value::String(manifest.digest.to_string()),
            );
            if !self.names.is_empty() {
                let names: Vec<String> = self.names.iter().map(ToString::to_string).collect();
                m.insert("image.name".to_owned(), Value::String(names.join(",")));
            }
        }
        Value::Object(m)
    }

    /// Write the file atomically (temp file in the same directory, then rename), as buildx's
    /// `ioutils.AtomicWriteFile`.
    pub fn write(&self, path: &Path) -> Result<(), OutputError> {
        let mut text = serde_json::to_vec_pretty(&self.to_json()).expect("JSON serializes");
        text.push(b'\n');
        write_atomic(path, &text)
    }
}

/// Write `bytes` to `path` through a temp file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io_err = |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-")
        .tempfile_in(dir)
        .map_err(io_err)?;
    tmp.write_all(bytes).map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_buildx_writes_them() {
        let manifest =
            Descriptor::new(crate::image::media_type::OCI_MANIFEST, Digest::of(b"m"), 12);
        let meta = BuildMetadata {
            image: Some((manifest.clone(), Digest::of(b"c"))),
            names: vec![ImageRef::parse("app:1").unwrap()],
            platform: Platform {
                architecture: "amd64".to_owned(),
                os: "linux".to_owned(),
                os_version: None,
                os_features: vec![],
                variant: None,
            },
        };
        let v = meta.to_json();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "containerimage.config.digest",
                "containerimage.descriptor",
                "containerimage.digest",
                "image.name"
            ]
        );
        assert_eq!(v["containerimage.digest"], manifest.digest.to_string());
        assert_eq!(
            v["containerimage.config.digest"],
            Digest::of(b"c").to_string()
        );
        assert_eq!(
            v["containerimage.descriptor"]["mediaType"],
            crate::image::media_type::OCI_MANIFEST
        );
        assert_eq!(v["containerimage.descriptor"]["size"], 12);
        assert_eq!(v["containerimage.descriptor"]["platform"]["os"], "linux");
        assert_eq!(v["image.name"], "docker.io/library/app:1");

        let none = BuildMetadata {
            image: None,
            ..meta
        };
        assert_eq!(none.to_json(), serde_json::json!({}));
    }
}
