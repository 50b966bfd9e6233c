//! Gitea's shapes as this client reads and writes them: its own models, mapped once where an
//! answer is read (a review's state, a commit status's state), so no rule outside the adapter
//! looks at Gitea's strings.

use powernode_module::lifecycle::CheckState;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub login: String,
}

/// What a review says, as Gitea names it; a state this client does not know is `Other`
/// (it counts for nothing), never an error that would hide the other reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReviewState {
    Approved,
    RequestChanges,
    Comment,
    Pending,
    RequestReview,
    #[serde(other)]
    Other,
}

/// A pull-request review as Gitea returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Review {
    pub id: i64,
    #[serde(default)]
    pub user: Option<User>,
    pub state: ReviewState,
    #[serde(default)]
    pub commit_id: String,
    #[serde(default)]
    pub stale: bool,
    #[serde(default)]
    pub dismissed: bool,
    /// When the review was submitted (RFC 3339), if Gitea says.
    #[serde(default)]
    pub submitted_at: Option<String>,
}

impl Review {
    /// `submitted_at` in Unix milliseconds, when present and well-formed.
    pub fn submitted_at_ms(&self) -> Option<i64> {
        let t = chrono::DateTime::parse_from_rfc3339(self.submitted_at.as_deref()?).ok()?;
        Some(t.timestamp_millis())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct CombinedStatus {
    #[serde(default)]
    pub(super) statuses: Option<Vec<StatusEntry>>,
}

/// Gitea names the per-entry state `status` (not GitHub's `state`).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct StatusEntry {
    pub(super) context: String,
    #[serde(default)]
    pub(super) status: CheckState,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct PermissionAnswer {
    pub(super) permission: String,
}

/// Query of a list endpoint.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Page {
    pub(super) page: usize,
    pub(super) limit: usize,
}

impl Page {
    pub(super) fn new(page: usize) -> Page {
        Page {
            page,
            limit: super::PAGE_LIMIT,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct CommentBody<'a> {
    pub(super) body: &'a str,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct StatusBody<'a> {
    pub(super) state: CheckState,
    pub(super) context: &'a str,
    pub(super) description: &'a str,
    pub(super) target_url: &'a str,
}

/// A pull request, as much of it as the engine reads.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct PullRequest {
    pub(super) number: i64,
    #[serde(default)]
    pub(super) head: Option<PullHead>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct PullHead {
    #[serde(default)]
    pub(super) sha: String,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct PullsQuery {
    pub(super) state: &'static str,
    pub(super) page: usize,
    pub(super) limit: usize,
}

/// A Gitea Actions workflow run (`ActionWorkflowRun` in Gitea's API definition), the fields
/// an operator watching a release reads. Gitea's `status` is GitHub's vocabulary
/// (`queued`, `in_progress`, `completed`, …) and `conclusion` is set once completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowRun {
    pub id: i64,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub display_title: String,
    /// The workflow file (`build.yaml@refs/tags/v0.1.0`).
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub head_branch: String,
    #[serde(default)]
    pub head_sha: String,
    #[serde(default)]
    pub run_number: i64,
    #[serde(default)]
    pub run_attempt: i64,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    #[serde(default)]
    pub html_url: String,
}

/// `ActionWorkflowRunsResponse`.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct WorkflowRuns {
    #[serde(default)]
    pub(super) workflow_runs: Vec<WorkflowRun>,
    #[serde(default)]
    pub(super) total_count: i64,
}
