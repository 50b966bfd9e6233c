//! The Gitea adapter: octocrab as the HTTP transport (base URI `https://HOST/api/v1`, auth,
//! timeouts), our own models for Gitea's shapes. The domain calls `reviews`, `comment`, …,
//! never HTTP.
//!
//! Retrying is the job queue's, not the client's: octocrab's own retry layer would re-send a
//! 5xx or a 429 at once (a tight loop against a struggling server) and its typed helpers drop
//! the response headers, so a 429's `Retry-After` could not reach the queue. Every call
//! therefore goes through [`Gitea::call`], which keeps the status and `Retry-After` of a
//! refusal in the [`GiteaError`]; the worker schedules the next attempt no sooner than that.

use octocrab::{Octocrab, service::middleware::retry::RetryConfig};
use powernode_module::lifecycle::CheckState;
use powernode_module::lifecycle::Permission;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::Duration;

mod model;
/// Page size asked of Gitea's list endpoints (Gitea caps `limit` at its
/// `MAX_RESPONSE_ITEMS`, 50 by default).
pub const PAGE_LIMIT: usize = 50;
/// A bound on pages read from one list, so a misbehaving server cannot keep us paging.
const MAX_PAGES: usize = 200;
use model::{
    CombinedStatus, CommentBody, Page, PermissionAnswer, PullRequest, PullsQuery, StatusBody,
    WorkflowRuns,
};
pub use model::{Review, ReviewState, User, WorkflowRun};

/// A failed Gitea call: the HTTP status when Gitea answered, and what it said.
#[derive(Debug, thiserror::Error)]
#[error("Gitea: {message}")]
pub struct GiteaError {
    pub status: Option<u16>,
    pub message: String,
    /// How long Gitea asked us to wait (`Retry-After` of a 429 or 503), if it said.
    pub retry_after: Option<Duration>,
}

impl GiteaError {
    /// Whether retrying could help: no answer (network, timeout), 408, 429 or a 5xx.
    pub fn is_transient(&self) -> bool {
        self.status.is_none_or(|s| s >= 500 || s == 429 || s == 408)
    }

    /// No answer at all (connection refused, reset, timed out): transient.
    fn transport(route: &str, e: octocrab::Error) -> GiteaError {
        GiteaError {
            status: None,
            message: format!("{route}: {e}"),
            retry_after: None,
        }
    }
}

/// `Retry-After` as RFC 9110 defines it: delay-seconds or an HTTP-date (then relative to
/// `now`). Anything else is ignored rather than trusted.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// Gitea's refusals are `{"message": …}`; fall back to the start of whatever came.
fn refusal_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// One request of [`Gitea::call`].
enum Req<'a> {
    Get(String),
    Post(String, &'a serde_json::Value),
}

/// A Gitea instance, authenticated with a token.
#[derive(Clone)]
pub struct Gitea {
    client: Octocrab,
    /// Gitea API calls made (for measurements).
    pub calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Gitea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gitea")
    }
}

