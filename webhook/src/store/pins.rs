//! Trust-on-first-use pins: per module, the signer identity *pattern* the first accepted
//! keyless signature established. Pinned once: of two concurrent first ingests exactly one
//! wins, and the loser is verified against the winner's pin.
//!
//! Under `trust_on_first_use = "confirm"` the winner is only `proposed`: versions signed by it
//! wait until an operator confirms it (it becomes the pin) or rejects it. A rejected proposal
//! stays on record (versions signed by it are rejected), until another identity proposes.

use super::{NewAudit, NewJob, Store, audit::append_audit, jobs};
use serde::Serialize;
use sqlx::Row;

/// Where a pin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PinState {
    /// Recorded on first use; waits for an operator.
    Proposed,
    /// The pin: later signatures must match it.
    Confirmed,
    /// Refused by an operator: versions signed by it are rejected.
    Rejected,
}

impl PinState {
    pub fn as_str(self) -> &'static str {
        match self {
            PinState::Proposed => "proposed",
            PinState::Confirmed => "confirmed",
            PinState::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> anyhow::Result<PinState> {
        Ok(match s {
            "proposed" => PinState::Proposed,
            "confirmed" => PinState::Confirmed,
            "rejected" => PinState::Rejected,
            other => anyhow::bail!("unknown pin state {other:?}"),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Pin {
    /// The identity of the signature that established (or proposed) the pin.
    pub identity: String,
    pub issuer: String,
    /// The identity regexp later signatures must match (anchored).
    pub identity_pattern: String,
    /// The version whose ingest pinned (or proposed) it: the first seen.
    pub version_id: String,
    /// That version's manifest digest (absent for pins made before it was recorded).
    pub manifest_digest: Option<String>,
    /// When it was pinned or proposed (ms since the epoch).
    pub pinned_at: i64,
    pub state: PinState,
    /// Who confirmed or rejected it (`api:<token name>`).
    pub decided_by: Option<String>,
    /// By which edge (`api`, `mcp`).
    pub decided_via: Option<String>,
    pub decided_at: Option<i64>,
}

/// A pin of one module, as listed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ModulePin {
    pub module: String,
    #[serde(flatten)]
    pub pin: Pin,
}

const COLS: &str = "module, identity, issuer, identity_pattern, version_id, manifest_digest, pinned_at, state, decided_by, decided_via, decided_at";

fn pin(r: &sqlx::any::AnyRow) -> anyhow::Result<Pin> {
    let identity: String = r.try_get("identity")?;
    // Pins from before patterns existed pinned one exact identity.
    let pattern: Option<String> = r.try_get("identity_pattern")?;
    Ok(Pin {
        identity_pattern: pattern.unwrap_or_else(|| format!("^{}$", regex::escape(&identity))),
        identity,
        issuer: r.try_get("issuer")?,
        version_id: r.try_get("version_id")?,
        manifest_digest: r.try_get("manifest_digest")?,
        pinned_at: r.try_get("pinned_at")?,
        state: PinState::parse(&r.try_get::<String, _>("state")?)?,
        decided_by: r.try_get("decided_by")?,
        decided_via: r.try_get("decided_via")?,
        decided_at: r.try_get("decided_at")?,
    })
}

/// An operator's decision on a proposed pin, with what it is written with.
#[derive(Debug)]
pub struct PinDecision<'a> {
    pub module: &'a str,
    pub to: PinState,
    pub by: &'a str,
    pub via: super::Via,
    pub audit: &'a NewAudit,
    /// Re-ingests of the versions that waited for the decision (same transaction).
    pub jobs: &'a [NewJob],
}

impl Store {
    /// The pin of `module` in any state, if any.
    pub async fn pin(&self, module: &str) -> anyhow::Result<Option<Pin>> {
        let row = sqlx::query(&format!("SELECT {COLS} FROM trust_pins WHERE module = $1"))
            .bind(module)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(pin).transpose()
    }

    /// Every pin and proposal, by module.
    pub async fn pins(&self) -> anyhow::Result<Vec<ModulePin>> {
        let rows = sqlx::query(&format!("SELECT {COLS} FROM trust_pins ORDER BY module"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ModulePin {
                    module: r.try_get("module")?,
                    pin: pin(r)?,
                })
            })
            .collect()
    }

    /// Pins (or proposes, by `candidate.state`) `candidate` for `module` unless a pin or
    /// proposal exists; a rejected proposal gives way to a candidate of another identity.
    /// Returns what holds (the candidate if it won, the earlier one otherwise).
    pub async fn claim_pin(&self, module: &str, candidate: &Pin) -> anyhow::Result<Pin> {
        let now = self.now();
        sqlx::query(
            "INSERT INTO trust_pins (module, identity, issuer, identity_pattern, pinned_at, version_id, manifest_digest, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(module)
        .bind(&candidate.identity)
        .bind(&candidate.issuer)
        .bind(&candidate.identity_pattern)
        .bind(now)
        .bind(&candidate.version_id)
        .bind(&candidate.manifest_digest)
        .bind(candidate.state.as_str())
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE trust_pins SET identity = $2, issuer = $3, identity_pattern = $4, pinned_at = $5, version_id = $6, manifest_digest = $7, state = $8, decided_by = NULL, decided_via = NULL, decided_at = NULL
             WHERE module = $1 AND state = 'rejected' AND NOT (identity_pattern = $4 AND issuer = $3)",
        )
        .bind(module)
        .bind(&candidate.identity)
        .bind(&candidate.issuer)
        .bind(&candidate.identity_pattern)
        .bind(now)
        .bind(&candidate.version_id)
        .bind(&candidate.manifest_digest)
        .bind(candidate.state.as_str())
        .execute(&self.pool)
        .await?;
        self.pin(module)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the pin of {module} vanished"))
    }

    /// Confirms or rejects the proposal of `d.module`, with its audit row and the re-ingest
    /// jobs, in one transaction. `None` when no proposal waits (nothing is written).
    pub async fn decide_pin(&self, d: &PinDecision<'_>) -> anyhow::Result<Option<Pin>> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE trust_pins SET state = $2, decided_by = $3, decided_via = $4, decided_at = $5 WHERE module = $1 AND state = 'proposed'",
        )
        .bind(d.module)
        .bind(d.to.as_str())
        .bind(d.by)
        .bind(d.via.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        append_audit(&mut tx, d.audit, now).await?;
        for j in d.jobs {
            jobs::insert(&mut tx, j, now).await?;
        }
        tx.commit().await?;
        self.pin(d.module).await
    }
}
