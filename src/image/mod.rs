//! Image data types: references, descriptors, manifests, indexes and image configs.
//!
//! The config types are our own (DESIGN.md decision 3): ordered maps and a fixed field order give
//! canonical JSON (stable digests), and Docker's fields (`Healthcheck`, `OnBuild`, `Shell`,
//! `StopSignal`, `ArgsEscaped`) are kept. Unknown fields of images we read are preserved.
//! Not responsible for: storing or transferring images.

pub mod config;
pub mod manifest;
pub mod media_type;
pub mod reference;

pub use config::{ContainerConfig, HistoryEntry, ImageConfig, RootFs};
pub use manifest::{Descriptor, Index, Manifest, Platform};
pub use reference::{ImageRef, ReferenceError};

/// Serialize a value as canonical JSON: fixed field order, ordered maps, no insignificant
/// whitespace. Every manifest, index and config kiln writes goes through here.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("image types always serialize")
}
