//! The queue's typed payload: what a job is ([`Job`], one value shared by the producers —
//! hooks, the reconciler, promotion's outbox, the fleet's recomputations — and the consumer,
//! `jobs::worker`). Stored as its `kind` and a JSON payload (the variant's fields). It lives
//! beside the queue rather than with the worker so that producers (promotion, fleet) and the
//! worker that dispatches to them do not import each other.

use super::{NewJob, RequestId, VersionId};
use powernode_inbound::hooks::PrComment;
use serde::{Deserialize, Serialize};

/// A unit of background work. Stored as its `kind` and a JSON payload (the variant's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum Job {
    /// Ingest `repository:tag` (a push hint, or a tag the reconciler found).
    Ingest { repository: String, tag: String },
    /// A cosign `.sig` tag was pushed: re-check versions waiting for a signature of `digest`.
    Signature { repository: String, digest: String },
    /// A new PR comment: run its commands.
    Command(PrComment),
    /// Reviews or statuses changed in a Gitea repository: re-evaluate its pending requests.
    Reevaluate { repository: String },
    /// A version entered or left `live`, or a template changed: recompute the desired states
    /// it may change. `modules`: the templates whose closure reaches one of these modules;
    /// `template`: that one; neither: every template (start-up, migrations, new keys). Both
    /// fields are optional and absent when unset, so the full job's payload is `{}` as it
    /// always was, and a replica from before them reads a targeted job as a full one.
    /// Built by [`crate::fleet::recompute_job`] and its siblings.
    DesiredStates {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        modules: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        template: Option<super::TemplateId>,
    },
    /// A version changed stage: set its `powernode/lifecycle` commit status to the stage it is
    /// in when this runs. Enqueued in the transition's own transaction (an outbox): a crash
    /// or a failing Gitea after the commit delays the status, never loses it; a burst of
    /// transitions collapses into one call that reports the newest stage.
    CommitStatus { version: VersionId },
    /// Tells the requester on their PR that a request decided earlier (pending, then met by
    /// reviews, statuses or the soak timer) was carried out. Enqueued in the transition's
    /// transaction, like [`Job::CommitStatus`].
    Reply {
        request: RequestId,
        repository: String,
        pr: i64,
        user: String,
        text: String,
    },
}

/// What a queue row holds: the [`Job`] variant its payload decodes into, read once from the
/// `kind` column (as `JobState` is from `state`). A kind this receiver does not know — a row
/// written by a newer one — is kept by its name as `Unknown`: refusing the row would make
/// claiming it fail again and again, while the worker dead-letters it with the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Ingest,
    Signature,
    Command,
    Reevaluate,
    DesiredStates,
    CommitStatus,
    Reply,
    #[serde(untagged)]
    Unknown(String),
}

