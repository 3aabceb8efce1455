//! kiln: a daemonless Dockerfile-to-OCI-image builder with an embedded container engine.
//!
//! The `kiln` binary is a thin CLI (`cli`) over this library; tests and benchmarks use the
//! library directly. The data flow is described in DESIGN.md.

pub mod archive;
pub mod cache;
pub mod cli;
pub mod image;
pub mod memory;
pub mod progress;
pub mod registry;
pub mod sandbox;
pub mod solver;
pub mod store;
