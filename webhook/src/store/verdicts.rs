//! Drift verdicts kept with each instance's last report: judged once, when the report
//! arrives (`fleet::reports`), so that walking the fleet reads a word per instance instead
//! of parsing and judging 10,000 reports. A verdict names what it was judged against; the
//! fleet walk uses it only while that still holds and judges the rest in full.

use super::{InstanceId, Report, Store, StoredReport, TemplateId, codec};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::HashMap;

/// Where an instance stands, in one word, the most urgent first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DriftState {
    InSync,
    Outdated,
    Missing,
    Failed,
    Stale,
    Unreported,
}

impl DriftState {
    pub const ALL: [DriftState; 6] = [
        DriftState::InSync,
        DriftState::Outdated,
        DriftState::Missing,
        DriftState::Failed,
        DriftState::Stale,
        DriftState::Unreported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::InSync => "in_sync",
            DriftState::Outdated => "outdated",
            DriftState::Missing => "missing",
            DriftState::Failed => "failed",
            DriftState::Stale => "stale",
            DriftState::Unreported => "unreported",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            DriftState::InSync => "in sync",
            DriftState::Outdated => "outdated",
            DriftState::Missing => "missing",
            DriftState::Failed => "failed",
            DriftState::Stale => "stale",
            DriftState::Unreported => "never reported",
        }
    }

    pub fn parse(s: &str) -> Option<DriftState> {
        DriftState::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// A report's verdict as judged when it arrived (a fresh report is never stale).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVerdict {
    /// What it was judged against (`None`: the template served nothing to judge against).
    pub judged_against: Option<String>,
    pub state: DriftState,
    /// One sentence per reason (empty when in sync).
    pub reasons: Vec<String>,
}

impl StoredVerdict {
    /// The `drift_reasons` column: the reasons as JSON, `NULL` when there are none.
    fn reasons_text(&self) -> anyhow::Result<Option<String>> {
        Ok((!self.reasons.is_empty())
            .then(|| serde_json::to_string(&self.reasons))
            .transpose()?)
    }
}

/// A report, the instance it is from and its verdict: one row's write.
#[derive(Debug, Clone)]
pub struct JudgedReport {
    pub instance_id: crate::store::InstanceId,
    pub report: Report,
    pub verdict: StoredVerdict,
}

/// A verdict the fleet walk re-judged for a report already stored.
#[derive(Debug, Clone)]
pub struct Rejudged {
    pub instance_id: crate::store::InstanceId,
    /// When the report it judges was received: the verdict is kept only if it is still
    /// the instance's last report.
    pub report_at: i64,
    pub verdict: StoredVerdict,
}

/// An instance's last report as the fleet walk first reads it: its verdict, not its content.
#[derive(Debug, Clone)]
pub struct VerdictRow {
    pub id: InstanceId,
    pub template_id: TemplateId,
    pub last_report_at: Option<i64>,
    pub status: Option<String>,
    pub judged_against: Option<String>,
    pub state: Option<DriftState>,
    /// The stored reasons, still JSON text (decoded only for the drifting).
    pub reasons: Option<String>,
}

impl VerdictRow {
    /// The stored reasons (empty when in sync).
    pub fn reasons(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .reasons
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?
            .unwrap_or_default())
    }
}

impl Store {
    /// Records reports with their verdicts in one transaction (each row keeps the last);
    /// returns, per report, whether its instance exists. Rows are updated in id order, so
    /// two batches touching the same instances wait for each other instead of deadlocking.
    /// Reports come here through [`super::ReportLog`]. Durable when it returns.
    pub async fn record_reports(&self, reports: &[&JudgedReport]) -> anyhow::Result<Vec<bool>> {
        let now = self.now();
        let mut order: Vec<usize> = (0..reports.len()).collect();
        order.sort_by(|&a, &b| reports[a].instance_id.cmp(&reports[b].instance_id));
        let mut found = vec![false; reports.len()];
        let mut tx = self.pool.begin().await?;
        for i in order {
            let JudgedReport {
                instance_id,
                report: r,
                verdict: v,
            } = reports[i];
            let n = sqlx::query(
                "UPDATE instances SET last_report_at = $2, reported_state_id = $3, running_module_digests = $4, composefs_digest = $5, status = $6, message = $7, module_observations = $8, state_bytes = $9, judged_against = $10, drift_state = $11, drift_reasons = $12 WHERE id = $1",
            )
            .bind(instance_id)
            .bind(now)
            .bind(&r.desired_state_id)
            .bind(serde_json::to_string(&r.running_module_digests)?)
            .bind(&r.composefs_digest)
            .bind(&r.status)
            .bind(&r.message)
            .bind(
                (!r.modules.is_empty())
                    .then(|| serde_json::to_string(&r.modules))
                    .transpose()?,
            )
            .bind(r.state_bytes)
            .bind(&v.judged_against)
            .bind(v.state.as_str())
            .bind(v.reasons_text()?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            found[i] = n == 1;
        }
        tx.commit().await?;
        Ok(found)
    }

    /// Keeps verdicts the fleet walk re-judged, each only if its report is still the
    /// instance's last (a report arriving meanwhile brought its own verdict).
    pub async fn keep_verdicts(&self, verdicts: &[Rejudged]) -> anyhow::Result<()> {
        let mut sorted: Vec<&Rejudged> = verdicts.iter().collect();
        sorted.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        for chunk in sorted.chunks(1000) {
            let mut tx = self.pool.begin().await?;
            for r in chunk {
                let v = &r.verdict;
                sqlx::query(
                    "UPDATE instances SET judged_against = $3, drift_state = $4, drift_reasons = $5 WHERE id = $1 AND last_report_at = $2",
                )
                .bind(&r.instance_id)
                .bind(r.report_at)
                .bind(&v.judged_against)
                .bind(v.state.as_str())
                .bind(v.reasons_text()?)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// A page of instances' verdicts (of `template_id`, if given) after `after`, by id.
    pub async fn verdicts_page(
        &self,
        template_id: Option<&TemplateId>,
        after: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<VerdictRow>> {
        let mut sql = "SELECT id, template_id, last_report_at, status, judged_against, drift_state, drift_reasons FROM instances WHERE id > $1".to_owned();
        if template_id.is_some() {
            sql.push_str(" AND template_id = $3");
        }
        sql.push_str(" ORDER BY id LIMIT $2");
        let mut q = sqlx::query(&sql).bind(after).bind(limit);
        if let Some(t) = template_id {
            q = q.bind(t);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(VerdictRow {
                    id: r.try_get("id")?,
                    template_id: r.try_get("template_id")?,
                    last_report_at: r.try_get("last_report_at")?,
                    status: r.try_get("status")?,
                    judged_against: r.try_get("judged_against")?,
                    state: codec::opt_text_enum(r, "drift_state")?,
                    reasons: r.try_get("drift_reasons")?,
                })
            })
            .collect()
    }

    /// The stored last reports of the instances `ids` (those that exist), by id.
    pub async fn reports_of(
        &self,
        ids: &[&InstanceId],
    ) -> anyhow::Result<HashMap<InstanceId, StoredReport>> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {} FROM instances WHERE id IN ({})",
                super::instances::REPORT_COLS,
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&self.pool).await? {
                let report = super::instances::stored_report(&r)?;
                out.insert(report.id.clone(), report);
            }
        }
        Ok(out)
    }
}
