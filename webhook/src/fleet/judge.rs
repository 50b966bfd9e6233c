//! Judging the whole fleet. Each report was judged when it arrived (`fleet::reports`), and
//! the verdict was stored with it, naming the served state and the yanked versions it was
//! judged against: [`Fleet::verdicts`] walks those words, a page at a time, and judges in
//! full only the instances whose verdict no longer holds (their template serves another
//! state, a version was yanked or unyanked, the report went stale, or no receiver judged
//! it). The API's drift summary and the console's fleet page walk the fleet that way; the
//! chart sampler, which also counts the versions each instance runs, reads every report
//! through [`Fleet::judge_reports`]. The console's one-word states are [`DriftState`].

use super::reports::{Yanked, against_key};
use super::{
    Fleet,
    drift::{self, Drift, Observed},
};
use crate::{
    error::ServiceError,
    store::{InstanceId, Rejudged, StoredReport, StoredVerdict, TemplateId, VerdictRow},
};
use powernode_module::desired_state::DesiredState;
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

pub use crate::store::DriftState;

impl DriftState {
    /// The one state an instance's drift puts it in, the most urgent first: no report,
    /// stale, failed (the apply or a unit), a desired module or package missing, anything
    /// else that differs.
    pub fn of(d: &Drift) -> DriftState {
        if d.status.is_none() && d.reported_state_id.is_none() && d.stale {
            DriftState::Unreported
        } else if d.stale {
            DriftState::Stale
        } else if matches!(d.status.as_deref(), Some("failed" | "rejected"))
            || !d.unit_failed.is_empty()
        {
            DriftState::Failed
        } else if !d.missing.is_empty() || !d.package_missing.is_empty() {
            DriftState::Missing
        } else if d.drift {
            DriftState::Outdated
        } else {
            DriftState::InSync
        }
    }
}

/// One instance as the fleet page lists it.
#[derive(Debug, Clone)]
pub struct Placed {
    pub id: crate::store::InstanceId,
    pub template_id: crate::store::TemplateId,
    pub state: DriftState,
    /// The first reason, for people (empty when in sync).
    pub reason: String,
    pub last_report_at: Option<i64>,
}

/// One instance's drift as [`Fleet::verdicts`] gives it.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub id: InstanceId,
    pub template_id: TemplateId,
    /// The last reported status (`applied`, `failed`, `rejected`; `None`: never reported).
    pub status: Option<String>,
    pub last_report_at: Option<i64>,
    pub state: DriftState,
    pub stale: bool,
    /// One sentence per reason, for people (empty: in sync).
    pub reasons: Vec<String>,
}

impl Verdict {
    /// The verdict of a report judged in full (`None`: in sync).
    fn of(row: StoredReport, d: Option<Drift>) -> Verdict {
        let (state, stale, reasons) = match d {
            None => (DriftState::InSync, false, Vec::new()),
            Some(d) => (DriftState::of(&d), d.stale, d.reasons),
        };
        Verdict {
            id: row.id,
            template_id: row.template_id,
            status: row.status,
            last_report_at: row.last_report_at,
            state,
            stale,
            reasons,
        }
    }

