//! Trust-on-first-use pins: per module, the signer identity *pattern* the first accepted
//! keyless signature established. Pinned once: of two concurrent first ingests exactly one
//! wins, and the loser is verified against the winner's pin.

use super::Store;
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pin {
    /// The identity of the signature that established the pin.
    pub identity: String,
    pub issuer: String,
    /// The identity regexp later signatures must match (anchored).
    pub identity_pattern: String,
    /// The version whose ingest pinned it.
    pub version_id: String,
    pub pinned_at: i64,
}

fn pin(r: &sqlx::any::AnyRow) -> anyhow::Result<Pin> {
    let identity: String = r.try_get("identity")?;
    // Pins from before patterns existed pinned one exact identity.
    let pattern: Option<String> = r.try_get("identity_pattern")?;
    Ok(Pin {
        identity_pattern: pattern.unwrap_or_else(|| format!("^{}$", regex::escape(&identity))),
        identity,
        issuer: r.try_get("issuer")?,
        version_id: r.try_get("version_id")?,
        pinned_at: r.try_get("pinned_at")?,
    })
}

impl Store {
    /// The pin of `module`, if any.
    pub async fn pin(&self, module: &str) -> anyhow::Result<Option<Pin>> {
        let row = sqlx::query(
            "SELECT identity, issuer, identity_pattern, version_id, pinned_at FROM trust_pins WHERE module = $1",
        )
        .bind(module)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(pin).transpose()
    }

    /// Pins `candidate` for `module` unless a pin exists; returns the pin that holds (the
    /// candidate if it won, the earlier one otherwise).
    pub async fn claim_pin(&self, module: &str, candidate: &Pin) -> anyhow::Result<Pin> {
        sqlx::query(
            "INSERT INTO trust_pins (module, identity, issuer, identity_pattern, pinned_at, version_id) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(module)
        .bind(&candidate.identity)
        .bind(&candidate.issuer)
        .bind(&candidate.identity_pattern)
        .bind(self.now())
        .bind(&candidate.version_id)
        .execute(&self.pool)
        .await?;
        self.pin(module)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the pin of {module} vanished"))
    }
}
