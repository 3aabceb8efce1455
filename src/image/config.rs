//! The image config (OCI image spec "Image Configuration", with Docker's extra fields).
//!
//! Field order is fixed by the struct and maps are `BTreeMap`, so the serialized bytes (and the
//! image ID, which is the config's digest) depend only on the content. Fields kiln does not know
//! are kept in `extra` so a base image's config is never silently trimmed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use snapshotter::DiffId;

/// `Volumes` and `ExposedPorts` are JSON objects whose values are always `{}`.
pub type EmptySet = BTreeMap<String, EmptyObject>;

/// The `{}` value of [`EmptySet`] entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// The whole image config blob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The execution parameters (`config` in the image config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<EmptySet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<EmptySet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl ContainerConfig {
    /// Value of an environment variable (the last `NAME=` entry wins, as in Docker).
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.as_ref()?.iter().rev().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            (k == name).then_some(v)
        })
    }

    /// Set an environment variable, replacing an earlier entry in place (Docker keeps the
    /// original position) or appending a new one.
    pub fn set_env(&mut self, name: &str, value: &str) {
        let env = self.env.get_or_insert_with(Vec::new);
        let entry = format!("{name}={value}");
        match env
            .iter_mut()
            .find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == name)
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }
}

/// `rootfs`: the layers' DiffIDs, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<DiffId>,
}

impl Default for RootFs {
    fn default() -> Self {
        Self {
            kind: "layers".to_owned(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Custom":1},"rootfs":{"type":"layers","diff_ids":[]},"moby.buildkit.cache.v0":"x"}"#;
        let c: ImageConfig = serde_json::from_str(json).unwrap();
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back["moby.buildkit.cache.v0"], "x");
        assert_eq!(back["config"]["Custom"], 1);
    }

    #[test]
    fn set_env_replaces_in_place() {
        let mut c = ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
            ..Default::default()
        };
        c.set_env("PATH", "/usr/bin");
        c.set_env("B", "x=y");
        assert_eq!(c.env.as_deref().unwrap(), ["PATH=/usr/bin", "A=1", "B=x=y"]);
        assert_eq!(c.env_var("B"), Some("x=y"));
        assert_eq!(c.env_var("C"), None);
    }
}
