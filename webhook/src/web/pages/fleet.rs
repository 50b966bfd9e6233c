//! `/fleet`: instances by drift state, with counts and the drift states over time;
//! `/instances/{id}`: an instance's running modules, packages and units as the node reports
//! them, its last report and each drift reason as a sentence.

use crate::{
    http::AppState,
    web::{
        act::{self, DriftState},
        chart,
        session::Session,
        view::{Nav, WebError, ago, link, page_size, render, short, time},
    },
};
use axum::{
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use std::collections::BTreeMap;

pub struct Count {
    pub state: &'static str,
    pub label: &'static str,
    pub count: usize,
    pub current: bool,
}

pub struct InstanceLine {
    pub id: crate::store::InstanceId,
    pub template_id: crate::store::TemplateId,
    pub state: &'static str,
    pub label: &'static str,
    pub reason: String,
    pub last_report: String,
}

#[derive(askama::Template)]
#[template(path = "web/fleet.html")]
struct Fleet {
    nav: Nav,
    total: usize,
    counts: Vec<Count>,
    shown: String,
    instances: Vec<InstanceLine>,
    next: Option<String>,
    sampled: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct FleetQuery {
    /// Only instances in this drift state (`in_sync`, `outdated`, …).
    state: Option<String>,
    /// The last instance shown.
    after: Option<String>,
    limit: Option<i64>,
}

pub async fn fleet(
    State(s): State<AppState>,
    session: Session,
    Query(q): Query<FleetQuery>,
) -> Result<Response, WebError> {
    let only = match q.state.as_deref().filter(|x| !x.is_empty()) {
        None => None,
        Some(x) => Some(DriftState::parse(x).ok_or_else(|| {
            WebError::bad_request(format!(
                "state {x:?} is not a drift state (in_sync, outdated, missing, failed, stale, unreported)"
            ))
        })?),
    };
    let limit = page_size(q.limit, 100) as usize;
    let placed = act::fleet_states_recent(&s).await?;
    let mut by_state: BTreeMap<DriftState, usize> = BTreeMap::new();
    for p in placed.iter() {
        *by_state.entry(p.state).or_default() += 1;
    }
    let after = q.after.unwrap_or_default();
    let now = s.store.now();
    let mut page: Vec<&act::Placed> = placed
        .iter()
        .filter(|p| only.is_none_or(|o| p.state == o) && p.id.as_str() > after.as_str())
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| {
        page.truncate(limit);
        let mut params = vec![("after", page[limit - 1].id.as_str())];
        if let Some(o) = only {
            params.push(("state", o.as_str()));
        }
        link("/fleet", &params)
    });
    let sampled = !s
        .store
        .samples("drift", now - 30 * 86_400_000)
        .await?
        .is_empty();
    render(&Fleet {
        nav: Nav::of(&session, "fleet"),
        total: placed.len(),
        counts: DriftState::ALL
            .iter()
            .map(|d| Count {
                state: d.as_str(),
                label: d.label(),
                count: by_state.get(d).copied().unwrap_or(0),
                current: only == Some(*d),
            })
            .collect(),
        shown: only.map(|o| o.label()).unwrap_or("all").to_owned(),
        instances: page
            .into_iter()
            .map(|p| InstanceLine {
                id: p.id.clone(),
                template_id: p.template_id.clone(),
                state: p.state.as_str(),
                label: p.state.label(),
                reason: p.reason.clone(),
                last_report: p
                    .last_report_at
                    .map(|at| ago(now, at))
                    .unwrap_or_else(|| "never".into()),
            })
            .collect(),
        next,
        sampled,
    })
}

/// `/fleet/drift.svg`: instances per drift state over time.
pub async fn drift_chart(
    State(s): State<AppState>,
    _session: Session,
) -> Result<Response, WebError> {
    let samples = s
        .store
        .samples("drift", s.store.now() - 30 * 86_400_000)
        .await?;
    let order: Vec<&str> = DriftState::ALL.iter().map(|d| d.as_str()).collect();
    let mut lines = chart::lines(&samples, &order);
    for l in &mut lines {
        if let Some(d) = DriftState::parse(&l.label) {
            l.label = d.label().to_owned();
        }
    }
    let svg = chart::svg("The fleet by drift state", "instances", &lines)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, max-age=60"),
        ],
        svg,
    )
        .into_response())
}

pub struct RunningModule {
    pub name: String,
    pub digest: String,
    /// (version, version id) when the digest is a known version's.
    pub version: Option<(String, String)>,
    pub packages: Vec<(String, String)>,
    pub units: Vec<(String, String)>,
}

#[derive(askama::Template)]
#[template(path = "web/instance.html")]
struct InstancePage {
    nav: Nav,
    id: crate::store::InstanceId,
    template_id: crate::store::TemplateId,
    state: &'static str,
    label: &'static str,
    reasons: Vec<String>,
    facts: Vec<(&'static str, String)>,
    modules: Vec<RunningModule>,
}

pub async fn instance(
    State(s): State<AppState>,
    session: Session,
    Path(id): Path<crate::store::InstanceId>,
) -> Result<Response, WebError> {
    let row = s
        .store
        .instance(&id)
        .await?
        .ok_or_else(|| WebError::not_found(format!("no instance {id}")))?;
    let d = act::instance_drift(&s, &row).await?;
    let state = DriftState::of(&d);
    let digests: Vec<String> = row.running_module_digests.values().cloned().collect();
    let known: BTreeMap<String, (String, String, crate::store::VersionId)> = s
        .store
        .versions_by_composefs(&digests)
        .await?
        .into_iter()
        .filter_map(|v| Some((v.composefs_digest?, (v.module, v.version, v.id))))
        .collect();
    let now = s.store.now();
    let modules = row
        .running_module_digests
        .iter()
        .map(|(name, digest)| {
            let obs = row.modules.get(name);
            RunningModule {
                name: name.clone(),
                digest: short(digest),
                version: known
                    .get(digest)
                    .filter(|k| k.0 == *name)
                    .map(|k| (k.1.clone(), k.2.to_string())),
                packages: obs
                    .map(|o| {
                        o.packages
                            .iter()
                            .map(|(p, v)| {
                                (
                                    p.clone(),
                                    v.clone().unwrap_or_else(|| "not installed".into()),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                units: obs
                    .map(|o| {
                        o.units
                            .iter()
                            .map(|(u, st)| (u.clone(), st.to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let facts = vec![
        (
            "Last report",
            row.last_report_at
                .map(|at| format!("{} ({})", time(at), ago(now, at)))
                .unwrap_or_else(|| "never".into()),
        ),
        ("Status", row.status.clone().unwrap_or_else(|| "—".into())),
        ("Message", row.message.clone().unwrap_or_else(|| "—".into())),
        (
            "Reported state",
            row.desired_state_id.clone().unwrap_or_else(|| "—".into()),
        ),
        (
            "Served state",
            d.desired_state_id
                .clone()
                .unwrap_or_else(|| "none yet".into()),
        ),
        (
            "Merged composefs digest",
            row.composefs_digest.clone().unwrap_or_else(|| "—".into()),
        ),
        ("Registered", time(row.created_at)),
    ];
    render(&InstancePage {
        nav: Nav::of(&session, "fleet"),
        state: state.as_str(),
        label: state.label(),
        reasons: d.reasons,
        facts,
        modules,
        template_id: row.template_id,
        id,
    })
}
