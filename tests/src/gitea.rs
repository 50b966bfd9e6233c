//! A fake Gitea: an in-process HTTP server with state (permissions, reviews, commit statuses,
//! comments) that serves Gitea's API shapes under `/api/v1` and records every call, so the
//! real client can be driven against it.

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
    /// When set, every API call answers 503.
    pub down: bool,
}

pub struct FakeGitea {
    pub server: Server,
    pub state: Arc<Mutex<GiteaState>>,
}

/// A review as Gitea's API returns it.
pub fn review(id: i64, user: &str, state: &str, commit: &str) -> Value {
    json!({
        "id": id, "user": {"id": id, "login": user}, "team": null, "state": state, "body": "",
        "commit_id": commit, "stale": false, "official": true, "dismissed": false,
        "comments_count": 0, "submitted_at": "2026-11-20T10:00:00Z", "updated_at": "2026-11-20T10:00:00Z",
        "html_url": "", "pull_request_url": ""
    })
}

fn route(state: &Mutex<GiteaState>, req: &Request) -> Response {
    let mut s = state.lock().unwrap();
    if s.down {
        return Response::text(503, "Gitea is down");
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
            Response::json(
                200,
                &Value::Array(s.reviews.get(&(repo, n)).cloned().unwrap_or_default()),
            )
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
            let combined = if entries.is_empty() {
                ""
            } else if entries.iter().all(|(_, st)| st == "success") {
                "success"
            } else {
                "pending"
            };
            Response::json(
                200,
                &json!({"state": combined, "sha": sha, "total_count": statuses.len(), "statuses": statuses}),
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
}