impl JobKind {
    /// The name stored in the `kind` column (and the tag of [`Job`]'s serde form).
    pub fn as_str(&self) -> &str {
        match self {
            JobKind::Ingest => "ingest",
            JobKind::Signature => "signature",
            JobKind::Command => "command",
            JobKind::Reevaluate => "reevaluate",
            JobKind::DesiredStates => "desired_states",
            JobKind::CommitStatus => "commit_status",
            JobKind::Reply => "reply",
            JobKind::Unknown(kind) => kind,
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for JobKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Job {
    /// The job a tag pushed to `repository` hints at: a signature re-check for cosign's
    /// `sha256-<hex>.sig` tags, an ingest otherwise.
    pub fn for_tag(repository: &str, tag: &str) -> Job {
        match signed_digest_of_tag(tag) {
            Some(digest) => Job::Signature {
                repository: repository.to_owned(),
                digest,
            },
            None => Job::Ingest {
                repository: repository.to_owned(),
                tag: tag.to_owned(),
            },
        }
    }

    pub fn kind(&self) -> JobKind {
        match self {
            Job::Ingest { .. } => JobKind::Ingest,
            Job::Signature { .. } => JobKind::Signature,
            Job::Command(_) => JobKind::Command,
            Job::Reevaluate { .. } => JobKind::Reevaluate,
            Job::DesiredStates { .. } => JobKind::DesiredStates,
            Job::CommitStatus { .. } => JobKind::CommitStatus,
            Job::Reply { .. } => JobKind::Reply,
        }
    }

    /// Identical queued jobs collapse into one (a burst of hints for the same tag runs once).
    pub fn dedupe_key(&self) -> String {
        match self {
            Job::Ingest { repository, tag } => format!("ingest:{repository}:{tag}"),
            Job::Signature { repository, digest } => format!("signature:{repository}:{digest}"),
            Job::Command(c) => format!("command:{}:{}", c.repository, c.comment_id),
            Job::Reevaluate { repository } => format!("reevaluate:{repository}"),
            Job::DesiredStates {
                modules: None,
                template: None,
            } => "desired_states".into(),
            Job::DesiredStates { modules, template } => {
                let mut key = "desired_states".to_owned();
                if let Some(t) = template {
                    key.push_str(&format!(":template:{t}"));
                }
                if let Some(m) = modules {
                    key.push_str(&format!(":modules:{}", m.join(",")));
                }
                key
            }
            Job::CommitStatus { version } => format!("commit_status:{version}"),
            Job::Reply { request, .. } => format!("reply:{request}"),
        }
    }

    /// The queue's row for this job.
    pub fn to_new(&self) -> NewJob {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        NewJob {
            kind: self.kind(),
            dedupe_key: self.dedupe_key(),
            payload: v["payload"].take(),
        }
    }

    /// Reads a stored job back.
    pub fn decode(kind: &str, payload: &serde_json::Value) -> Result<Job, String> {
        serde_json::from_value(serde_json::json!({"kind": kind, "payload": payload}))
            .map_err(|e| format!("job of kind {kind:?}: {e}"))
    }
}

/// `sha256-<hex>.sig` → `sha256:<hex>`: cosign's signature tag names the signed digest.
pub fn signed_digest_of_tag(tag: &str) -> Option<String> {
    let hex = tag.strip_prefix("sha256-")?.strip_suffix(".sig")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_the_queue_shape() {
        let jobs = [
            Job::for_tag("acme/m", "v1.0.0"),
            Job::for_tag("acme/m", &format!("sha256-{}.sig", "a".repeat(64))),
            Job::Command(PrComment {
                repository: "acme/m".into(),
                pr: 7,
                comment_id: 9,
                user: "bob".into(),
                body: "/status".into(),
            }),
            Job::Reevaluate {
                repository: "acme/m".into(),
            },
            Job::CommitStatus {
                version: "my-redis@0.1.0".into(),
            },
            Job::Reply {
                request: "comment:acme/m:9:0".into(),
                repository: "acme/m".into(),
                pr: 7,
                user: "bob".into(),
                text: "done".into(),
            },
        ];
        for j in jobs {
            assert_eq!(
                serde_json::to_value(&j).unwrap()["kind"],
                serde_json::to_value(j.kind()).unwrap(),
                "{j:?}: the kind column names the variant"
            );
            let row = j.to_new();
            assert_eq!(
                Job::decode(row.kind.as_str(), &row.payload),
                Ok(j.clone()),
                "{row:?}"
            );
        }
        // The stored payloads keep their shape (rows written before the enum still decode).
        assert_eq!(
            Job::for_tag("acme/m", "v1").to_new().payload,
            serde_json::json!({"repository": "acme/m", "tag": "v1"})
        );
        assert!(matches!(
            Job::for_tag("acme/m", &format!("sha256-{}.sig", "a".repeat(64))),
            Job::Signature { digest, .. } if digest == format!("sha256:{}", "a".repeat(64))
        ));
        assert!(Job::decode("frobnicate", &serde_json::json!({})).is_err());
        assert!(Job::decode("ingest", &serde_json::json!({"repository": 1})).is_err());
    }
}
