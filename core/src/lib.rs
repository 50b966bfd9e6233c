//! The node-module format and its rules, shared by `module-builder`, `module-webhook` and
//! (later) the node agent.
//!
//! Most of it is pure (manifest parsing and linting, path selection, versions) or works on
//! streams handed in by the caller (tar writing and reading, digests), so every binary and the
//! tests drive the same code without a network. Two modules do I/O on purpose: `registry`
//! (the OCI distribution client) and the fetching half of `trust` (verification reads
//! signatures from a registry, keyless signing talks to Fulcio and Rekor).

pub mod artifact;
pub mod compose;
pub mod desired_state;
pub mod diagnostics;
pub mod digest;
pub mod lifecycle;
pub mod manifest;
pub mod package;
pub mod registry;
pub mod trust;
pub mod version;

pub use version::{Version, VersionError};

/// The version of this library, recorded in artifacts as `BUILDER_VERSION`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
