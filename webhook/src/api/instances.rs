//! Instances: registered by an operator (`POST /api/v1/instances`, which shows the
//! instance's token once), then authenticated by that token to read their desired state and
//! report. An instance token can do nothing else. Drift per instance and for a template.

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
    store::{AuditAction, InstanceRow, NewAudit, Report, Via},
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use powernode_module::{
    desired_state::{DesiredState, ModuleObservation, Report as WireReport},
    manifest::ModuleName,
    package::{self, PackageSpecError},
};
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

/// The instance `id`, authenticated by its own token (constant-time on the hashes).
async fn instance_auth(s: &AppState, h: &HeaderMap, id: &str) -> Result<InstanceAuth, ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "give this instance's token as `Authorization: Bearer …`",
        )
    };
    let presented = bearer(h).ok_or_else(unauthorized)?;
    let auth = match s.fleet.cache.instance(id) {
        Some(a) => a,
        None => {
            let row = s.store.instance(id).await?.ok_or_else(unauthorized)?;
            let a = InstanceAuth {
                token_sha256: row.token_sha256,
                template_id: row.template_id,
            };
            s.fleet.cache.set_instance(id, a.clone());
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
    // 244 random bits from the OS generator (two v4 UUIDs), shown once.
    let token = format!(
        "pni_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
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

pub async fn report(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body::Json(b): body::Json<WireReport>,
) -> Result<Json<Accepted>, ApiError> {
    instance_auth(&s, &h, &id).await?;
    let b = b?;
    for name in b.running_module_digests.keys() {
        if ModuleName::parse(name).is_none() {
            return Err(ApiError::bad_request(format!(
                "running_module_digests: {name:?} is not a module name"
            )));
        }
    }
    if b.message.as_ref().is_some_and(|m| m.len() > 4096) {
        return Err(ApiError::bad_request("message: at most 4096 bytes"));
    }
    check_observations(&b.modules).map_err(ApiError::bad_request)?;
    let r = Report {
        desired_state_id: b.desired_state_id.to_string(),
        running_module_digests: b
            .running_module_digests
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        composefs_digest: b.composefs_digest.map(|d| d.to_string()),
        status: b.status.as_str().into(),
        message: b.message,
        modules: b.modules,
    };
    if !s.store.record_report(&id, &r).await? {
        return Err(ApiError::not_found(format!("no instance {id}")));
    }
    s.metrics.reports.inc();
    Ok(Json(Accepted { accepted: true }))
}

/// How much one report may observe: modules, and packages and units per module.
const MAX_OBSERVED_MODULES: usize = 64;
const MAX_OBSERVED_PACKAGES: usize = 256;
const MAX_OBSERVED_UNITS: usize = 64;
/// The longest package name, version or unit name a report may carry (bytes).
const MAX_OBSERVED_NAME: usize = 256;

/// The systemd unit types a module's unit may have.
const UNIT_SUFFIXES: [&str; 11] = [
    ".service",
    ".socket",
    ".timer",
    ".mount",
    ".automount",
    ".path",
    ".target",
    ".swap",
    ".slice",
    ".scope",
    ".device",
];

/// A unit name as systemd prints it (`redis-server.service`, `getty@tty1.service`): the
/// characters of its escaping and a known type.
fn valid_unit(u: &str) -> bool {
    u.len() <= MAX_OBSERVED_NAME
        && u.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b':' | b'_' | b'.' | b'@' | b'-'))
        && UNIT_SUFFIXES
            .iter()
            .any(|s| u.len() > s.len() && u.ends_with(s))
}

/// An `ActiveState` (`active`, `failed`, `activating`, …): lowercase words and dashes.
fn valid_unit_state(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_lowercase() || c == b'-')
}

/// Bounds what a report's observations may hold; the message names the field.
fn check_observations(modules: &BTreeMap<String, ModuleObservation>) -> Result<(), String> {
    if modules.len() > MAX_OBSERVED_MODULES {
        return Err(format!(
            "modules: at most {MAX_OBSERVED_MODULES} per report, not {}",
            modules.len()
        ));
    }
    for (m, obs) in modules {
        if ModuleName::parse(m).is_none() {
            return Err(format!("modules: {m:?} is not a module name"));
        }
        if obs.packages.len() > MAX_OBSERVED_PACKAGES {
            return Err(format!(
                "modules.{m}.packages: at most {MAX_OBSERVED_PACKAGES} per module, not {}",
                obs.packages.len()
            ));
        }
        if obs.units.len() > MAX_OBSERVED_UNITS {
            return Err(format!(
                "modules.{m}.units: at most {MAX_OBSERVED_UNITS} per module, not {}",
                obs.units.len()
            ));
        }
        for (p, v) in &obs.packages {
            if p.len() > MAX_OBSERVED_NAME {
                return Err(format!(
                    "modules.{m}.packages: a package name of {} bytes (at most {MAX_OBSERVED_NAME})",
                    p.len()
                ));
            }
            if !package::valid_name(p) {
                let e = PackageSpecError::Name(p.clone());
                return Err(format!("modules.{m}.packages: {e}"));
            }
            match v {
                Some(v) if v.len() > MAX_OBSERVED_NAME => {
                    return Err(format!(
                        "modules.{m}.packages.{p}: a version of {} bytes (at most {MAX_OBSERVED_NAME})",
                        v.len()
                    ));
                }
                Some(v) if !package::valid_version(v) => {
                    let e = PackageSpecError::Version(v.clone());
                    return Err(format!("modules.{m}.packages.{p}: {e}"));
                }
                _ => {}
            }
        }
        for (u, state) in &obs.units {
            if !valid_unit(u) {
                return Err(format!(
                    "modules.{m}.units: {u:?} is not a systemd unit name ([A-Za-z0-9:_.@-], a type such as .service, at most {MAX_OBSERVED_NAME} bytes)"
                ));
            }
            if !valid_unit_state(state) {
                return Err(format!(
                    "modules.{m}.units.{u}: {state:?} is not a unit state (active, failed, inactive, …)"
                ));
            }
        }
    }
    Ok(())
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
    let desired = doc.as_ref().map(|(id, d)| drift::Desired::of(id, d));
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
                    Some(st) => Some(drift::Desired::of(
                        &st.state_id,
                        &serde_json::from_value::<DesiredState>(st.document)
                            .map_err(anyhow::Error::from)?,
                    )),
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
