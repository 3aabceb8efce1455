//! The state of a stage while its steps run: the image config being built, the layers so far
//! (whose DiffIDs name the stage's filesystem snapshot, see `rootfs`), and the variables
//! visible to word expansion.

use std::collections::BTreeMap;

use snapshotter::layer::LayerInfo;

use crate::image::{Descriptor, HistoryEntry, ImageConfig, media_type};

/// `PATH` that BuildKit gives images built `FROM scratch` (`system.DefaultPathEnv` for Linux).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// History comment BuildKit writes on the entries of Dockerfile steps.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// A stage in progress.
#[derive(Debug, Clone)]
pub struct StageState {
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
    /// ARGs declared in this stage with their effective values.
    pub args: BTreeMap<String, String>,
    /// The names of the ARGs declared in this stage, in declaration order (RUN's history).
    pub arg_order: Vec<String>,
    /// Whether this stage set CMD (ENTRYPOINT clears an inherited CMD, as in Docker).
    pub cmd_set: bool,
    /// The value of history `created` for entries this build adds.
    pub created: String,
}

impl StageState {
    pub fn new(config: ImageConfig, layers: Vec<Descriptor>, created: String) -> Self {
        // Layers of a Docker schema 2 base are listed with their OCI media types in our manifest.
        let layers = layers
            .into_iter()
            .map(|mut d| {
                if let Some(oci) = media_type::oci_layer_type(&d.media_type) {
                    d.media_type = oci.to_owned();
                }
                d
            })
            .collect();
        Self {
            config,
            layers,
            args: BTreeMap::new(),
            arg_order: Vec::new(),
            cmd_set: false,
            created,
        }
    }

    /// Look up a variable for word expansion: ENV wins over ARG, as in Docker.
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.config
            .config
            .env_var(name)
            .map(str::to_owned)
            .or_else(|| self.args.get(name).cloned())
    }

    /// The current WORKDIR (absolute), `/` when unset.
    pub fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned())
    }

    /// Add a layer and its history entry.
    pub fn push_layer(&mut self, info: &LayerInfo, media_type: &str, created_by: String) {
        self.layers
            .push(Descriptor::new(media_type, info.digest.0, info.size));
        self.config.rootfs.diff_ids.push(info.diff_id);
        self.push_history(created_by, false);
    }

    /// Add a history entry for a step that made no layer (or, with `empty_layer` false, did).
    pub fn push_history(&mut self, created_by: String, empty_layer: bool) {
        self.config.history.push(HistoryEntry {
            created: Some(self.created.clone()),
            created_by: Some(created_by),
            author: None,
            comment: Some(HISTORY_COMMENT.to_owned()),
            empty_layer,
        });
    }
}
