//! `[web]`: the operator's web console, served at `/` by the receiver itself.
//!
//! People log in with an API token (`[api]`); the browser then holds only a session cookie
//! (`HttpOnly`, `SameSite=Strict`). Behind a TLS-terminating proxy, the cookie is marked
//! `Secure` when the proxy says so (`X-Forwarded-Proto: https`), or always with
//! `secure_cookie = true`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve the console at all.
    pub enabled: bool,
    /// `true`: the session cookie is always `Secure` (only ever sent over HTTPS); `false`:
    /// never; unset: when the request came over HTTPS (`X-Forwarded-Proto: https`).
    pub secure_cookie: Option<bool>,
    /// Origins (`https://ops.example.org`) a form may be posted from besides the receiver's
    /// own (the scheme and `Host` of the request): the public name behind a proxy that
    /// rewrites `Host`. A POST with another `Origin` is refused.
    pub origins: Vec<String>,
    /// A session ends this long after login.
    pub session_ttl_secs: i64,
    /// How often the charts' counts are sampled (adoption of versions, drift states).
    pub sample_interval_secs: u64,
    /// Samples older than this are dropped.
    pub sample_retention_days: i64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            secure_cookie: None,
            origins: Vec::new(),
            session_ttl_secs: 8 * 3600,
            sample_interval_secs: 300,
            sample_retention_days: 30,
        }
    }
}

impl WebConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.session_ttl_secs < 60 {
            anyhow::bail!(
                "configuration: web.session_ttl_secs {} is under a minute; give at least 60",
                self.session_ttl_secs
            );
        }
        if self.sample_interval_secs < 10 {
            anyhow::bail!(
                "configuration: web.sample_interval_secs {} is under 10 seconds",
                self.sample_interval_secs
            );
        }
        if self.sample_retention_days < 1 {
            anyhow::bail!("configuration: web.sample_retention_days must be at least 1");
        }
        for o in &self.origins {
            let rest = o
                .strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
                anyhow::bail!(
                    "configuration: web.origins {o:?} is not an origin (http[s]://host[:port], no path)"
                );
            }
        }
        Ok(())
    }
}
