//! `[api]`: bearer tokens and their roles.

use serde::{Deserialize, Serialize};

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

/// Who is acting: a configured token's name (the actor in the audit trail) and role. Every
/// edge (REST, MCP, the console) authenticates its own way and hands the services this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl ApiConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        for (i, t) in self.tokens.iter().enumerate() {
            super::check_secret(&format!("api.tokens[{i}] ({}) token", t.name), &t.token)?;
        }
        Ok(())
    }
}
