//! A fake Gitea: an in-process HTTP server with state (permissions, reviews, commit statuses,
//! comments) that serves Gitea's API shapes under `/api/v1` and records every call, so the
//! real client can be driven against it. Lists are paginated as Gitea paginates them
//! (`page` from 1, `limit` defaulting to 30 and capped at 50).

use crate::http::{Request, Response, Server};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[derive(Debug, Default)]
pub struct GiteaState {
    /// (owner/repo, user) → permission (`read`, `write`, `admin`, `owner`).
    pub permissions: HashMap<(String, String), String>,
    /// (owner/repo, PR number) → reviews.
    pub reviews: HashMap<(String, i64), Vec<Value>>,
    /// (owner/repo, sha) → (context, status).
    pub statuses: HashMap<(String, String), Vec<(String, String)>>,
    /// Comments posted: (owner/repo, issue, body).
    pub comments: Vec<(String, i64, String)>,
    /// Statuses set by the client: (owner/repo, sha, body).
    pub set_statuses: Vec<(String, String, Value)>,
    /// (owner/repo) → open pull requests as (number, head sha).
    pub pulls: HashMap<String, Vec<(i64, String)>>,
    /// (owner/repo) → Actions workflow runs, newest first, as Gitea's `ActionWorkflowRun`.
    pub runs: HashMap<String, Vec<Value>>,
    /// When set, every API call answers 503.
    pub down: bool,
    /// When set, every API call answers this status (e.g. 403 for a token without access).
    pub fail_with: Option<u16>,
    /// Every call whose path contains the first part answers the second status (e.g.
    /// `/statuses/` and 503: Gitea refusing commit statuses while the rest works).
    pub fail_path: Option<(String, u16)>,
    /// Faults served to the next API calls, one per call, in order (then normal service).
    pub faults: std::collections::VecDeque<Fault>,
    /// Every call whose path contains the first part waits this long before it is served
    /// (e.g. `/comments`: hold a reply while the test kills the receiver).
    pub stall: Option<(String, std::time::Duration)>,
    /// When set, a `GET …/reviews` call waits here until the test lets it go (to hold a
    /// re-evaluation between reading the evidence and deciding).
    pub gate: Option<Gate>,
}

/// A misbehaviour of one API call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status, with `Retry-After: <secs>` when given.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Answer normally, but only after this long (longer than the client's timeout).
    Stall(std::time::Duration),
}

/// A one-shot rendezvous: the server says it arrived, then waits to be released.
#[derive(Debug)]
pub struct Gate {
    pub arrived: std::sync::mpsc::Sender<()>,
    pub release: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
}

/// Gitea's default and largest page sizes (`DEFAULT_PAGING_NUM`, `MAX_RESPONSE_ITEMS`).
pub const DEFAULT_LIMIT: usize = 30;
pub const MAX_LIMIT: usize = 50;

fn query(path: &str, key: &str) -> Option<usize> {
    let q = path.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// One page of `items`, as Gitea answers `?page=&limit=`.
fn page(path: &str, items: Vec<Value>) -> Vec<Value> {
    let limit = query(path, "limit")
        .unwrap_or(DEFAULT_LIMIT)
        .clamp(1, MAX_LIMIT);
    let page = query(path, "page").unwrap_or(1).max(1);
    items
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .collect()
}

pub struct FakeGitea {
    pub server: Server,
    pub state: Arc<Mutex<GiteaState>>,
}

/// A review as Gitea's API returns it, submitted now.
pub fn review(id: i64, user: &str, state: &str, commit: &str) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut r = review_at(id, user, state, commit);
    r["submitted_at"] = now.clone().into();
    r["updated_at"] = now.into();
    r
}

/// A review submitted on 2026-11-20 (before any request a test makes).
pub fn review_at(id: i64, user: &str, state: &str, commit: &str) -> Value {
    json!({
        "id": id, "user": {"id": id, "login": user}, "team": null, "state": state, "body": "",
        "commit_id": commit, "stale": false, "official": true, "dismissed": false,
        "comments_count": 0, "submitted_at": "2026-11-20T10:00:00Z", "updated_at": "2026-11-20T10:00:00Z",
        "html_url": "", "pull_request_url": ""
    })
}

