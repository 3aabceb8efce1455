//! OCI descriptors, image manifests and image indexes (also read in their Docker schema 2 forms,
//! which have the same shape).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use snapshotter::Digest;

/// A content descriptor (OCI image spec, "Content Descriptors").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Self {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }
}

/// A platform as used in index entries and image configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this kiln binary runs on, in OCI (GOARCH) names.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.to_owned(),
            os: "linux".to_owned(),
            os_version: None,
            os_features: Vec::new(),
            variant: variant.map(str::to_owned),
        }
    }

    /// Whether `os/arch[/variant]` (as given to `--platform`) names this platform; a missing
    /// variant matches any.
    pub fn matches_slash_form(&self, p: &str) -> bool {
        let mut parts = p.split('/');
        let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
        parts.next().is_none()
            && os == Some(self.os.as_str())
            && arch == Some(self.architecture.as_str())
            && (variant.is_none() || variant == self.variant.as_deref())
    }

    /// `os/arch[/variant]`.
    pub fn slash_form(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    /// Whether an index entry for `self` can run where `want` is asked for. A missing variant on
    /// either side matches (as containerd's default matcher does for arm64/v8).
    pub fn satisfies(&self, want: &Platform) -> bool {
        self.os == want.os
            && self.architecture == want.architecture
            && match (&self.variant, &want.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index / Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// The entry for `want`, skipping attestation manifests (`unknown/unknown`).
    pub fn select(&self, want: &Platform) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.satisfies(want)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_with_fixed_field_order() {
        let json = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        let m: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(
            String::from_utf8(crate::image::canonical_json(&m)).unwrap(),
            json
        );
    }

    #[test]
    fn platforms_print_and_match_like_docker() {
        let mut p = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            os_version: None,
            os_features: vec![],
            variant: Some("v8".into()),
        };
        assert_eq!(p.slash_form(), "linux/arm64/v8");
        assert!(p.matches_slash_form("linux/arm64") && p.matches_slash_form("linux/arm64/v8"));
        assert!(
            !p.matches_slash_form("linux/arm64/v7")
                && !p.matches_slash_form("linux/amd64")
                && !p.matches_slash_form("linux/arm64/v8/x")
        );
        p.variant = None;
        assert_eq!(p.slash_form(), "linux/arm64");
    }

    #[test]
    fn index_selects_platform_and_skips_attestations() {
        let d = Digest::of(b"");
        let mut amd = Descriptor::new(super::super::media_type::OCI_MANIFEST, d, 1);
        amd.platform = Some(Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            os_version: None,
            os_features: vec![],
            variant: None,
        });
        let mut att = amd.clone();
        att.platform = Some(Platform {
            architecture: "unknown".into(),
            os: "unknown".into(),
            os_version: None,
            os_features: vec![],
            variant: None,
        });
        let idx = Index {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            manifests: vec![att, amd.clone()],
            subject: None,
            annotations: BTreeMap::new(),
        };
        let want = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            os_version: None,
            os_features: vec![],
            variant: None,
        };
        assert_eq!(idx.select(&want), Some(&amd));
    }
}
