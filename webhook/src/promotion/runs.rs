//! The newest Gitea Actions runs of a repository (`GET /api/v1/repos/{owner}/{repo}/workflow-runs`,
//! MCP's `list_gitea_workflow_runs`), read through the Gitea adapter
//! (`GET /repos/{o}/{r}/actions/runs`), so an operator can watch the build that will push the
//! next version, the one they will promote.

use super::Promotions;
use crate::{error::ServiceError, gitea::WorkflowRun};
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
fn check_name(what: &str, name: &str) -> Result<(), ServiceError> {
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
        Err(ServiceError::invalid(format!(
            "{what}: {name:?} is not a Gitea name (letters, digits, '-', '_', '.')"
        )))
    }
}

impl Promotions {
    /// The newest runs of `owner/repo`.
    pub async fn workflow_runs(
        &self,
        owner: String,
        repo: String,
        q: RunsQuery,
    ) -> Result<Runs, ServiceError> {
        check_name("owner", &owner)?;
        check_name("repo", &repo)?;
        let Some(engine) = &self.engine else {
            // Not an outage: on this receiver the resource does not exist.
            return Err(ServiceError::NotConfigured(
                "this receiver has no [gitea] section, so it cannot read workflow runs".into(),
            ));
        };
        let (runs, total_count) = engine
            .gitea
            .workflow_runs(&owner, &repo, q.limit.unwrap_or(20))
            .await
            .map_err(|e| match e.status {
                Some(404) => ServiceError::not_found(format!(
                    "Gitea has no repository {owner}/{repo} (or the receiver's token cannot see it)"
                )),
                _ => ServiceError::Unavailable(format!(
                    "could not read the workflow runs from Gitea; try again: {e}"
                )),
            })?;
        Ok(Runs {
            owner,
            repo,
            total_count,
            runs,
        })
    }
}
