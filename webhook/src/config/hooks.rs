//! `[hooks]`: the shared secrets each webhook source must present.

use serde::{Deserialize, Serialize};

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

impl HooksConfig {
    /// A hook secret that is empty or short lets anyone forge deliveries: refuse it at
    /// start-up rather than accept every request that presents the same nothing.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(t) = &self.distribution_token {
            super::check_secret("hooks.distribution_token", t)?;
        }
        for (i, s) in self.gitea_secrets.iter().enumerate() {
            super::check_secret(&format!("hooks.gitea_secrets[{i}]"), s)?;
        }
        if let Some(a) = &self.harbor_auth {
            super::check_secret("hooks.harbor_auth", a)?;
        }
        Ok(())
    }
}
