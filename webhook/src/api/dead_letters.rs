//! `GET /api/v1/dead-letters` and `POST /api/v1/dead-letters/{id}/retry` (operator): jobs that
//! failed for good, with their last error, and a fresh attempt budget for one, audited
//! (`jobs::dead_letters`).

use crate::{
    config::Role,
    http::{ApiError, AppState, auth::require},
    jobs::dead_letters,
    store::{JobId, JobRow, Via},
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use serde::Serialize;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct DeadLetters {
    pub dead_letters: Vec<JobRow>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Requeued {
    pub requeued: JobId,
}

pub async fn list(State(s): State<AppState>, h: HeaderMap) -> Result<Json<DeadLetters>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(DeadLetters {
        dead_letters: dead_letters::list(&s.store).await?,
    }))
}

pub async fn retry(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<JobId>,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    dead_letters::retry(&s.store, &caller, Via::Api, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(Requeued { requeued: id })))
}
