//! Artifact v1: the deterministic tar that carries a module, and everything derived from it.
//!
//! - [`walk`] scans `rootfs/` without following anything and refuses what must never ship;
//! - [`plan`] combines the manifest's selection with the scan;
//! - [`hash`] computes per-file fs-verity digests (the index needs them up front), with
//!   [`verity`] splitting a large file's Merkle leaves across both cores;
//! - [`writer`] writes the tar in one streaming pass, hashing it as it goes;
//! - [`composefs`] computes the composefs (EROFS format 1) digest of the tree;
//! - [`reader`] streams an artifact back, verifying every entry against `index.json`.

pub mod build;
pub mod composefs;
pub mod hash;
pub mod index;
pub mod plan;
pub mod reader;
pub mod release;
pub mod verity;
pub mod walk;
pub mod writer;

pub use build::{BuildOptions, BuildReport, ModuleJson, build};
pub use plan::{Plan, PlanError};
pub use reader::{
    DEFAULT_MAX_INDEX_ENTRIES, Inspection, ReadError, ReadLimits, read_and_verify,
    read_and_verify_with,
};

/// OCI `artifactType` of a module artifact.
pub const ARTIFACT_TYPE: &str = "application/vnd.powernode.module.v1";
/// Media type of the single layer: the module tar.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.powernode.module.v1+tar";
/// The composefs format version whose digest we record (`mkcomposefs --min-version=1`).
pub const COMPOSEFS_FORMAT: u32 = 1;

/// Top-level names inside the tar, in the order they are written.
pub const INDEX_JSON: &str = "index.json";
pub const MANIFEST_YAML: &str = "manifest.yaml";
pub const MODULE_RELEASE: &str = "module-release";
pub const ROOTFS: &str = "rootfs";
