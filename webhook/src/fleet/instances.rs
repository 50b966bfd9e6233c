//! Instances as the edges see them: authenticated by their own token (cached under the
//! instance-auth epoch), their drift against the template's served state, and the fleet's
//! drift summary (counts over every instance, a page of the drifting ones).

use super::{
    Fleet,
    cache::InstanceAuth,
    drift::{self, Drift, Observed},
};
use crate::{
    error::ServiceError,
    store::{InstanceId, InstanceRow, TemplateId},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OneInstance {
    pub instance: InstanceView,
}

/// The walkthrough's instance shape, plus the drift verdict.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct InstanceView {
    #[serde(flatten)]
    pub row: InstanceRow,
    pub drift: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct InstanceDrift {
    pub instance_id: crate::store::InstanceId,
    pub template_id: crate::store::TemplateId,
    #[serde(flatten)]
    pub drift: Drift,
}

/// `sha256` of a token, hex (what the instances table keeps).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn observed(row: &InstanceRow) -> Observed<'_> {
    Observed {
        running: &row.running_module_digests,
        composefs_digest: row.composefs_digest.as_deref(),
        reported_state_id: row.desired_state_id.as_deref(),
        status: row.status.as_deref(),
        last_report_at: row.last_report_at,
        modules: &row.modules,
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SummaryQuery {
    pub template: Option<TemplateId>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Default, Serialize, schemars::JsonSchema)]
pub struct Counts {
    pub total: u64,
    pub in_sync: u64,
    pub drifting: u64,
    pub stale: u64,
    pub failed: u64,
    pub rejected: u64,
    pub never_reported: u64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Drifting {
    pub id: crate::store::InstanceId,
    pub template_id: crate::store::TemplateId,
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Summary {
    pub template_id: Option<TemplateId>,
    pub counts: Counts,
    /// The drifting instances after `cursor`, at most `limit`, ordered by id.
    pub drifting: Vec<Drifting>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

impl Fleet {
    /// The instance `id` as it last reported, or [`ServiceError::NotFound`].
    pub async fn instance(&self, id: &InstanceId) -> Result<InstanceRow, ServiceError> {
        self.store
            .instance(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no instance {id}")))
    }

    /// The instance `id` with its drift verdict.
    pub async fn instance_view(&self, id: &InstanceId) -> Result<OneInstance, ServiceError> {
        let row = self.instance(id).await?;
        let d = self.drift_of(&row).await?;
        Ok(OneInstance {
            instance: InstanceView {
                row,
                drift: d.drift,
            },
        })
    }

    /// The drift of instance `id`, with its reasons.
    pub async fn instance_drift(&self, id: &InstanceId) -> Result<InstanceDrift, ServiceError> {
        let row = self.instance(id).await?;
        let drift = self.drift_of(&row).await?;
        Ok(InstanceDrift {
            instance_id: id.to_owned(),
            template_id: row.template_id,
            drift,
        })
    }

    /// The instance `id`, authenticated by its own token (`None`: no such instance, or not
    /// its token) (constant-time on the hashes). The token is cached under the
    /// instance-auth epoch, re-read at most every `STATE_TTL` (250 ms), so a rotation or
    /// deletion on any replica is seen here within a quarter second.
    pub async fn instance_auth(
        &self,
        id: &InstanceId,
        presented: Option<&str>,
    ) -> Result<Option<InstanceAuth>, ServiceError> {
        let Some(presented) = presented else {
            return Ok(None);
        };
        let epoch = match self.cache.epoch() {
            Some(e) => e,
            None => {
                let began = self.cache.now();
                let e = self.store.instance_auth_epoch().await?;
                self.cache.set_epoch(e, began);
                e
            }
        };
        let auth = match self.cache.instance(id, epoch) {
            Some(a) => a,
            None => {
                // Read after the epoch: if a rotation commits in between, the epoch moves on
                // and this entry is not used past the next re-read.
                let Some(row) = self.store.instance(id).await? else {
                    return Ok(None);
                };
                let a = InstanceAuth {
                    token_sha256: row.token_sha256,
                    template_id: row.template_id,
                };
                self.cache.set_instance(id, a.clone(), epoch);
                a
            }
        };
        let ok: bool = token_hash(presented)
            .as_bytes()
            .ct_eq(auth.token_sha256.as_bytes())
            .into();
        Ok(ok.then_some(auth))
    }

    /// The drift of one instance against its template's served state.
    pub async fn drift_of(&self, row: &InstanceRow) -> Result<Drift, ServiceError> {
        let yanked = self.store.yanked_digests().await?;
        let desired = self.desired(&row.template_id, &yanked).await?;
        Ok(drift::drift(
            desired.as_ref(),
            observed(row),
            self.store.now(),
            self.stale_after_ms,
        ))
    }

    /// The fleet's drift: counts over every instance (of the template), and one page of
    /// the drifting ones.
    pub async fn drift_summary(&self, q: SummaryQuery) -> Result<Summary, ServiceError> {
        let limit = q.limit.unwrap_or(100).clamp(1, 1000) as usize;
        if let Some(t) = &q.template {
            self.template(t).await?;
        }
        let mut counts = Counts::default();
        let mut drifting = Vec::new();
        let mut next_cursor = None;
        self.verdicts(q.template.as_ref(), |v| {
            counts.total += 1;
            match v.status.as_deref() {
                None => counts.never_reported += 1,
                Some("failed") => counts.failed += 1,
                Some("rejected") => counts.rejected += 1,
                _ => {}
            }
            if v.stale {
                counts.stale += 1;
            }
            if !v.drift() {
                counts.in_sync += 1;
                return Ok(());
            }
            counts.drifting += 1;
            if q.cursor.as_deref().is_some_and(|c| v.id.as_str() <= c) {
                return Ok(());
            }
            if drifting.len() < limit {
                drifting.push(Drifting {
                    id: v.id,
                    template_id: v.template_id,
                    reasons: v.reasons,
                });
            } else if next_cursor.is_none() {
                next_cursor = drifting.last().map(|d: &Drifting| d.id.to_string());
            }
            Ok(())
        })
        .await?;
        Ok(Summary {
            template_id: q.template,
            counts,
            drifting,
            next_cursor,
        })
    }
}
