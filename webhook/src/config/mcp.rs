//! `[mcp]`: the `/mcp` endpoint (the walkthrough's tool calls over the Model Context Protocol).
//!
//! MCP over HTTP is reachable from a browser tab, so a page on another site could try to
//! drive it through the user's loopback (DNS rebinding). The endpoint therefore answers only
//! requests whose `Host` is one of `allowed_hosts` and whose `Origin`, when present, is one of
//! `allowed_origins`; both default to loopback. Put the public name here when the receiver
//! sits behind a proxy.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// Serve `/mcp` at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Accepted `Host` values (a name, or `name:port`); a name without a port accepts any port.
    #[serde(default = "default_hosts")]
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` values, `scheme://host:port` (`https://ops.example.org:443`; `:*`
    /// for any port); requests without `Origin` (programs, not browsers) are not affected.
    /// An empty list refuses every request that carries an `Origin`.
    #[serde(default = "default_origins")]
    pub allowed_origins: Vec<String>,
}

fn default_enabled() -> bool {
    true
}

fn default_hosts() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec()
}

fn default_origins() -> Vec<String> {
    ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
        .map(String::from)
        .to_vec()
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            enabled: default_enabled(),
            allowed_hosts: default_hosts(),
            allowed_origins: default_origins(),
        }
    }
}

impl McpConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.enabled && self.allowed_hosts.is_empty() {
            anyhow::bail!(
                "configuration: mcp.allowed_hosts is empty; name the hosts clients reach the receiver by (or set mcp.enabled = false)"
            );
        }
        for o in &self.allowed_origins {
            let origin = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            if o != "null" && origin.is_none_or(|rest| rest.is_empty() || rest.contains('/')) {
                anyhow::bail!(
                    "configuration: mcp.allowed_origins {o:?} is not an origin (http[s]://host[:port|:*], no path)"
                );
            }
        }
        Ok(())
    }
}
