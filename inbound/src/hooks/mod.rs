//! Webhook payloads → deliveries and the work they ask for. The receiver's HTTP edge
//! authenticates a request, calls one of these parsers, and records what it returns in one
//! transaction; nothing here knows about the store or the job queue.

pub mod distribution;
pub mod gitea;
pub mod harbor;

use sha2::{Digest as _, Sha256};

/// Why a delivery was refused. Each maps to a 4xx with a reason; nothing is stored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
}

/// One event of a request, deduplicated on `id` (`<source>:<the sender's id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub source: String,
    pub event_type: String,
    /// Hex SHA-256 of the whole request body (kept for the audit of what arrived).
    pub body_sha256: String,
}

/// A new comment on a pull request, as the command job carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrComment {
    /// `owner/name` of the Gitea repository.
    pub repository: String,
    pub pr: i64,
    pub comment_id: i64,
    /// The commenter's login: whose permission every command is checked against.
    pub user: String,
    pub body: String,
}

/// What a delivery asks the receiver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// `tag` was pushed to `repository` in an accepted repository (an artifact, or a
    /// cosign `.sig` tag: the receiver tells them apart).
    Tag { repository: String, tag: String },
    /// A new PR comment: run its commands.
    Comment(PrComment),
    /// Reviews or statuses changed in a Gitea repository: re-evaluate its pending requests.
    Reevaluate { repository: String },
}

/// What a request amounts to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub deliveries: Vec<(Delivery, Vec<Work>)>,
    /// A valid request that asks for nothing (other event types): answer 204.
    pub ignored: bool,
}

pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn tag_pushed(repository: &str, tag: &str) -> Work {
    Work::Tag {
        repository: repository.to_owned(),
        tag: tag.to_owned(),
    }
}
