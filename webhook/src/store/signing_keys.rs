//! The key ids the replicas sign desired states with (one row), so a replica configured
//! with other keys can tell and refuse to start (`fleet::key::Keys::register`).

use super::Store;
use sqlx::Row;
use std::collections::BTreeSet;

impl Store {
    /// The recorded key ids, if any replica recorded them yet.
    pub async fn signing_keyids(&self) -> anyhow::Result<Option<BTreeSet<String>>> {
        let row = sqlx::query("SELECT keyids FROM receiver_signing_keys WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let text: String = r.try_get("keyids")?;
            Ok(serde_json::from_str(&text)?)
        })
        .transpose()
    }

    /// Records `keyids`, compare-and-set: over `expected` (`None`: only if nothing is
    /// recorded yet). False when another replica recorded something else first.
    pub async fn record_signing_keyids(
        &self,
        keyids: &BTreeSet<String>,
        expected: Option<&BTreeSet<String>>,
    ) -> anyhow::Result<bool> {
        let text = serde_json::to_string(keyids)?;
        let done = match expected {
            None => sqlx::query(
                "INSERT INTO receiver_signing_keys (id, keyids, recorded_at) VALUES (1, $1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&text)
            .bind(self.now())
            .execute(&self.pool)
            .await?,
            Some(old) => sqlx::query(
                "UPDATE receiver_signing_keys SET keyids = $1, recorded_at = $2 WHERE id = 1 AND keyids = $3",
            )
            .bind(&text)
            .bind(self.now())
            .bind(serde_json::to_string(old)?)
            .execute(&self.pool)
            .await?,
        };
        Ok(done.rows_affected() == 1)
    }
}
