//! Configuration: a TOML file plus environment overrides
//! (`MODULE_WEBHOOK__SECTION__KEY`, e.g. `MODULE_WEBHOOK__GITEA__TOKEN`), validated once at
//! start-up with messages that name the key.

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod api;
mod fleet;
mod hooks;
mod ingest;
mod mcp;
mod modules;
mod promotion;
mod server;
mod web;

pub use api::{ApiConfig, ApiToken, Caller, Role};
pub use fleet::FleetConfig;
pub use hooks::HooksConfig;
pub use ingest::IngestConfig;
pub use mcp::McpConfig;
pub use modules::{ModulePolicy, TrustOnFirstUse};
pub use promotion::{PromotionConfig, PromotionOverride};
pub use server::ServerConfig;
pub use web::WebConfig;

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
    #[serde(default)]
    pub fleet: FleetConfig,
    #[serde(default)]
    pub mcp: McpConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub web: WebConfig,
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
    /// How long one Gitea call may take to connect (at most 10 s) and between bytes of its
    /// answer; a call that runs out fails the attempt, which the queue retries.
    #[serde(default = "default_gitea_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_gitea_timeout_secs() -> u64 {
    30
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

/// Shortest shared secret accepted (API tokens, hook tokens and HMAC secrets).
pub const MIN_SECRET_LEN: usize = 16;

/// Refuses an empty or short secret, naming its key.
pub(crate) fn check_secret(key: &str, value: &str) -> anyhow::Result<()> {
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
            m.validate(i)?;
        }
        self.api.validate()?;
        self.hooks.validate()?;
        self.promotion.validate()?;
        self.fleet.validate()?;
        self.mcp.validate()?;
        self.server.validate()?;
        self.web.validate()?;
        Ok(())
    }
}

/// The repositories the receiver accepts (`registry.repositories`).
pub use powernode_inbound::Repositories;
