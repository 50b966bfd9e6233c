//! The module catalogue: the modules this receiver serves, each with its repository, pinned
//! signer policy and Gitea home, compiled once from `[[modules]]`. Ingest finds a policy by
//! repository (the artifact being verified never chooses its own signer), promotion by
//! Gitea repository, the fleet and the edges by name. It is its own concern, not ingest's:
//! every part of the receiver asks it, and it asks nothing of them.

pub mod pins;
pub mod versions;

pub use versions::versions_of;

use crate::config::{ModulePolicy, TrustOnFirstUse};
use powernode_module::trust::{
    trusted_root::TrustedRoot,
    verify::{Policy, TrustedKey},
};

/// JSON Schema `pattern` of module names and the ids that follow the same rule (templates,
/// instances): `ModuleName::parse`'s rule, `NAME_RULE`, for the OpenAPI document and MCP.
pub const NAME_PATTERN: &str = r"^[a-z0-9][a-z0-9-]{0,62}$";
/// JSON Schema `pattern` of Debian package names: `powernode_module::package::valid_name`.
pub const PACKAGE_PATTERN: &str = r"^[a-z0-9][a-z0-9+.-]+$";

#[derive(Debug, Clone)]
pub struct ModuleTrust {
    pub name: String,
    pub repository: String,
    pub policy: Policy,
    /// Off, automatic, or proposed for an operator's confirmation.
    pub trust_on_first_use: TrustOnFirstUse,
    /// The identity regexp as configured (compared with what a manifest asks for).
    pub identity_regexp: Option<String>,
    pub issuer_regexp: Option<String>,
    /// The trusted public keys as PEM text (handed to nodes in desired states).
    pub key_pems: Vec<String>,
    /// The Gitea repository whose PRs drive promotion.
    pub gitea_repository: String,
    /// The category pinned in configuration, if any.
    pub category: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Policies(Vec<ModuleTrust>);

impl Policies {
    pub fn load(modules: &[ModulePolicy]) -> anyhow::Result<Self> {
        let mut out = Vec::new();
        let any = regex::Regex::new("^.*$")?;
        for m in modules {
            let mut p = Policy {
                require_tlog: m.require_tlog,
                ..Default::default()
            };
            let mut key_pems = Vec::new();
            for k in &m.keys {
                let pem = std::fs::read_to_string(k)
                    .map_err(|e| anyhow::anyhow!("modules.{}: key {}: {e}", m.name, k.display()))?;
                key_pems.push(pem.trim().to_owned());
                p.keys.push(TrustedKey::from_pem(&pem).map_err(|e| {
                    anyhow::anyhow!("modules.{}: key {}: {e}", m.name, k.display())
                })?);
            }
            // Regexps are compiled as given (an operator may mean a partial match), but an
            // unanchored one matches any identity that merely contains it: say so.
            for (key, re) in [
                ("identity_regexp", &m.identity_regexp),
                ("issuer_regexp", &m.issuer_regexp),
            ] {
                if let Some(re) = re
                    && !powernode_module::trust::is_anchored(re)
                {
                    tracing::warn!(
                        module = %m.name,
                        "modules.{}.{key} {re:?} is not anchored (^…$ around every alternative): it also accepts any signer whose {} merely contains a match",
                        m.name,
                        if key == "identity_regexp" { "identity" } else { "issuer" },
                    );
                }
            }
            if let (Some(id), Some(iss)) = (&m.identity_regexp, &m.issuer_regexp) {
                p.identity = Some(
                    regex::Regex::new(id)
                        .map_err(|e| anyhow::anyhow!("modules.{}.identity_regexp: {e}", m.name))?,
                );
                p.issuer = Some(
                    regex::Regex::new(iss)
                        .map_err(|e| anyhow::anyhow!("modules.{}.issuer_regexp: {e}", m.name))?,
                );
            }
            if m.trust_on_first_use == TrustOnFirstUse::Auto && m.identity_regexp.is_none() {
                tracing::warn!(
                    module = %m.name,
                    "modules.{}.trust_on_first_use = true pins the first signing identity without an operator's confirmation; \"confirm\" makes it a proposal to confirm (POST /api/v1/pins/{}/confirm)",
                    m.name,
                    m.name,
                );
            }
            if m.trust_on_first_use.is_on() && p.identity.is_none() {
                // Any certificate identity under the trusted root, until the first verified
                // version pins one (ingest enforces the pin).
                p.identity = Some(any.clone());
                p.issuer = Some(any.clone());
            }
            if let Some(root) = &m.trusted_root {
                p.trusted_root = TrustedRoot::load(root)
                    .map_err(|e| anyhow::anyhow!("modules.{}.trusted_root: {e}", m.name))?;
            }
            out.push(ModuleTrust {
                name: m.name.clone(),
                repository: m.repository.clone(),
                policy: p,
                trust_on_first_use: m.trust_on_first_use,
                identity_regexp: m.identity_regexp.clone(),
                issuer_regexp: m.issuer_regexp.clone(),
                key_pems,
                gitea_repository: m
                    .gitea_repository
                    .clone()
                    .unwrap_or_else(|| m.repository.clone()),
                category: m.category.clone(),
            });
        }
        Ok(Policies(out))
    }

    pub fn for_repository(&self, repo: &str) -> Option<&ModuleTrust> {
        self.0.iter().find(|m| m.repository == repo)
    }

    /// The module promoted from PRs of Gitea repository `full_name`.
    pub fn for_gitea_repository(&self, full_name: &str) -> Option<&ModuleTrust> {
        self.0.iter().find(|m| m.gitea_repository == full_name)
    }

    pub fn by_name(&self, name: &str) -> Option<&ModuleTrust> {
        self.0.iter().find(|m| m.name == name)
    }

    pub fn all(&self) -> &[ModuleTrust] {
        &self.0
    }
}
