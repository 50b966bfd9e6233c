//! `[server]`: how long a client may take and how many may be served at once, so slow or
//! idle clients cannot hold the receiver (`server.rs`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// How long a client may take to send a request's line and headers, counted from when
    /// the connection opens or its previous answer was sent: a connection half-sent or idle
    /// for longer is closed. This is also the keep-alive idle timeout.
    pub header_read_timeout_secs: u64,
    /// How long a request body may pause between two pieces; a stalled upload fails with
    /// `400` and its connection is closed.
    pub body_timeout_secs: u64,
    /// How long a request may take, from its headers to the start of its answer (`408`
    /// after that). Streamed answers (`/mcp` events) are not cut once they have started.
    pub request_timeout_secs: u64,
    /// Connections open at once. When they are all taken, further clients wait in the
    /// kernel's queue until one closes (idle ones close after `header_read_timeout_secs`);
    /// keep it under the process's file limit (`LimitNOFILE=` in module-webhook.service).
    pub max_connections: usize,
    /// Requests handled at once, outside `/healthz`, `/readyz` and `/metrics` (never held
    /// back, so the receiver answers its probes under load); further requests wait.
    pub max_concurrent_requests: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout_secs: 10,
            body_timeout_secs: 30,
            request_timeout_secs: 120,
            max_connections: 4_096,
            max_concurrent_requests: 512,
        }
    }
}

impl ServerConfig {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (key, v) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
        ] {
            if !(1..=3_600).contains(&v) {
                anyhow::bail!("configuration: server.{key} is {v}; use 1 to 3600 seconds");
            }
        }
        for (key, v) in [
            ("max_connections", self.max_connections),
            ("max_concurrent_requests", self.max_concurrent_requests),
        ] {
            if !(1..=1_000_000).contains(&v) {
                anyhow::bail!("configuration: server.{key} is {v}; use 1 to 1000000");
            }
        }
        Ok(())
    }
}
