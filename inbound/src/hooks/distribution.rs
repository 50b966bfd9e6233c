//! CNCF Distribution notifications (`application/vnd.docker.distribution.events.v1+json`,
//! and v2 from registry 3). Only `push` events of manifests with a tag in an accepted
//! repository start work; every event is a delivery, deduplicated on its id.

use super::{Delivery, HookError, Parsed, body_sha256, tag_pushed};
use crate::Repositories;
use serde::Deserialize;

#[derive(Deserialize)]
struct Envelope {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    id: String,
    action: String,
    #[serde(default)]
    target: Target,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    tag: Option<String>,
}

/// Media types of manifests (events for blobs are not about versions).
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

pub fn parse(body: &[u8], repos: &Repositories) -> Result<Parsed, HookError> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| {
        HookError::BadRequest(format!("not a Distribution notification envelope: {e}"))
    })?;
    let hash = body_sha256(body);
    let mut out = Parsed::default();
    for e in env.events {
        if e.id.is_empty() {
            return Err(HookError::BadRequest("an event has an empty id".into()));
        }
        let t = &e.target;
        let mut jobs = Vec::new();
        if e.action == "push"
            && MANIFEST_TYPES.contains(&t.media_type.as_str())
            && repos.accepts(&t.repository)
            && let Some(tag) = t.tag.as_deref().filter(|t| !t.is_empty())
        {
            jobs.push(tag_pushed(&t.repository, tag));
        }
        out.deliveries.push((
            Delivery {
                id: format!("distribution:{}", e.id),
                source: "distribution".into(),
                event_type: format!("{}:{}", e.action, t.media_type),
                body_sha256: hash.clone(),
            },
            jobs,
        ));
    }
    Ok(out)
}
