//! `GET /api/v1/repos/{owner}/{repo}/workflow-runs` (read role): `promotion::runs`, the
//! newest Gitea Actions runs of a repository.

use crate::http::extract as body;
use crate::{
    config::Role,
    http::{ApiError, AppState, auth::require},
};
use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};

pub use crate::promotion::runs::{Runs, RunsQuery};

pub async fn list(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    body::Query(q): body::Query<RunsQuery>,
) -> Result<Json<Runs>, ApiError> {
    require(&s, &h, Role::Read)?;
    Ok(Json(s.promotions.workflow_runs(owner, repo, q?).await?))
}
