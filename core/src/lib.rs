//! The node-module format and its rules, shared by `module-builder` and `module-webhook`.
//!
//! Everything here is either pure (manifest parsing, linting, path selection) or works on
//! streams handed in by the caller (tar writing and reading, digests), so both binaries and
//! the tests drive the same code without a network.

pub mod artifact;
pub mod diagnostics;
pub mod digest;
pub mod manifest;

/// The version of this library, recorded in artifacts as `BUILDER_VERSION`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub mod registry;
pub mod trust;
