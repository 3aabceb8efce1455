//! Cache keys (DESIGN.md decision 4): the SHA-256 of a canonical, versioned preimage made of
//! named fields, in the order the op adds them.
//!
//! The preimage is kept with the cache record, so a miss can be explained field by field
//! (`--debug-cache`): "the parent filesystem changed", "the sources changed", "env changed".
//!
//! Not responsible for: what goes into a key (each step decides, see `solver::steps`).

use serde::{Deserialize, Serialize};
use snapshotter::{ChainId, Digest};

/// Bumped whenever what a key covers, or the layers kiln writes for the same key, change: old
/// records then never match.
pub const KEY_VERSION: &str = "kiln.cache.v1";

/// A cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CacheKey(pub Digest);

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The fields a key is the digest of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preimage {
    pub version: String,
    /// `(name, value)` in the order the op added them; a name appears once.
    pub fields: Vec<(String, serde_json::Value)>,
}

impl Preimage {
    /// A preimage for an op of `kind` (`run`, `copy`, `workdir`, …) on the filesystem `parent`
    /// (`None`: an empty one).
    pub fn new(kind: &str, parent: Option<&ChainId>) -> Self {
        let mut p = Self {
            version: KEY_VERSION.to_owned(),
            fields: Vec::new(),
        };
        p.field("op", kind);
        p.field(
            "parent",
            parent.map_or_else(|| "scratch".to_owned(), ToString::to_string),
        );
        p
    }

    /// Add (or replace) a field.
    pub fn field(&mut self, name: &str, value: impl Serialize) -> &mut Self {
        let value = serde_json::to_value(value).expect("key fields are plain data");
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((name.to_owned(), value)),
        }
        self
    }

    /// A field's value.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The key: SHA-256 over the canonical JSON of the preimage.
    pub fn key(&self) -> CacheKey {
        let bytes = crate::image::canonical_json(self);
        CacheKey(Digest::of(&bytes))
    }

    /// Which fields differ from `before` (added, removed or changed), in this preimage's order,
    /// then the removed ones.
    pub fn changed_fields(&self, before: &Preimage) -> Vec<String> {
        let mut out = Vec::new();
        if self.version != before.version {
            out.push("version".to_owned());
        }
        for (name, value) in &self.fields {
            if before.get(name) != Some(value) {
                out.push(name.clone());
            }
        }
        for (name, _) in &before.fields {
            if self.get(name).is_none() {
                out.push(name.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_covers_every_field_and_its_order_is_canonical() {
        let mut a = Preimage::new("run", None);
        a.field("argv", ["/bin/sh", "-c", "make"]).field("user", "");
        let mut b = Preimage::new("run", None);
        b.field("argv", ["/bin/sh", "-c", "make"]).field("user", "");
        assert_eq!(a.key(), b.key());
        b.field("user", "app");
        assert_ne!(a.key(), b.key());
        assert_eq!(b.changed_fields(&a), ["user"]);
        let mut c = a.clone();
        c.field("env", ["A=1"]);
        assert_ne!(a.key(), c.key());
        assert_eq!(c.changed_fields(&a), ["env"]);
        assert_eq!(a.changed_fields(&c), ["env"]);
    }

    #[test]
    fn the_parent_and_the_version_are_part_of_the_key() {
        let chain = ChainId(Digest::from_bytes([7; 32]));
        let a = Preimage::new("copy", None);
        let b = Preimage::new("copy", Some(&chain));
        assert_ne!(a.key(), b.key());
        assert_eq!(b.changed_fields(&a), ["parent"]);
        let mut old = a.clone();
        old.version = "kiln.cache.v0".to_owned();
        assert_ne!(a.key(), old.key());
    }

    #[test]
    fn a_key_is_stable_across_releases() {
        // Changing this value means every user's cache misses once: bump KEY_VERSION with it.
        let mut p = Preimage::new("workdir", None);
        p.field("path", "/app");
        let again: Preimage = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(p.key(), again.key());
    }
}
