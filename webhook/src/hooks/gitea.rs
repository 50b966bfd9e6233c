//! Gitea webhooks. `package` events for container packages start an ingest (they carry no
//! digest: ingest resolves the tag at the registry); untagged `sha256:` versions are
//! ignored. Other event types belong to the promotion engine and are acknowledged with 204.

use super::{HookError, Parsed, Repositories, body_sha256, job_for_tag};
use crate::store::NewDelivery;
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

pub fn parse(
    event_type: &str,
    delivery_id: &str,
    body: &[u8],
    repos: &Repositories,
) -> Result<Parsed, HookError> {
    if event_type != "package" {
        return Ok(Parsed {
            deliveries: Vec::new(),
            ignored: true,
        });
    }
    if delivery_id.is_empty() {
        return Err(HookError::BadRequest("missing X-Gitea-Delivery".into()));
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
        jobs.push(job_for_tag(&repo, &p.package.version));
    }
    Ok(Parsed {
        deliveries: vec![(
            NewDelivery {
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
