//! Every call from a console page into the receiver's domain, in one place: the pages only
//! authenticate, parse, call one of these and render. Each is the service function the REST
//! API and MCP call too (`promotion::Promotions::request`, `fleet::Fleet::{assign, unassign,
//! drift_of}`, `jobs::dead_letters::retry`), so the role checks, the policy, the engine, the
//! audit trail (`via = web`) and the messages are theirs. The fleet page's drift states come
//! from `fleet::drift`, the pure comparison the API's drift summary uses.

use super::view::WebError;
use crate::{
    config::Caller,
    fleet::{
        drift::{self, Drift, Observed},
        templates::NewAssignment,
    },
    http::AppState,
    lifecycle::Request,
    promotion::Decision,
    store::{InstanceRow, Lifecycle, Via},
};
use powernode_module::desired_state::DesiredState;
use std::collections::BTreeMap;

/// Promotes version `id` to `to`: done, pending with what is missing, or refused.
pub async fn promote(
    s: &AppState,
    caller: &Caller,
    id: &str,
    to: Lifecycle,
    note: Option<String>,
) -> Result<Decision, WebError> {
    let request = Request::Promote { to };
    let d = s
        .promotions
        .request(caller, Via::Web, id, request, note)
        .await?;
    Ok(d.decision)
}

/// Yanks version `id` with `reason`.
pub async fn yank(
    s: &AppState,
    caller: &Caller,
    id: &str,
    reason: String,
) -> Result<Decision, WebError> {
    let request = Request::Yank { reason };
    let d = s
        .promotions
        .request(caller, Via::Web, id, request, None)
        .await?;
    Ok(d.decision)
}

/// Assigns `module` (at versions matching `requirement`, if any) to `template`; the
/// sentence says what the template's instances will get.
pub async fn assign(
    s: &AppState,
    caller: &Caller,
    template: &str,
    module: &str,
    requirement: Option<String>,
) -> Result<String, WebError> {
    let b = NewAssignment {
        module_name: module.to_owned(),
        requirement,
    };
    Ok(s.fleet.assign(caller, Via::Web, template, b).await?.message)
}

/// Removes `module` from `template`.
pub async fn unassign(
    s: &AppState,
    caller: &Caller,
    template: &str,
    module: &str,
) -> Result<String, WebError> {
    let a = s.fleet.unassign(caller, Via::Web, template, module).await?;
    Ok(a.message)
}

/// Puts dead-lettered job `id` back in the queue with a fresh attempt budget (audited).
pub async fn retry_dead_letter(s: &AppState, caller: &Caller, id: &str) -> Result<(), WebError> {
    Ok(crate::jobs::dead_letters::retry(&s.store, caller, Via::Web, id).await?)
}

/// Where an instance stands, in the words of the fleet page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

/// One instance on the fleet page.
#[derive(Debug, Clone)]
pub struct Placed {
    pub id: String,
    pub template_id: String,
    pub state: DriftState,
    /// The first reason, for people (empty when in sync).
    pub reason: String,
    pub last_report_at: Option<i64>,
}

/// The drift of one instance against its template's served state.
pub async fn instance_drift(s: &AppState, row: &InstanceRow) -> Result<Drift, WebError> {
    Ok(s.fleet.drift_of(row).await?)
}

/// How long the fleet page reuses one judgement of the whole fleet.
const FLEET_FRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// One judgement of the fleet, per database (one receiver per process, several in tests):
/// when it was made, by the wall clock and by the receiver's.
type Judged = (std::time::Instant, i64, std::sync::Arc<Vec<Placed>>);

/// [`fleet_states`] as the fleet page shows it: judging 10,000 instances takes tens of
/// milliseconds, so a judgement at most [`FLEET_FRESH`] old is shown again (the page says
/// so). The sampler always judges afresh.
pub async fn fleet_states_recent(s: &AppState) -> anyhow::Result<std::sync::Arc<Vec<Placed>>> {
    static RECENT: std::sync::OnceLock<std::sync::Mutex<BTreeMap<String, Judged>>> =
        std::sync::OnceLock::new();
    let recent = RECENT.get_or_init(Default::default);
    let key = &s.config.database_url;
    let now = s.store.now();
    if let Some((at, clock, placed)) = recent.lock().ok().and_then(|m| m.get(key).cloned())
        && at.elapsed() < FLEET_FRESH
        && (now - clock).abs() < FLEET_FRESH.as_millis() as i64
    {
        return Ok(placed);
    }
    let placed = std::sync::Arc::new(fleet_states(s).await?);
    if let Ok(mut m) = recent.lock() {
        m.insert(
            key.clone(),
            (std::time::Instant::now(), now, placed.clone()),
        );
    }
    Ok(placed)
}

/// Every instance with its drift state, ordered by id: read a page of stored reports at a
/// time; most of a healthy fleet is judged in sync on the stored text without parsing it.
pub async fn fleet_states(s: &AppState) -> anyhow::Result<Vec<Placed>> {
    let now = s.store.now();
    let stale_ms = s.config.fleet.stale_after_secs * 1000;
    let yanked = s.store.yanked_digests().await?;
    let mut states: BTreeMap<String, Option<drift::Desired>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = s.store.reports_page(None, &after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for row in &page {
            if !states.contains_key(&row.template_id) {
                let desired = match s.store.served_state(&row.template_id).await? {
                    Some(st) => Some(
                        drift::Desired::of(
                            &st.state_id,
                            &serde_json::from_value::<DesiredState>(st.document)
                                .map_err(anyhow::Error::from)?,
                        )
                        .with_yanked(yanked.clone()),
                    ),
                    None => None,
                };
                states.insert(row.template_id.clone(), desired);
            }
            let desired = states[&row.template_id].as_ref();
            let (state, reason) =
                if desired.is_some_and(|d| d.in_sync_as_stored(row, now, stale_ms)) {
                    (DriftState::InSync, String::new())
                } else {
                    let running = row.running()?;
                    let d = drift::drift(
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
                    );
                    (
                        DriftState::of(&d),
                        d.reasons.first().cloned().unwrap_or_default(),
                    )
                };
            out.push(Placed {
                id: row.id.clone(),
                template_id: row.template_id.clone(),
                state,
                reason,
                last_report_at: row.last_report_at,
            });
        }
    }
    Ok(out)
}
