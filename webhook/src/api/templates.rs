//! Templates (operator to change, read to look): `POST /api/v1/templates`,
//! `GET /api/v1/templates[/{id}]`, assignments, the signed desired state and the audit trail;
//! the changes and views are `fleet::templates`' (shared with MCP and the console).

use crate::http::extract as body;
use crate::{
    config::Role,
    fleet::Poll,
    http::{ApiError, AppState, auth::require},
    store::{AuditRow, Via},
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

pub use crate::fleet::templates::{
    Assigned, NewAssignment, NewTemplate, StateSummary, TemplateView,
};

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OneTemplate {
    pub template: TemplateView,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Templates {
    pub templates: Vec<TemplateView>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Audit {
    pub template_id: crate::store::TemplateId,
    pub audit: Vec<AuditRow>,
}

pub async fn create(
    State(s): State<AppState>,
    h: HeaderMap,
    body::Json(b): body::Json<NewTemplate>,
) -> Result<Response, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    let template = s.fleet.create_template(&caller, Via::Api, b?).await?;
    Ok((StatusCode::CREATED, Json(OneTemplate { template })).into_response())
}

pub async fn list(State(s): State<AppState>, h: HeaderMap) -> Result<Json<Templates>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(Templates {
        templates: s.fleet.template_views().await?,
    }))
}

pub async fn get(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<crate::store::TemplateId>,
) -> Result<Json<OneTemplate>, ApiError> {
    require(&s, &h, Role::Read)?;
    let t = s.fleet.template(&id).await?;
    Ok(Json(OneTemplate {
        template: s.fleet.template_view(t).await?,
    }))
}

pub async fn assign(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<crate::store::TemplateId>,
    body::Json(b): body::Json<NewAssignment>,
) -> Result<Json<Assigned>, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    Ok(Json(s.fleet.assign(&caller, Via::Api, &id, b?).await?))
}

pub async fn unassign(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((id, module)): Path<(crate::store::TemplateId, String)>,
) -> Result<Json<Assigned>, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    Ok(Json(
        s.fleet.unassign(&caller, Via::Api, &id, &module).await?,
    ))
}

pub async fn audit_trail(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<crate::store::TemplateId>,
) -> Result<Json<Audit>, ApiError> {
    require(&s, &h, Role::Read)?;
    let audit = s.fleet.template_audit(&id).await?;
    Ok(Json(Audit {
        template_id: id,
        audit,
    }))
}

/// `GET /templates/{id}/desired-state` (read role): the signed envelope, `ETag: "<state_id>"`.
pub async fn desired_state(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<crate::store::TemplateId>,
) -> Result<Response, ApiError> {
    require(&s, &h, Role::Read)?;
    serve_state(&s, &h, &id).await
}

/// The conditional answer both desired-state routes give: 304 when `If-None-Match` names
/// the served state (from the cache, without the database when it is fresh), else the
/// envelope. 404 while the template serves no state yet.
pub async fn serve_state(
    s: &AppState,
    h: &HeaderMap,
    template: &crate::store::TemplateId,
) -> Result<Response, ApiError> {
    let presented = h
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_owned()
        });
    let st = match s.fleet.poll(template, presented.as_deref()).await? {
        Poll::Unchanged(id) => return Ok(not_modified(s, &id)),
        Poll::State(st) => st,
    };
    s.metrics
        .desired_state_reads
        .get_or_create(&crate::metrics::StateLabels {
            state: "document".into(),
        })
        .inc();
    let mut r = Json(st.envelope).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", st.state_id)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

fn not_modified(s: &AppState, state_id: &str) -> Response {
    s.metrics
        .desired_state_reads
        .get_or_create(&crate::metrics::StateLabels {
            state: "not_modified".into(),
        })
        .inc();
    let mut r = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{state_id}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}