    /// Whether the instance drifts (any reason at all).
    pub fn drift(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// A stored report judged in full against `desired`: `None` when it is the served state
/// exactly, judged on the stored text without parsing it (most of a healthy fleet), else
/// its drift.
fn judge(
    desired: Option<&drift::Desired>,
    row: &StoredReport,
    now: i64,
    stale_ms: i64,
) -> Result<Option<Drift>, ServiceError> {
    if desired.is_some_and(|d| d.in_sync_as_stored(row, now, stale_ms)) {
        return Ok(None);
    }
    let running = row.running().map_err(ServiceError::Internal)?;
    Ok(Some(drift::drift(
        desired,
        Observed {
            running: &running,
            composefs_digest: row.composefs_digest.as_deref(),
            reported_state_id: row.reported_state_id.as_deref(),
            status: row.status.as_deref(),
            last_report_at: row.last_report_at,
            modules: &row.modules,
        },
        now,
        stale_ms,
    )))
}

/// How long [`Fleet::drift_states_recent`] reuses one judgement of the whole fleet.
pub const FLEET_FRESH: Duration = Duration::from_secs(2);

/// One judgement of the fleet and when it was made (ms, by the store's clock).
pub type Judged = (i64, Arc<Vec<Placed>>);

impl Fleet {
    /// The served state of `template` as drift compares against it, the yanked digests
    /// marked; `None` while it serves none.
    pub(super) async fn desired(
        &self,
        template: &TemplateId,
        yanked: &BTreeMap<String, String>,
    ) -> Result<Option<drift::Desired>, ServiceError> {
        let Some(st) = self.store.served_state(template).await? else {
            return Ok(None);
        };
        let doc: DesiredState = serde_json::from_value(st.document).map_err(anyhow::Error::from)?;
        Ok(Some(
            drift::Desired::of(&st.state_id, &doc).with_yanked(yanked.clone()),
        ))
    }

    /// Calls `each` with every instance's last report (of `template`, if given), in id
    /// order, and its drift: `None` when the report is the served state exactly, judged on
    /// the stored text without parsing it (most of a healthy fleet), else the full drift.
    pub async fn judge_reports(
        &self,
        template: Option<&TemplateId>,
        mut each: impl FnMut(&StoredReport, Option<Drift>) -> Result<(), ServiceError>,
    ) -> Result<(), ServiceError> {
        let now = self.store.now();
        let stale_ms = self.stale_after_ms;
        let yanked = self.store.yanked_digests().await?;
        let mut states: BTreeMap<TemplateId, Option<drift::Desired>> = BTreeMap::new();
        let mut after = String::new();
        loop {
            let page = self.store.reports_page(template, &after, 5000).await?;
            let Some(last) = page.last() else { break };
            after = last.id.to_string();
            for row in &page {
                if !states.contains_key(&row.template_id) {
                    let d = self.desired(&row.template_id, &yanked).await?;
                    states.insert(row.template_id.clone(), d);
                }
                let d = judge(states[&row.template_id].as_ref(), row, now, stale_ms)?;
                each(row, d)?;
            }
        }
        Ok(())
    }

    /// Calls `each` with every instance (of `template`, if given), in id order, and its
    /// verdict: the one stored with its report while it still holds, else judged in full. A
    /// report judged in full against a newer state or yanked set than its stored verdict
    /// gets the verdict it would get arriving now, kept for the next walk (after a
    /// promotion, the first walk judges the templates it changed, the next ones read).
    pub async fn verdicts(
        &self,
        template: Option<&TemplateId>,
        mut each: impl FnMut(Verdict) -> Result<(), ServiceError>,
    ) -> Result<(), ServiceError> {
        let now = self.store.now();
        let stale_ms = self.stale_after_ms;
        let yanked = Yanked::of(self.store.yanked_digests().await?);
        // What a verdict must have been judged against to hold, per template.
        let keys: HashMap<TemplateId, String> = self
            .store
            .served_state_heads()
            .await?
            .into_iter()
            .map(|(t, s, _)| (t, against_key(&s, &yanked.fingerprint)))
            .collect();
        let holds = |v: &VerdictRow| {
            v.state.is_some()
                && v.last_report_at.is_some_and(|at| now - at <= stale_ms)
                && v.judged_against.is_some()
                && v.judged_against.as_ref() == keys.get(&v.template_id)
        };
        let mut states: BTreeMap<TemplateId, Option<drift::Desired>> = BTreeMap::new();
        let mut rejudged = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.store.verdicts_page(template, &after, 5000).await?;
            let Some(last) = page.last() else { break };
            after = last.id.to_string();
            let again: Vec<&InstanceId> =
                page.iter().filter(|v| !holds(v)).map(|v| &v.id).collect();
            let mut reports = if again.is_empty() {
                HashMap::new()
            } else {
                self.store.reports_of(&again).await?
            };
            for v in page.iter() {
                if holds(v) {
                    let state = v.state.unwrap_or(DriftState::InSync);
                    let reasons = if state == DriftState::InSync {
                        Vec::new()
                    } else {
                        v.reasons().map_err(ServiceError::Internal)?
                    };
                    each(Verdict {
                        id: v.id.clone(),
                        template_id: v.template_id.clone(),
                        status: v.status.clone(),
                        last_report_at: v.last_report_at,
                        state,
                        stale: false,
                        reasons,
                    })?;
                    continue;
                }
                // Deleted since the page was read: not in the fleet any more.
                let Some(row) = reports.remove(&v.id) else {
                    continue;
                };
                if !states.contains_key(&row.template_id) {
                    let d = self.desired(&row.template_id, &yanked.digests).await?;
                    states.insert(row.template_id.clone(), d);
                }
                let desired = states[&row.template_id].as_ref();
                let d = judge(desired, &row, now, stale_ms)?;
                // The verdict the report would get arriving now, kept for the next walk
                // (labelled with the state it was judged against, which may be newer
                // than `keys` says).
                if let (Some(desired), Some(at)) = (desired, row.last_report_at) {
                    let key = against_key(&desired.state_id, &yanked.fingerprint);
                    if v.judged_against.as_ref() != Some(&key) {
                        let fresh = match now - at <= stale_ms {
                            true => d.clone(),
                            false => judge(Some(desired), &row, at, stale_ms)?,
                        };
                        rejudged.push(Rejudged {
                            instance_id: row.id.clone(),
                            report_at: at,
                            verdict: StoredVerdict {
                                judged_against: Some(key),
                                state: fresh.as_ref().map_or(DriftState::InSync, DriftState::of),
                                reasons: fresh.map(|d| d.reasons).unwrap_or_default(),
                            },
                        });
                    }
                }
                each(Verdict::of(row, d))?;
            }
        }
        if !rejudged.is_empty() {
            // Kept in the background: the answer does not wait for it, and a failure loses
            // nothing (the next walk judges those instances again).
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.keep_verdicts(&rejudged).await {
                    tracing::warn!(error = %format!("{e:#}"), "keeping re-judged verdicts failed");
                }
            });
        }
        Ok(())
    }

    /// Every instance with its [`DriftState`], ordered by id.
    pub async fn drift_states(&self) -> Result<Vec<Placed>, ServiceError> {
        let mut out = Vec::new();
        self.verdicts(None, |v| {
            out.push(Placed {
                reason: v.reasons.into_iter().next().unwrap_or_default(),
                id: v.id,
                template_id: v.template_id,
                state: v.state,
                last_report_at: v.last_report_at,
            });
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// [`Fleet::drift_states`] as a page shows it: judging 10,000 instances takes tens of
    /// milliseconds, so a judgement at most [`FLEET_FRESH`] old (by the store's clock, which
    /// tests move) is shown again.
    pub async fn drift_states_recent(&self) -> Result<Arc<Vec<Placed>>, ServiceError> {
        let now = self.store.now();
        if let Some((at, placed)) = self.cache.judged()
            && (0..FLEET_FRESH.as_millis() as i64).contains(&(now - at))
        {
            return Ok(placed);
        }
        let placed = Arc::new(self.drift_states().await?);
        self.cache.set_judged((now, placed.clone()));
        Ok(placed)
    }
}
