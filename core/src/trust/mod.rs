//! Signing and verification in cosign's layout, so `cosign verify` accepts what we write and
//! we accept what cosign writes.
//!
//! - [`layout`]: the `sha256-<hex>.sig` manifest and its layers;
//! - [`payload`]: the simple-signing payload that names the signed manifest digest;
//! - [`keys`]: cosign's encrypted key files;
//! - [`oidc`], [`fulcio`], [`rekor`]: keyless signing;
//! - [`cert`], [`pem`], [`trusted_root`], [`bundle`], [`sct`]: what verification trusts;
//! - [`pattern`]: whether a pinned identity regexp is anchored;
//! - [`verify`]: every check of ARCHITECTURE.md §5, as a pure function over one layer plus
//!   the fetch that feeds it;
//! - [`sign`]: signing and appending a signature layer.

pub mod bundle;
pub mod cert;
pub mod fulcio;
pub mod keys;
pub mod layout;
pub mod oidc;
pub mod pattern;
pub mod payload;
pub mod pem;
pub mod rekor;
pub mod sct;
pub mod sign;
pub mod trusted_root;
pub mod verify;

pub use pattern::is_anchored;

/// Fulcio's issuer extension (v2: DER UTF8String), and the deprecated v1 (raw string).
pub const OID_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
pub const OID_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
/// Fulcio's Source Repository Digest (the commit; DER UTF8String), the deprecated GitHub
/// Workflow SHA (raw string) it replaces, and the Source Repository URI (DER UTF8String).
pub const OID_SOURCE_REPOSITORY_DIGEST: &str = "1.3.6.1.4.1.57264.1.13";
pub const OID_GITHUB_WORKFLOW_SHA: &str = "1.3.6.1.4.1.57264.1.3";
pub const OID_SOURCE_REPOSITORY_URI: &str = "1.3.6.1.4.1.57264.1.12";
