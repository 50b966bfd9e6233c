//! Instances: registered by an operator (`POST /api/v1/instances`, which shows the
//! instance's token once), then authenticated by that token to read their desired state and
//! report. An instance token can do nothing else. Drift per instance and for a template.
//! The report itself and what bounds it are in `instances/report.rs`; deleting an instance
//! and rotating its token in `instances/tokens.rs`.

mod report;
mod tokens;

pub use crate::fleet::tokens::{Deleted, NewInstance, Registered};
pub use report::{REPORT_BODY_LIMIT, report};
pub use tokens::{delete, rotate_token};

use super::templates::serve_state;
pub use crate::fleet::instances::{
    Counts, Drifting, InstanceDrift, InstanceView, OneInstance, Summary, SummaryQuery,
};
use crate::http::extract as body;
use crate::{
    config::Role,
    fleet::cache::InstanceAuth,
    http::{
        ApiError, AppState,
        auth::{bearer, require},
    },
    store::Via,
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Accepted {
    pub accepted: bool,
}

/// The instance `id`, authenticated by its own token (`fleet::instances`), or 401.
async fn instance_auth(
    s: &AppState,
    h: &HeaderMap,
    id: &crate::store::InstanceId,
) -> Result<InstanceAuth, ApiError> {
    s.fleet.instance_auth(id, bearer(h)).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "give this instance's token as `Authorization: Bearer …`",
        )
    })
}

pub async fn register(
    State(s): State<AppState>,
    h: HeaderMap,
    body::Json(b): body::Json<NewInstance>,
) -> Result<Response, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    let registered = s.fleet.register_instance(&caller, Via::Api, b?).await?;
    Ok((StatusCode::CREATED, Json(registered)).into_response())
}

pub async fn get(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<crate::store::InstanceId>,
) -> Result<Json<OneInstance>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(s.fleet.instance_view(&id).await?))
}

/// `GET /instances/{id}/desired-state`, with the instance's own token.
pub async fn desired_state(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<crate::store::InstanceId>,
) -> Result<Response, ApiError> {
    let auth = instance_auth(&s, &h, &id).await?;
    serve_state(&s, &h, &auth.template_id).await
}

pub async fn drift(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<crate::store::InstanceId>,
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
