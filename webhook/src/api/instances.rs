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
pub use crate::fleet::instances::{
    Counts, Drifting, InstanceDrift, InstanceView, OneInstance, Summary, SummaryQuery,
};
use crate::http::extract as body;
use crate::{
    config::Role,
    fleet::{cache::InstanceAuth, instances::token_hash},
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
use powernode_module::manifest::ModuleName;
use serde::{Deserialize, Serialize};

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
pub struct Accepted {
    pub accepted: bool,
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

/// The instance `id`, authenticated by its own token (`fleet::instances`), or 401.
async fn instance_auth(s: &AppState, h: &HeaderMap, id: &str) -> Result<InstanceAuth, ApiError> {
    s.fleet.instance_auth(id, bearer(h)).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "give this instance's token as `Authorization: Bearer …`",
        )
    })
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
    Ok(Json(s.fleet.instance_view(&id).await?))
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

pub async fn drift(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<InstanceDrift>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(s.fleet.instance_drift(&id).await?))
}

/// `GET /drift?template=ID&limit=&cursor=`: `fleet::instances`' drift summary.
pub async fn summary(
    State(s): State<AppState>,
    h: HeaderMap,
    body::Query(q): body::Query<SummaryQuery>,
) -> Result<Json<Summary>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(s.fleet.drift_summary(q?).await?))
}
