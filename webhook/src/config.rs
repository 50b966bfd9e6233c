//! Configuration: a TOML file plus environment overrides
//! (`MODULE_WEBHOOK__SECTION__KEY`, e.g. `MODULE_WEBHOOK__GITEA__TOKEN`), validated once at
//! start-up with messages that name the key.

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub registry: RegistryConfig,
    pub hooks: HooksConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub modules: Vec<ModulePolicy>,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub promotion: PromotionConfig,
    #[serde(default)]
    pub gitea: Option<GiteaConfig>,
    /// Where the receiver keeps its own files (blobs staged during ingest go under
    /// `staging/`), never the system's shared temporary directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GiteaConfig {
    /// The instance, e.g. `https://gitea.example.org` (API under `/api/v1`).
    pub url: String,
    /// API token (set it as MODULE_WEBHOOK__GITEA__TOKEN).
    #[serde(default)]
    pub token: Option<String>,
}

/// Promotion policy per target stage, with per-module and per-category overrides.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromotionConfig {
    pub staging: crate::lifecycle::StagePolicy,
    pub blessed: crate::lifecycle::StagePolicy,
    pub live: crate::lifecycle::StagePolicy,
    /// Who may yank (only `who` applies).
    pub yank: crate::lifecycle::StagePolicy,
    pub overrides: Vec<PromotionOverride>,
    /// A pending request expires after this long.
    pub request_ttl_secs: i64,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        use crate::lifecycle::StagePolicy;
        PromotionConfig {
            staging: StagePolicy::default(),
            blessed: StagePolicy::default(),
            // As in the seed: going live needs an approval.
            live: StagePolicy {
                min_approvals: 1,
                ..StagePolicy::default()
            },
            yank: StagePolicy::default(),
            overrides: Vec::new(),
            request_ttl_secs: 7 * 86_400,
        }
    }
}

/// Replaces the policy of `stage` for one module or one category (module wins).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionOverride {
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// The stage entered (`staging`, `blessed`, `live`) or `yanked`; a typo fails at start-up.
    pub stage: crate::store::Lifecycle,
    pub policy: crate::lifecycle::StagePolicy,
}

impl PromotionConfig {
    /// The policy for entering `stage` (or yanking) for `module` of `category`. The category
    /// is the one pinned in the module's configuration entry, never the one an artifact's
    /// manifest declares: an artifact must not choose its own policy.
    pub fn policy_for(
        &self,
        stage: crate::store::Lifecycle,
        module: &str,
        category: Option<&str>,
    ) -> crate::lifecycle::StagePolicy {
        use crate::store::Lifecycle;
        let pick = |f: &dyn Fn(&PromotionOverride) -> bool| {
            self.overrides
                .iter()
                .find(|o| o.stage == stage && f(o))
                .map(|o| o.policy.clone())
        };
        pick(&|o| o.module.as_deref() == Some(module))
            .or_else(|| {
                pick(&|o| {
                    o.module.is_none() && category.is_some() && o.category.as_deref() == category
                })
            })
            .unwrap_or_else(|| match stage {
                Lifecycle::Staging => self.staging.clone(),
                Lifecycle::Blessed => self.blessed.clone(),
                Lifecycle::Live => self.live.clone(),
                _ => self.yank.clone(),
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry API base, e.g. `http://127.0.0.1:5000` (http only for loopback or `insecure`).
    pub url: String,
    /// Repository globs the reconciler lists and the hooks accept (`acct/modules/*`).
    pub repositories: Vec<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Expected `Authorization: Bearer …` of Distribution notifications.
    #[serde(default)]
    pub distribution_token: Option<String>,
    /// HMAC secrets for Gitea (several during rotation).
    #[serde(default)]
    pub gitea_secrets: Vec<String>,
    /// Expected `Authorization` header of Harbor webhooks (verbatim).
    #[serde(default)]
    pub harbor_auth: Option<String>,
    /// Largest accepted body, bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
}

fn default_body_limit() -> usize {
    1 << 20
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default)]
    pub tokens: Vec<ApiToken>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub token: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Read,
    Operator,
    BreakGlass,
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub workers: usize,
    pub max_attempts: i64,
    pub backoff_base_ms: i64,
    pub backoff_cap_ms: i64,
    /// How long a version may wait for its signature before it is rejected.
    pub signature_timeout_secs: i64,
    pub reconcile_interval_secs: u64,
    /// How long a claimed job stays leased before another worker may take it over.
    pub lease_secs: i64,
    /// Largest artifact the receiver downloads.
    pub max_artifact_bytes: u64,
    /// Largest number of entries an artifact's index.json may list.
    pub max_index_entries: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            workers: 2,
            max_attempts: 8,
            backoff_base_ms: 500,
            backoff_cap_ms: 60_000,
            signature_timeout_secs: 3_600,
            reconcile_interval_secs: 300,
            lease_secs: 120,
            max_artifact_bytes: 2 << 30,
            max_index_entries: powernode_module::artifact::DEFAULT_MAX_INDEX_ENTRIES,
        }
    }
}

