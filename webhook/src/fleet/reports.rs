//! A report arriving: judged at once against what its template serves now, and recorded
//! with that verdict through the group commit ([`crate::store::ReportLog`]). Judging here,
//! once per report, is what lets the fleet's drift summary and the console's fleet page read
//! a word per instance instead of judging every stored report again ([`super::judge`]).

use super::{
    Fleet,
    drift::{self, Desired, Observed},
};
use crate::{
    error::ServiceError,
    store::{DriftState, InstanceId, JudgedReport, Report, StoredVerdict, TemplateId},
};
use sha2::{Digest as _, Sha256};
use std::{collections::BTreeMap, sync::Arc};

/// The yanked versions as drift sees them, and their fingerprint.
#[derive(Debug)]
pub struct Yanked {
    /// Composefs digest → `module version`.
    pub digests: BTreeMap<String, String>,
    pub fingerprint: String,
}

impl Yanked {
    pub fn of(digests: BTreeMap<String, String>) -> Yanked {
        let text = serde_json::to_string(&digests).unwrap_or_default();
        let fingerprint = hex::encode(&Sha256::digest(text.as_bytes())[..8]);
        Yanked {
            digests,
            fingerprint,
        }
    }
}

/// What a verdict is judged against: the served state `state_id` with the yanked versions
/// of fingerprint `yanked`. A stored verdict whose key is not this one is judged again.
pub fn against_key(state_id: &str, yanked: &str) -> String {
    format!("{state_id} {yanked}")
}

/// What a template's reports are judged against now.
#[derive(Debug)]
pub struct Against {
    /// `None` while the template serves no state (such verdicts are never reused).
    pub key: Option<String>,
    pub desired: Option<Desired>,
}

/// The verdict on `report` received at `now`, judged against `against` (pure).
pub fn verdict(against: &Against, report: &Report, now: i64, stale_after_ms: i64) -> StoredVerdict {
    let d = drift::drift(
        against.desired.as_ref(),
        Observed {
            running: &report.running_module_digests,
            composefs_digest: report.composefs_digest.as_deref(),
            reported_state_id: Some(report.desired_state_id.as_str()),
            status: Some(report.status.as_str()),
            last_report_at: Some(now),
            modules: &report.modules,
        },
        now,
        stale_after_ms,
    );
    StoredVerdict {
        judged_against: against.key.clone(),
        state: DriftState::of(&d),
        reasons: d.reasons,
    }
}

impl Fleet {
    /// The yanked versions, read at most once per [`super::cache::STATE_TTL`].
    pub async fn yanked(&self) -> Result<Arc<Yanked>, ServiceError> {
        if let Some(y) = self.cache.yanked() {
            return Ok(y);
        }
        let y = Arc::new(Yanked::of(self.store.yanked_digests().await?));
        self.cache.set_yanked(y.clone());
        Ok(y)
    }

    /// What `template`'s reports are judged against, read at most once per
    /// [`super::cache::STATE_TTL`] (and again at once when this replica recomputes it).
    pub async fn against(&self, template: &TemplateId) -> Result<Arc<Against>, ServiceError> {
        if let Some(a) = self.cache.against(template) {
            return Ok(a);
        }
        let yanked = self.yanked().await?;
        let desired = self.desired(template, &yanked.digests).await?;
        let a = Arc::new(Against {
            key: desired
                .as_ref()
                .map(|d| against_key(&d.state_id, &yanked.fingerprint)),
            desired,
        });
        self.cache.set_against(template, a.clone());
        Ok(a)
    }

    /// Judges the report instance `id` of `template` sent and records both; `false` if
    /// there is no such instance. Durable when it returns.
    pub async fn record_report(
        &self,
        id: &InstanceId,
        template: &TemplateId,
        report: Report,
    ) -> Result<bool, ServiceError> {
        let against = self.against(template).await?;
        let verdict = verdict(&against, &report, self.store.now(), self.stale_after_ms);
        let found = self
            .reports
            .record(vec![JudgedReport {
                instance_id: id.clone(),
                report,
                verdict,
            }])
            .await?;
        Ok(found.first().copied().unwrap_or(false))
    }
}