impl Gitea {
    /// `url` is the instance (`https://gitea.example.org`); the API is under `/api/v1`.
    /// `timeout` bounds connecting and each read of an answer: a Gitea that hangs fails the
    /// attempt (transiently) instead of holding the job's lease.
    pub fn new(url: &str, token: Option<&str>, timeout: Duration) -> anyhow::Result<Gitea> {
        let mut b = Octocrab::builder()
            .base_uri(format!("{}/api/v1", url.trim_end_matches('/')))?
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(timeout.min(Duration::from_secs(10))))
            .set_read_timeout(Some(timeout));
        if let Some(t) = token {
            b = b.personal_token(t.to_owned());
        }
        Ok(Gitea {
            client: b.build()?,
            calls: Default::default(),
        })
    }

    fn count(&self) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sends one request and reads its JSON answer; a refusal keeps its status, Gitea's
    /// message and `Retry-After`.
    async fn call<T: DeserializeOwned>(&self, req: Req<'_>) -> Result<T, GiteaError> {
        self.count();
        let (route, sent) = match req {
            Req::Get(route) => {
                let sent = self.client._get(route.as_str()).await;
                (route, sent)
            }
            Req::Post(route, body) => {
                let sent = self.client._post(route.as_str(), Some(body)).await;
                (route, sent)
            }
        };
        let resp = sent.map_err(|e| GiteaError::transport(&route, e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let body = self
            .client
            .body_to_string(resp)
            .await
            .map_err(|e| GiteaError::transport(&route, e))?;
        if !status.is_success() {
            return Err(GiteaError {
                status: Some(status.as_u16()),
                message: format!("{route}: {status} {}", refusal_message(&body)),
                retry_after,
            });
        }
        // A 2xx that is not the JSON we expect (a proxy's page, a truncated answer): treated
        // like no answer, so it is retried rather than trusted.
        serde_json::from_str(&body).map_err(|e| GiteaError {
            status: None,
            message: format!("{route}: {status} with an answer that is not Gitea's JSON: {e}"),
            retry_after: None,
        })
    }

    /// `GET route?query`.
    async fn get<T: DeserializeOwned>(
        &self,
        route: String,
        query: &impl Serialize,
    ) -> Result<T, GiteaError> {
        let q = serde_urlencoded::to_string(query).map_err(|e| GiteaError {
            status: None,
            message: format!("{route}: query: {e}"),
            retry_after: None,
        })?;
        let route = if q.is_empty() {
            route
        } else {
            format!("{route}?{q}")
        };
        self.call(Req::Get(route)).await
    }

    /// `POST route` with a JSON body.
    async fn post<T: DeserializeOwned>(
        &self,
        route: String,
        body: &impl Serialize,
    ) -> Result<T, GiteaError> {
        let body = serde_json::to_value(body).map_err(|e| GiteaError {
            status: None,
            message: format!("{route}: body: {e}"),
            retry_after: None,
        })?;
        self.call(Req::Post(route, &body)).await
    }

    /// The user's permission on the repository (`GET /repos/{o}/{r}/collaborators/{u}/permission`).
    pub async fn permission(
        &self,
        owner: &str,
        repo: &str,
        user: &str,
    ) -> Result<Permission, GiteaError> {
        match self
            .get::<PermissionAnswer>(
                format!("/repos/{owner}/{repo}/collaborators/{user}/permission"),
                &(),
            )
            .await
        {
            Ok(a) => Ok(Permission::parse(&a.permission)),
            // Not a collaborator: Gitea answers 403/404.
            Err(GiteaError {
                status: Some(403 | 404),
                ..
            }) => Ok(Permission::None),
            Err(e) => Err(e),
        }
    }

    /// Every review of PR `pr`, paging through Gitea's list (`page`, `limit`).
    pub async fn reviews(
        &self,
        owner: &str,
        repo: &str,
        pr: i64,
    ) -> Result<Vec<Review>, GiteaError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let got: Vec<Review> = self
                .get(
                    format!("/repos/{owner}/{repo}/pulls/{pr}/reviews"),
                    &Page::new(page),
                )
                .await?;
            let last = got.len() < PAGE_LIMIT;
            all.extend(got);
            if last {
                break;
            }
        }
        Ok(all)
    }

    /// Commit status contexts of `sha` and their states.
    pub async fn statuses(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
    ) -> Result<BTreeMap<String, CheckState>, GiteaError> {
        let mut all = BTreeMap::new();
        for page in 1..=MAX_PAGES {
            let c: CombinedStatus = self
                .get(
                    format!("/repos/{owner}/{repo}/commits/{sha}/status"),
                    &Page::new(page),
                )
                .await?;
            let got = c.statuses.unwrap_or_default();
            let last = got.len() < PAGE_LIMIT;
            // Gitea lists the latest status of each context once.
            all.extend(got.into_iter().map(|s| (s.context, s.status)));
            if last {
                break;
            }
        }
        Ok(all)
    }

    /// The newest open pull request whose head is `sha`: where approvals for a version
    /// built from that commit are given when the request came without a PR (API, MCP).
    pub async fn open_pull_for_commit(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
    ) -> Result<Option<i64>, GiteaError> {
        let mut found = None;
        for page in 1..=MAX_PAGES {
            let got: Vec<PullRequest> = self
                .get(
                    format!("/repos/{owner}/{repo}/pulls"),
                    &PullsQuery {
                        state: "open",
                        page,
                        limit: PAGE_LIMIT,
                    },
                )
                .await?;
            let last = got.len() < PAGE_LIMIT;
            for p in got {
                if p.head
                    .as_ref()
                    .is_some_and(|h| h.sha.eq_ignore_ascii_case(sha))
                    && found.is_none_or(|n| p.number > n)
                {
                    found = Some(p.number);
                }
            }
            if last {
                break;
            }
        }
        Ok(found)
    }

    /// The newest workflow runs of a repository (`GET /repos/{o}/{r}/actions/runs`), at most
    /// `limit` (Gitea caps a page at 50), with the total Gitea counts.
    pub async fn workflow_runs(
        &self,
        owner: &str,
        repo: &str,
        limit: usize,
    ) -> Result<(Vec<WorkflowRun>, i64), GiteaError> {
        let got: WorkflowRuns = self
            .get(
                format!("/repos/{owner}/{repo}/actions/runs"),
                &Page {
                    page: 1,
                    limit: limit.clamp(1, PAGE_LIMIT),
                },
            )
            .await?;
        Ok((got.workflow_runs, got.total_count))
    }

    pub async fn comment(
        &self,
        owner: &str,
        repo: &str,
        issue: i64,
        body: &str,
    ) -> Result<(), GiteaError> {
        let _: serde_json::Value = self
            .post(
                format!("/repos/{owner}/{repo}/issues/{issue}/comments"),
                &CommentBody { body },
            )
            .await?;
        Ok(())
    }

    /// Sets a commit status (`state`: pending, success, error, failure, warning).
    pub async fn set_status(
        &self,
        owner: &str,
        repo: &str,
        sha: &str,
        state: CheckState,
        context: &str,
        description: &str,
    ) -> Result<(), GiteaError> {
        let _: serde_json::Value = self
            .post(
                format!("/repos/{owner}/{repo}/statuses/{sha}"),
                &StatusBody {
                    state,
                    context,
                    description,
                    target_url: "",
                },
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::model::StatusEntry;
    use super::*;

    #[test]
    fn a_review_state_is_read_once_and_an_unknown_one_counts_for_nothing() {
        let state = |s: &str| {
            let r: Review =
                serde_json::from_value(serde_json::json!({"id": 1, "state": s})).unwrap();
            r.state
        };
        assert_eq!(state("APPROVED"), ReviewState::Approved);
        assert_eq!(state("REQUEST_CHANGES"), ReviewState::RequestChanges);
        assert_eq!(state("COMMENT"), ReviewState::Comment);
        assert_eq!(state("SOMETHING_NEW"), ReviewState::Other, "not an error");
    }

    #[test]
    fn a_check_state_is_read_once_and_an_unknown_or_missing_one_never_passes() {
        let state = |v: serde_json::Value| {
            let e: StatusEntry = serde_json::from_value(v).unwrap();
            e.status
        };
        let of = |s: &str| state(serde_json::json!({"context": "ci", "status": s}));
        assert_eq!(of("success"), CheckState::Success);
        assert_eq!(of("failure"), CheckState::Failure);
        assert_eq!(of("pending"), CheckState::Pending);
        assert_eq!(
            of("skipped-by-a-newer-gitea"),
            CheckState::Other,
            "not an error"
        );
        assert_eq!(
            state(serde_json::json!({"context": "ci"})),
            CheckState::Other
        );
        // What the engine sends is what Gitea reads.
        let body = serde_json::to_value(StatusBody {
            state: CheckState::Failure,
            context: "powernode/lifecycle",
            description: "",
            target_url: "",
        })
        .unwrap();
        assert_eq!(body["state"], "failure");
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Fri, 04 Dec 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        // A date already past means "now", not a negative wait.
        assert_eq!(
            parse_retry_after("Fri, 04 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn refusals_keep_giteas_message() {
        assert_eq!(
            refusal_message(r#"{"message":"token expired"}"#),
            "token expired"
        );
        assert_eq!(
            refusal_message("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }
}
