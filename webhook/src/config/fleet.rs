//! `[fleet]`: how instances are judged.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// An instance without a report for this long is `stale` in its drift report.
    #[serde(default = "default_stale")]
    pub stale_after_secs: i64,
    /// How long a signed desired state is valid (`expires_at - issued_at`); nodes refuse an
    /// expired one. The receiver re-issues a served state (same content, next sequence)
    /// once less than half of this is left, when it recomputes or serves it.
    #[serde(default = "default_validity")]
    pub state_validity_secs: i64,
    /// Each instance may send at most this many reports per `report_window_secs` (per
    /// replica; a token bucket that refills evenly). More are answered 429 with
    /// `Retry-After`. An agent sends about one a minute.
    #[serde(default = "default_max_reports")]
    pub max_reports: u32,
    #[serde(default = "default_report_window")]
    pub report_window_secs: u64,
    /// The private key (PEM, ECDSA P-256, mode 0600) that signs desired states
    /// (`MODULE_WEBHOOK__FLEET__SIGNING_KEY`). Every replica must be given the same one; a
    /// replica whose keys share none with those the replicas last started with refuses to
    /// start. Unset: `data_dir/receiver-key.pem`, generated on first start (one host only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// During a key rotation, the incoming key: every state is signed with both keys, so
    /// nodes trusting either accept it (runbooks/rotating-the-receiver-key.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_signing_key: Option<PathBuf>,
}

fn default_max_reports() -> u32 {
    20
}

fn default_report_window() -> u64 {
    60
}

fn default_validity() -> i64 {
    7 * 24 * 3600
}

fn default_stale() -> i64 {
    900
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            stale_after_secs: default_stale(),
            state_validity_secs: default_validity(),
            max_reports: default_max_reports(),
            report_window_secs: default_report_window(),
            signing_key: None,
            next_signing_key: None,
        }
    }
}

impl FleetConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.stale_after_secs <= 0 {
            anyhow::bail!("configuration: fleet.stale_after_secs must be positive");
        }
        if self.state_validity_secs < 60 {
            anyhow::bail!(
                "configuration: fleet.state_validity_secs must be at least 60 (a node refuses an expired desired state)"
            );
        }
        if self.max_reports == 0 || self.report_window_secs == 0 {
            anyhow::bail!(
                "configuration: fleet.max_reports and fleet.report_window_secs must be positive (instances could never report)"
            );
        }
        if self.next_signing_key.is_some() && self.next_signing_key == self.signing_key {
            anyhow::bail!(
                "configuration: fleet.next_signing_key is fleet.signing_key; name the new key (runbooks/rotating-the-receiver-key.md)"
            );
        }
        Ok(())
    }
}
