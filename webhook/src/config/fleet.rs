//! `[fleet]`: how instances are judged.

use serde::{Deserialize, Serialize};

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
        Ok(())
    }
}