/// Shortest shared secret accepted (API tokens, hook tokens and HMAC secrets).
pub const MIN_SECRET_LEN: usize = 16;

fn check_secret(key: &str, value: &str) -> anyhow::Result<()> {
    if value.trim().len() < MIN_SECRET_LEN {
        anyhow::bail!(
            "configuration: {key} is {} characters; a shared secret needs at least {MIN_SECRET_LEN} (generate one with `openssl rand -hex 32`)",
            value.trim().len()
        );
    }
    Ok(())
}

impl Config {
    /// Loads `path` (if any), then `MODULE_WEBHOOK__…` variables; `DATABASE_URL` overrides
    /// `database_url` as well.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut f = Figment::from(Serialized::default("listen", "127.0.0.1:8080")).merge(
            Serialized::default("database_url", "sqlite://data/module-webhook.db"),
        );
        if let Some(p) = path {
            if !p.exists() {
                anyhow::bail!("config file {} does not exist", p.display());
            }
            f = f.merge(Toml::file(p));
        }
        f = f.merge(
            Env::prefixed("MODULE_WEBHOOK__")
                .split("__")
                .lowercase(true),
        );
        if let Ok(url) = std::env::var("DATABASE_URL")
            && !url.is_empty()
            && std::env::var_os("MODULE_WEBHOOK__DATABASE_URL").is_none()
        {
            f = f.merge(Serialized::default("database_url", url));
        }
        let c: Config = f
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.registry.repositories.is_empty() {
            anyhow::bail!(
                "configuration: registry.repositories is empty; name the repositories to accept"
            );
        }
        for (i, m) in self.modules.iter().enumerate() {
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
        }
        for (i, t) in self.api.tokens.iter().enumerate() {
            check_secret(&format!("api.tokens[{i}] ({}) token", t.name), &t.token)?;
        }
        // A hook secret that is empty or short lets anyone forge deliveries: refuse it here
        // rather than accept every request that presents the same nothing.
        if let Some(t) = &self.hooks.distribution_token {
            check_secret("hooks.distribution_token", t)?;
        }
        for (i, s) in self.hooks.gitea_secrets.iter().enumerate() {
            check_secret(&format!("hooks.gitea_secrets[{i}]"), s)?;
        }
        if let Some(a) = &self.hooks.harbor_auth {
            check_secret("hooks.harbor_auth", a)?;
        }
        for (i, o) in self.promotion.overrides.iter().enumerate() {
            if o.module.is_none() && o.category.is_none() {
                anyhow::bail!(
                    "configuration: promotion.overrides[{i}] names neither a module nor a category"
                );
            }
            if !matches!(
                o.stage,
                crate::store::Lifecycle::Staging
                    | crate::store::Lifecycle::Blessed
                    | crate::store::Lifecycle::Live
                    | crate::store::Lifecycle::Yanked
            ) {
                anyhow::bail!(
                    "configuration: promotion.overrides[{i}].stage {} is not staging, blessed, live or yanked",
                    o.stage
                );
            }
        }
        Ok(())
    }
}
