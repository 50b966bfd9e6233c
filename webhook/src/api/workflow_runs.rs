//! `GET /api/v1/repos/{owner}/{repo}/workflow-runs`: the newest Gitea Actions runs of a
//! repository, read through the Gitea adapter (`GET /repos/{o}/{r}/actions/runs`), so an
//! operator (or an assistant, through the MCP tool `list_gitea_workflow_runs`) can watch the
//! build that will push the next version.

use crate::http::extract as body;
use crate::{
    config::Role,
    gitea::WorkflowRun,
    http::{ApiError, AppState, auth::require},
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct RunsQuery {
    /// At most this many runs, newest first (default 20, at most 50: Gitea's page size).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Runs {
    pub owner: String,
    pub repo: String,
    /// How many runs Gitea has for the repository in all.
    pub total_count: i64,
    pub runs: Vec<WorkflowRun>,
}

/// A Gitea owner or repository name: what Gitea itself accepts (letters, digits, `-`, `_`,
/// `.`), so a name can never step out of `/repos/{owner}/{repo}/` in the adapter's URL.
fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what}: {name:?} is not a Gitea name (letters, digits, '-', '_', '.')"
        )))
    }
}

pub async fn list(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    body::Query(q): body::Query<RunsQuery>,
) -> Result<Json<Runs>, ApiError> {
    require(&s, &h, Role::Read)?;
    let q = q?;
    check_name("owner", &owner)?;
    check_name("repo", &repo)?;
    let Some(engine) = &s.engine else {
        // Not an outage: on this receiver the resource does not exist.
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "gitea_not_configured",
            "this receiver has no [gitea] section, so it cannot read workflow runs",
        ));
    };
    let (runs, total_count) = engine
        .gitea
        .workflow_runs(&owner, &repo, q.limit.unwrap_or(20))
        .await
        .map_err(|e| match e.status {
            Some(404) => ApiError::not_found(format!(
                "Gitea has no repository {owner}/{repo} (or the receiver's token cannot see it)"
            )),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "gitea_unavailable",
                format!("could not read the workflow runs from Gitea; try again: {e}"),
            ),
        })?;
    Ok(Json(Runs {
        owner,
        repo,
        total_count,
        runs,
    }))
}
