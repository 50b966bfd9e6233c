//! `[fleet]`: how instances are judged.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// An instance without a report for this long is `stale` in its drift report.
    #[serde(default = "default_stale")]
    pub stale_after_secs: i64,
}

fn default_stale() -> i64 {
    900
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            stale_after_secs: default_stale(),
        }
    }
}

impl FleetConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.stale_after_secs <= 0 {
            anyhow::bail!("configuration: fleet.stale_after_secs must be positive");
        }
        Ok(())
    }
}
