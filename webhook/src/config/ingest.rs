//! `[ingest]`: workers, retries, leases and limits of the ingest queue.

use serde::{Deserialize, Serialize};

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
