//! Gitea webhooks. `package` events for container packages start an ingest (they carry no
//! digest: ingest resolves the tag at the registry); untagged `sha256:` versions are
//! ignored. New PR comments become command jobs; reviews and statuses re-evaluate pending
//! promotion requests; other event types are acknowledged with 204.

use super::{Delivery, HookError, Parsed, PrComment, Work, body_sha256, tag_pushed};
use crate::Repositories;
use serde::Deserialize;

#[derive(Deserialize)]
struct PackagePayload {
    action: String,
    package: Package,
}

#[derive(Deserialize)]
struct Package {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    version: String,
    owner: Owner,
}

#[derive(Deserialize)]
struct Owner {
    login: String,
}

#[derive(Deserialize)]
struct CommentPayload {
    action: String,
    #[serde(default)]
    is_pull: bool,
    comment: Comment,
    issue: Issue,
    repository: Repository,
}

#[derive(Deserialize)]
struct Comment {
    id: i64,
    #[serde(default)]
    body: String,
    user: Owner,
}

#[derive(Deserialize)]
struct Issue {
    number: i64,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize)]
struct RepoOnly {
    repository: Repository,
}

fn delivery(id: &str, event: String, body: &[u8]) -> Delivery {
    Delivery {
        id: format!("gitea:{id}"),
        source: "gitea".into(),
        event_type: event,
        body_sha256: body_sha256(body),
    }
}

/// Comments, reviews and statuses: work for the promotion engine.
fn promotion_event(
    event_type: &str,
    delivery_id: &str,
    body: &[u8],
) -> Result<Option<Parsed>, HookError> {
    let bad = |e: serde_json::Error| {
        HookError::BadRequest(format!("not a Gitea {event_type} payload: {e}"))
    };
    let jobs = match event_type {
        "pull_request_comment" | "issue_comment" => {
            let c: CommentPayload = serde_json::from_slice(body).map_err(bad)?;
            // Only new comments on pull requests; edits never run commands.
            if c.action != "created" || !c.is_pull {
                Vec::new()
            } else {
                vec![Work::Comment(PrComment {
                    repository: c.repository.full_name,
                    pr: c.issue.number,
                    comment_id: c.comment.id,
                    user: c.comment.user.login,
                    body: c.comment.body,
                })]
            }
        }
        "pull_request_review_approved"
        | "pull_request_review_rejected"
        | "pull_request_review_comment"
        | "status" => {
            let r: RepoOnly = serde_json::from_slice(body).map_err(bad)?;
            vec![Work::Reevaluate {
                repository: r.repository.full_name,
            }]
        }
        _ => return Ok(None),
    };
    Ok(Some(Parsed {
        deliveries: vec![(delivery(delivery_id, event_type.to_owned(), body), jobs)],
        ignored: false,
    }))
}

pub fn parse(
    event_type: &str,
    delivery_id: &str,
    body: &[u8],
    repos: &Repositories,
) -> Result<Parsed, HookError> {
    if delivery_id.is_empty() {
        return Err(HookError::BadRequest("missing X-Gitea-Delivery".into()));
    }
    if event_type != "package" {
        return Ok(
            promotion_event(event_type, delivery_id, body)?.unwrap_or(Parsed {
                deliveries: Vec::new(),
                ignored: true,
            }),
        );
    }
    let p: PackagePayload = serde_json::from_slice(body)
        .map_err(|e| HookError::BadRequest(format!("not a Gitea package payload: {e}")))?;
    let mut jobs = Vec::new();
    let repo = format!("{}/{}", p.package.owner.login, p.package.name).to_lowercase();
    if p.action == "created"
        && p.package.kind == "container"
        && !p.package.version.starts_with("sha256:")
        && repos.accepts(&repo)
    {
        jobs.push(tag_pushed(&repo, &p.package.version));
    }
    Ok(Parsed {
        deliveries: vec![(
            Delivery {
                id: format!("gitea:{delivery_id}"),
                source: "gitea".into(),
                event_type: format!("package:{}", p.action),
                body_sha256: body_sha256(body),
            },
            jobs,
        )],
        ignored: false,
    })
}