fn route(state: &Mutex<GiteaState>, req: &Request) -> Response {
    if req.method == "GET"
        && req
            .path
            .split('?')
            .next()
            .unwrap_or_default()
            .ends_with("/reviews")
    {
        let gate = state.lock().unwrap().gate.take();
        if let Some(g) = gate {
            let _ = g.arrived.send(());
            let _ = g.release.lock().unwrap().recv();
        }
    }
    let stall = state
        .lock()
        .unwrap()
        .stall
        .clone()
        .filter(|(part, _)| req.path.contains(part.as_str()));
    if let Some((_, d)) = stall {
        std::thread::sleep(d);
    }
    let fault = state.lock().unwrap().faults.pop_front();
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let r = Response::json(status, &json!({"message": "fault injected by the fake"}));
            return match retry_after {
                Some(secs) => r.with_header("Retry-After", &secs.to_string()),
                None => r,
            };
        }
        Some(Fault::Stall(d)) => std::thread::sleep(d),
        None => {}
    }
    let mut s = state.lock().unwrap();
    if s.down {
        return Response::text(503, "Gitea is down");
    }
    if let Some(status) = s.fail_with {
        return Response::json(status, &json!({"message": "refused by the fake"}));
    }
    if let Some((_, status)) = s
        .fail_path
        .as_ref()
        .filter(|(part, _)| req.path.contains(part.as_str()))
    {
        return Response::json(*status, &json!({"message": "refused by the fake"}));
    }
    let path = req.path.split('?').next().unwrap_or_default();
    let Some(rest) = path.strip_prefix("/api/v1/repos/") else {
        return Response::json(404, &json!({"message": "not found"}));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.len() < 3 {
        return Response::json(404, &json!({"message": "not found"}));
    }
    let repo = format!("{}/{}", parts[0], parts[1]);
    match (req.method.as_str(), &parts[2..]) {
        ("GET", ["collaborators", user, "permission"]) => {
            match s.permissions.get(&(repo, user.to_string())) {
                Some(p) => Response::json(
                    200,
                    &json!({"permission": p, "role_name": p, "user": {"login": user}}),
                ),
                None => Response::json(404, &json!({"message": "not a collaborator"})),
            }
        }
        ("GET", ["pulls", n, "reviews"]) => {
            let n: i64 = n.parse().unwrap_or(0);
            let all = s.reviews.get(&(repo, n)).cloned().unwrap_or_default();
            Response::json(200, &Value::Array(page(&req.path, all)))
        }
        ("GET", ["commits", sha, "status"]) => {
            let entries = s
                .statuses
                .get(&(repo, sha.to_string()))
                .cloned()
                .unwrap_or_default();
            let statuses: Vec<Value> = entries
                .iter()
                .map(|(c, st)| json!({"id": 1, "status": st, "context": c, "description": "", "target_url": ""}))
                .collect();
            let total = statuses.len();
            let statuses = page(&req.path, statuses);
            let combined = if entries.is_empty() {
                ""
            } else if entries.iter().all(|(_, st)| st == "success") {
                "success"
            } else {
                "pending"
            };
            Response::json(
                200,
                &json!({"state": combined, "sha": sha, "total_count": total, "statuses": statuses}),
            )
        }
        ("GET", ["pulls"]) => {
            let open: Vec<Value> = s
                .pulls
                .get(&repo)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|(n, sha)| {
                    json!({"id": n, "number": n, "state": "open", "title": format!("PR {n}"),
                           "head": {"ref": "develop", "sha": sha, "label": "develop"},
                           "base": {"ref": "main", "label": "main"}})
                })
                .collect();
            Response::json(200, &Value::Array(page(&req.path, open)))
        }
        ("GET", ["actions", "runs"]) => {
            let all = s.runs.get(&repo).cloned().unwrap_or_default();
            let total = all.len();
            Response::json(
                200,
                &json!({"total_count": total, "workflow_runs": page(&req.path, all)}),
            )
        }
        ("POST", ["issues", n, "comments"]) => {
            let n: i64 = n.parse().unwrap_or(0);
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            s.comments.push((repo, n, text.clone()));
            Response::json(201, &json!({"id": s.comments.len(), "body": text}))
        }
        ("POST", ["statuses", sha]) => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            s.set_statuses.push((repo, sha.to_string(), body.clone()));
            Response::json(201, &body)
        }
        _ => Response::json(404, &json!({"message": "not found"})),
    }
}

impl FakeGitea {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(GiteaState::default()));
        let s = state.clone();
        FakeGitea {
            server: Server::start(move |req| route(&s, req)),
            state,
        }
    }

    pub fn grant(&self, repo: &str, user: &str, permission: &str) {
        self.state
            .lock()
            .unwrap()
            .permissions
            .insert((repo.into(), user.into()), permission.into());
    }

    pub fn add_review(&self, repo: &str, pr: i64, review: Value) {
        self.state
            .lock()
            .unwrap()
            .reviews
            .entry((repo.into(), pr))
            .or_default()
            .push(review);
    }

    /// Opens pull request `number` with `head_sha` as its head.
    pub fn open_pull(&self, repo: &str, number: i64, head_sha: &str) {
        self.state
            .lock()
            .unwrap()
            .pulls
            .entry(repo.into())
            .or_default()
            .push((number, head_sha.into()));
    }

    /// Adds a workflow run (Gitea's `ActionWorkflowRun` shape), newest first.
    pub fn add_run(&self, repo: &str, run: Value) {
        self.state
            .lock()
            .unwrap()
            .runs
            .entry(repo.into())
            .or_default()
            .insert(0, run);
    }

    pub fn set_check(&self, repo: &str, sha: &str, context: &str, status: &str) {
        let mut s = self.state.lock().unwrap();
        let v = s.statuses.entry((repo.into(), sha.into())).or_default();
        v.retain(|(c, _)| c != context);
        v.push((context.into(), status.into()));
    }

    pub fn comments(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .comments
            .iter()
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    /// API calls received (method and path).
    pub fn calls(&self) -> Vec<(String, String)> {
        self.server
            .requests()
            .into_iter()
            .map(|r| (r.method, r.path))
            .collect()
    }

    /// Holds the next `GET …/reviews` until the returned sender is used (or dropped); the
    /// receiver says when that call arrived.
    pub fn hold_next_reviews(
        &self,
    ) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (arrived_tx, arrived_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        self.state.lock().unwrap().gate = Some(Gate {
            arrived: arrived_tx,
            release: Arc::new(Mutex::new(release_rx)),
        });
        (arrived_rx, release_tx)
    }
}
