//! Instances: registered by an operator (`POST /api/v1/instances`, which shows the
//! instance's token once), then authenticated by that token to read their desired state and
//! report. An instance token can do nothing else. Drift per instance and for a template.
//! The report itself and what bounds it are in `instances/report.rs`; deleting an instance
//! and rotating its token in `instances/tokens.rs`.

mod report;
mod tokens;

pub use report::{REPORT_BODY_LIMIT, remember_served, report};
pub use tokens::{Deleted, delete, delete_via, rotate_token, rotate_via};

use super::templates::serve_state;
use crate::http::extract as body;
use crate::{
    config::Role,
    fleet::{
        cache::InstanceAuth,
        drift::{self, Drift, Observed},
    },
    http::{ApiError, AppState, auth::require},
    lifecycle::Actor,
    store::{AuditAction, InstanceRow, NewAudit, Via},
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use powernode_module::{desired_state::DesiredState, manifest::ModuleName};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInstance {
    #[schemars(regex(pattern = super::NAME_PATTERN))]
    pub id: String,
    #[schemars(regex(pattern = super::NAME_PATTERN))]
    pub template_id: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Registered {
    pub instance: InstanceRow,
    /// Shown once: only its SHA-256 is stored.
    pub token: String,
}

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
pub struct Accepted {
    pub accepted: bool,
}

/// `sha256` of a token, hex (what the instances table keeps).
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    h.get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// A new instance token: 244 random bits from the OS generator (two v4 UUIDs), shown once.
fn new_token() -> String {
    format!(
        "pni_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The instance `id`, authenticated by its own token (constant-time on the hashes). The
/// token is cached under the instance-auth epoch, re-read at most once a second, so a
/// rotation or deletion on any replica is seen here within a second.
async fn instance_auth(s: &AppState, h: &HeaderMap, id: &str) -> Result<InstanceAuth, ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "give this instance's token as `Authorization: Bearer …`",
        )
    };
    let presented = bearer(h).ok_or_else(unauthorized)?;
    let epoch = match s.fleet.cache.epoch() {
        Some(e) => e,
        None => {
            let began = std::time::Instant::now();
            let e = s.store.instance_auth_epoch().await?;
            s.fleet.cache.set_epoch(e, began);
            e
        }
    };
    let auth = match s.fleet.cache.instance(id, epoch) {
        Some(a) => a,
        None => {
            // Read after the epoch: if a rotation commits in between, the epoch moves on
            // and this entry is not used past the next re-read.
            let row = s.store.instance(id).await?.ok_or_else(unauthorized)?;
            let a = InstanceAuth {
                token_sha256: row.token_sha256,
                template_id: row.template_id,
            };
            s.fleet.cache.set_instance(id, a.clone(), epoch);
            a
        }
    };
    let ok: bool = token_hash(presented)
        .as_bytes()
        .ct_eq(auth.token_sha256.as_bytes())
        .into();
    if ok { Ok(auth) } else { Err(unauthorized()) }
}

async fn find(s: &AppState, id: &str) -> Result<InstanceRow, ApiError> {
    s.store
        .instance(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance {id}")))
}

pub async fn register(
    State(s): State<AppState>,
    h: HeaderMap,
    body::Json(b): body::Json<NewInstance>,
) -> Result<Response, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    let b = b?;
    if ModuleName::parse(&b.id).is_none() {
        return Err(ApiError::bad_request(format!(
            "instance id {:?} must match ^[a-z0-9][a-z0-9-]{{0,62}}$",
            b.id
        )));
    }
    if s.store.template(&b.template_id).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "no template {}",
            b.template_id
        )));
    }
    let token = new_token();
    let audit = NewAudit {
        version_id: None,
        template_id: Some(b.template_id.clone()),
        module: None,
        actor: Actor::Api(caller.name).encode(),
        via: Via::Api,
        action: AuditAction::InstanceRegistered,
        from_state: None,
        to_state: None,
        reason: None,
        evidence: serde_json::json!({"instance_id": b.id}),
    };
    if !s
        .store
        .register_instance(&b.id, &b.template_id, &token_hash(&token), &audit)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("instance {} is registered already", b.id),
        ));
    }
    let instance = find(&s, &b.id).await?;
    Ok((StatusCode::CREATED, Json(Registered { instance, token })).into_response())
}

