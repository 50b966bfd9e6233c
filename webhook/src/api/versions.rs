//! Versions: `GET /api/v1/modules/{name}/versions[?state=]`, `GET /api/v1/versions/{id}`,
//! its audit trail, and `POST …/promote {to}` / `…/yank {reason}` (operator), decided by
//! `promotion::Promotions::request` under the comments' policy.

pub use crate::catalogue::versions::{ListQuery, VersionSummary, VersionView, Versions};
use crate::http::extract as body;
pub use crate::promotion::Decided;
use crate::{
    catalogue,
    config::Role,
    http::{ApiError, AppState, auth::require},
    lifecycle::Request,
    promotion::Decision,
    store::{AuditRow, Lifecycle, VersionId, VersionRow, Via},
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Audit {
    pub version: VersionId,
    pub audit: Vec<AuditRow>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PromoteBody {
    /// The stage to promote to (the next one: `staging`, `blessed`, `live`).
    #[schemars(with = "Lifecycle")]
    pub to: String,
    /// Why (recorded in the audit trail).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct YankBody {
    /// Why (not blank; recorded in the audit trail and shown to nodes' operators).
    #[schemars(regex(pattern = r"\S"))]
    pub reason: String,
}

/// A request the policy does not allow now (409).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct NotNow {
    pub error: &'static str,
    pub message: &'static str,
    pub version: VersionId,
    pub decision: Decision,
}

/// The version `id`, or 404.
async fn find(s: &AppState, id: &VersionId) -> Result<VersionRow, ApiError> {
    Ok(s.promotions.version(id).await?)
}

pub async fn of_module(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    body::Query(q): body::Query<ListQuery>,
) -> Result<Json<Versions>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(catalogue::versions_of(&s.store, name, q?).await?))
}

pub async fn get(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<VersionId>,
) -> Result<Json<VersionView>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(find(&s, &id).await?.into()))
}

pub async fn audit(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<VersionId>,
) -> Result<Json<Audit>, ApiError> {
    require(&s, &h, Role::Read)?;
    find(&s, &id).await?;
    let audit = s.store.audit_of(&id).await?;
    Ok(Json(Audit { version: id, audit }))
}

/// A decision as REST answers it: 200 when done, 409 with the outcome otherwise.
fn answer(d: Decided) -> Response {
    match d.decision {
        Decision::Done { .. } => Json(d).into_response(),
        _ => (
            StatusCode::CONFLICT,
            Json(NotNow {
                error: "requirements_not_met",
                message: "the policy does not allow this transition now",
                version: d.version,
                decision: d.decision,
            }),
        )
            .into_response(),
    }
}

pub async fn promote(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<VersionId>,
    body::Json(b): body::Json<PromoteBody>,
) -> Result<Response, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    let b = b?;
    let to = b.to.parse::<Lifecycle>().map_err(ApiError::bad_request)?;
    let d = s
        .promotions
        .request(&caller, Via::Api, &id, Request::Promote { to }, b.reason)
        .await?;
    Ok(answer(d))
}

pub async fn yank(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<VersionId>,
    body::Json(b): body::Json<YankBody>,
) -> Result<Response, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    let b = b?;
    let d = s
        .promotions
        .request(
            &caller,
            Via::Api,
            &id,
            Request::Yank { reason: b.reason },
            None,
        )
        .await?;
    Ok(answer(d))
}
