//! `[[modules]]`: the pinned trust policy of each module, its Gitea repository and category.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The pinned trust policy of one module. Never taken from the artifact.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModulePolicy {
    pub name: String,
    pub repository: String,
    /// Public key files (cosign.pub).
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    #[serde(default)]
    pub identity_regexp: Option<String>,
    #[serde(default)]
    pub issuer_regexp: Option<String>,
    /// Sigstore trusted_root.json for keyless signatures.
    #[serde(default)]
    pub trusted_root: Option<PathBuf>,
    /// Require a transparency-log entry for keyless signatures.
    #[serde(default = "yes")]
    pub require_tlog: bool,
    /// Pin the identity of the first verified version (when no identity is configured).
    #[serde(default)]
    pub trust_on_first_use: bool,
    /// The Gitea repository (`owner/name`) whose PR comments drive this module's promotion
    /// [default: `repository`].
    #[serde(default)]
    pub gitea_repository: Option<String>,
    /// The module's category, pinned: category policy overrides apply by this value, and an
    /// artifact whose manifest declares another category is rejected.
    #[serde(default)]
    pub category: Option<String>,
}

fn yes() -> bool {
    true
}

impl ModulePolicy {
    /// Checks entry `i`: a module name, and a signer pinned one way or another.
    pub fn validate(&self, i: usize) -> anyhow::Result<()> {
        let m = self;
        powernode_module::manifest::ModuleName::parse(&m.name).ok_or_else(|| {
            anyhow::anyhow!(
                "configuration: modules[{i}].name {:?} is not a module name",
                m.name
            )
        })?;
        let keyless = m.identity_regexp.is_some() || m.issuer_regexp.is_some();
        if keyless && (m.identity_regexp.is_none() || m.issuer_regexp.is_none()) {
            anyhow::bail!(
                "configuration: modules[{i}] ({}) needs both identity_regexp and issuer_regexp",
                m.name
            );
        }
        if (keyless || m.trust_on_first_use) && m.trusted_root.is_none() {
            anyhow::bail!(
                "configuration: modules[{i}] ({}) is keyless but has no trusted_root",
                m.name
            );
        }
        if m.keys.is_empty() && !keyless && !m.trust_on_first_use {
            anyhow::bail!(
                "configuration: modules[{i}] ({}) pins no signer: give keys, identity_regexp + issuer_regexp, or trust_on_first_use",
                m.name
            );
        }
        Ok(())
    }
}
