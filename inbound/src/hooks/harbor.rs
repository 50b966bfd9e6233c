//! Harbor `PUSH_ARTIFACT` webhooks, in the Default and the CloudEvents format. Harbor sends
//! no delivery id in the Default format and retries the same body, so the body hash is the
//! delivery id there.

use super::{Delivery, HookError, Parsed, body_sha256, tag_pushed};
use crate::Repositories;
use serde::Deserialize;

#[derive(Deserialize)]
struct Default {
    #[serde(rename = "type")]
    kind: String,
    event_data: EventData,
}

#[derive(Deserialize)]
struct CloudEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    #[serde(default)]
    resources: Vec<Resource>,
    repository: Repo,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    tag: String,
}

#[derive(Deserialize)]
struct Repo {
    repo_full_name: String,
}

pub fn parse(content_type: &str, body: &[u8], repos: &Repositories) -> Result<Parsed, HookError> {
    let hash = body_sha256(body);
    let (id, push, data) = if content_type.starts_with("application/cloudevents+json") {
        let e: CloudEvent = serde_json::from_slice(body)
            .map_err(|e| HookError::BadRequest(format!("not a Harbor CloudEvent: {e}")))?;
        (
            format!("harbor:{}", e.id),
            e.kind == "harbor.artifact.pushed",
            e.data,
        )
    } else {
        let e: Default = serde_json::from_slice(body)
            .map_err(|e| HookError::BadRequest(format!("not a Harbor webhook payload: {e}")))?;
        (
            format!("harbor:sha256:{hash}"),
            e.kind == "PUSH_ARTIFACT",
            e.event_data,
        )
    };
    if !push {
        return Ok(Parsed {
            deliveries: Vec::new(),
            ignored: true,
        });
    }
    let repo = data.repository.repo_full_name;
    let jobs = data
        .resources
        .iter()
        .filter(|r| !r.tag.is_empty() && !r.tag.starts_with("sha256:") && repos.accepts(&repo))
        .map(|r| tag_pushed(&repo, &r.tag))
        .collect();
    Ok(Parsed {
        deliveries: vec![(
            Delivery {
                id,
                source: "harbor".into(),
                event_type: "PUSH_ARTIFACT".into(),
                body_sha256: hash,
            },
            jobs,
        )],
        ignored: false,
    })
}
