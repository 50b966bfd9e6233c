//! Versions: `GET /api/v1/modules/{name}/versions[?state=]`, `GET /api/v1/versions/{id}`,
//! its audit trail, and `POST …/promote {to}` / `…/yank {reason}` (operator). API requests go
//! through the same policy as comments; API callers have no PR, so approvals cannot be
//! gathered: only the break-glass role waives them (audited as such).

use crate::{
    config::Role,
    http::{ApiError, AppState, auth::require},
    lifecycle::{Actor, Evidence, Permission, Request},
    promotion::{Decision, Promoter},
    store::{AuditRow, Lifecycle, VersionRow, Via},
};
use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct StateFilter {
    state: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Versions {
    pub module: String,
    pub versions: Vec<VersionRow>,
}

#[derive(Debug, Serialize)]
pub struct Audit {
    pub version: String,
    pub audit: Vec<AuditRow>,
}

#[derive(Debug, Deserialize)]
pub struct PromoteBody {
    to: String,
    /// Why (recorded in the audit trail).
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct YankBody {
    reason: String,
}

/// The decision on an API request.
#[derive(Debug, Serialize)]
pub struct Decided {
    pub version: String,
    pub decision: Decision,
}

/// A request the policy does not allow now (409).
#[derive(Debug, Serialize)]
pub struct NotNow {
    pub error: &'static str,
    pub message: &'static str,
    pub version: String,
    pub decision: Decision,
}

/// The version `id`, or 404.
async fn find(s: &AppState, id: &str) -> Result<VersionRow, ApiError> {
    s.store
        .version_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no version {id}")))
}

pub async fn of_module(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<StateFilter>,
) -> Result<Json<Versions>, ApiError> {
    require(&s, &h, Role::Read)?;
    let state = q
        .state
        .as_deref()
        .map(str::parse::<Lifecycle>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let versions = s.store.versions_of(&name, state).await?;
    Ok(Json(Versions {
        module: name,
        versions,
    }))
}

pub async fn get(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<VersionRow>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(find(&s, &id).await?))
}

pub async fn audit(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Audit>, ApiError> {
    require(&s, &h, Role::Read)?;
    find(&s, &id).await?;
    let audit = s.store.audit_of(&id).await?;
    Ok(Json(Audit { version: id, audit }))
}

async fn decide(
    s: &AppState,
    h: &HeaderMap,
    id: String,
    request: Request,
    note: Option<String>,
) -> Result<Response, ApiError> {
    let caller = require(s, h, Role::Operator)?;
    let v = find(s, &id).await?;
    let evidence = Evidence {
        requester: Actor::Api(caller.name),
        requester_permission: Some(Permission::Owner),
        source_commit: v.source_commit.clone(),
        break_glass: caller.role == Role::BreakGlass,
        ..Default::default()
    };
    let promoter = Promoter {
        store: s.store.clone(),
        config: s.config.promotion.clone(),
        policies: s.policies.clone(),
    };
    let decision = promoter
        .request_with_note(&v, &request, evidence, Via::Api, note)
        .await?;
    Ok(match decision {
        d @ Decision::Done { .. } => Json(Decided {
            version: id,
            decision: d,
        })
        .into_response(),
        d => (
            StatusCode::CONFLICT,
            Json(NotNow {
                error: "requirements_not_met",
                message: "the policy does not allow this transition now",
                version: id,
                decision: d,
            }),
        )
            .into_response(),
    })
}

pub async fn promote(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<PromoteBody>,
) -> Result<Response, ApiError> {
    let to = b.to.parse::<Lifecycle>().map_err(ApiError::bad_request)?;
    decide(&s, &h, id, Request::Promote { to }, b.reason).await
}

pub async fn yank(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<YankBody>,
) -> Result<Response, ApiError> {
    decide(&s, &h, id, Request::Yank { reason: b.reason }, None).await
}
