//! Integration tests for the `kiln` binary (`cargo test --test it`): one binary, so the
//! harness (local registry, fixtures) is built once.

mod archive;
mod build_cache;
mod build_cache_share;
mod build_call;
mod build_copy_add;
mod build_named_context;
mod build_options;
mod build_outputs;
mod build_parallel;
mod build_progress;
mod build_run;
mod build_scratch;
mod differential;
mod dockerignore;
mod errors;
mod harness;
mod interop;
mod oci_runtime;
mod oci_schema;
mod pull_unpack;
mod registry_auth;
mod registry_client;
mod registry_faults;
mod registry_tls;
mod sandbox;
mod sandbox_userns;
mod snapshots;
mod support;
mod untagged;
