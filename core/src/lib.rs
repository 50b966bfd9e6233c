//! The node-module format and its rules, shared by `module-builder` and `module-webhook`.
//!
//! Everything here is either pure (manifest parsing, linting, path selection) or works on
//! streams handed in by the caller (tar writing and reading, digests), so both binaries and
//! the tests drive the same code without a network.

pub mod artifact;
pub mod diagnostics;
pub mod digest;
pub mod manifest;

/// The version a release tag names: `v0.1.0` → `0.1.0`; other tags unchanged.
pub fn version_from_tag(tag: &str) -> String {
    match tag.strip_prefix('v') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest.to_owned(),
        _ => tag.to_owned(),
    }
}

/// The version of this library, recorded in artifacts as `BUILDER_VERSION`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub mod registry;
pub mod trust;