pub async fn get(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<OneInstance>, ApiError> {
    require(&s, &h, Role::Read)?;
    let row = find(&s, &id).await?;
    let d = drift_of(&s, &row).await?;
    Ok(Json(OneInstance {
        instance: InstanceView {
            row,
            drift: d.drift,
        },
    }))
}

/// `GET /instances/{id}/desired-state`, with the instance's own token.
pub async fn desired_state(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let auth = instance_auth(&s, &h, &id).await?;
    serve_state(&s, &h, &auth.template_id).await
}

/// The drift of one instance against its template's served state.
pub async fn drift_of(s: &AppState, row: &InstanceRow) -> Result<Drift, ApiError> {
    let served = s.store.served_state(&row.template_id).await?;
    let doc = served
        .as_ref()
        .map(|st| {
            serde_json::from_value::<DesiredState>(st.document.clone())
                .map(|d| (st.state_id.clone(), d))
        })
        .transpose()
        .map_err(anyhow::Error::from)?;
    let yanked = s.store.yanked_digests().await?;
    let desired = doc
        .as_ref()
        .map(|(id, d)| drift::Desired::of(id, d).with_yanked(yanked));
    Ok(drift::drift(
        desired.as_ref(),
        observed(row),
        s.store.now(),
        s.config.fleet.stale_after_secs * 1000,
    ))
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

pub async fn drift(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<InstanceDrift>, ApiError> {
    require(&s, &h, Role::Read)?;
    let row = find(&s, &id).await?;
    let drift = drift_of(&s, &row).await?;
    Ok(Json(InstanceDrift {
        instance_id: id,
        template_id: row.template_id,
        drift,
    }))
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct InstanceDrift {
    pub instance_id: String,
    pub template_id: String,
    #[serde(flatten)]
    pub drift: Drift,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SummaryQuery {
    pub template: Option<String>,
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
    pub id: String,
    pub template_id: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Summary {
    pub template_id: Option<String>,
    pub counts: Counts,
    /// The drifting instances after `cursor`, at most `limit`, ordered by id.
    pub drifting: Vec<Drifting>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// `GET /drift?template=ID&limit=&cursor=`: counts over every instance (of the template),
/// and one page of the drifting ones.
pub async fn summary(
    State(s): State<AppState>,
    h: HeaderMap,
    body::Query(q): body::Query<SummaryQuery>,
) -> Result<Json<Summary>, ApiError> {
    require(&s, &h, Role::Read)?;
    let q = q?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000) as usize;
    if let Some(t) = &q.template
        && s.store.template(t).await?.is_none()
    {
        return Err(ApiError::not_found(format!("no template {t}")));
    }
    let now = s.store.now();
    let stale_ms = s.config.fleet.stale_after_secs * 1000;
    let mut states: BTreeMap<String, Option<drift::Desired>> = BTreeMap::new();
    let yanked = s.store.yanked_digests().await?;
    let mut counts = Counts::default();
    let mut drifting = Vec::new();
    let mut next_cursor = None;
    let mut after = String::new();
    loop {
        let page = s
            .store
            .reports_page(q.template.as_deref(), &after, 5000)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for row in &page {
            if !states.contains_key(&row.template_id) {
                let st = s.store.served_state(&row.template_id).await?;
                let doc = match st {
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
                states.insert(row.template_id.clone(), doc);
            }
            let desired = states[&row.template_id].as_ref();
            counts.total += 1;
            match row.status.as_deref() {
                None => counts.never_reported += 1,
                Some("failed") => counts.failed += 1,
                Some("rejected") => counts.rejected += 1,
                _ => {}
            }
            // Most of a healthy fleet reports exactly the desired state: judged on the
            // stored digests' text, without parsing it (and on the observations, if any).
            if desired.is_some_and(|d| d.in_sync_as_stored(row, now, stale_ms)) {
                counts.in_sync += 1;
                continue;
            }
            let running = row.running().map_err(ApiError::internal)?;
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
            if d.stale {
                counts.stale += 1;
            }
            if !d.drift {
                counts.in_sync += 1;
                continue;
            }
            counts.drifting += 1;
            if q.cursor.as_deref().is_some_and(|c| row.id.as_str() <= c) {
                continue;
            }
            if drifting.len() < limit {
                drifting.push(Drifting {
                    id: row.id.clone(),
                    template_id: row.template_id.clone(),
                    reasons: d.reasons,
                });
            } else if next_cursor.is_none() {
                next_cursor = drifting.last().map(|d: &Drifting| d.id.clone());
            }
        }
    }
    Ok(Json(Summary {
        template_id: q.template,
        counts,
        drifting,
        next_cursor,
    }))
}
