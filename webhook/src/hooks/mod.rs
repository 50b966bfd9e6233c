//! Webhook receivers. The edge only authenticates, parses and records: each handler turns a
//! request into deliveries and the jobs they hint at, and [`routes`] stores them in
//! one transaction before answering 202. Nothing here knows how to ingest.

pub mod auth;
pub mod distribution;
pub mod gitea;
pub mod harbor;
pub mod routes;

pub use crate::config::Repositories;
use crate::store::{NewDelivery, NewJob};

/// The queue row of the job a tag pushed to `repo` hints at.
pub fn job_for_tag(repo: &str, tag: &str) -> NewJob {
    crate::jobs::Job::for_tag(repo, tag).to_new()
}
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

/// What a request amounts to.
#[derive(Debug, Default)]
pub struct Parsed {
    pub deliveries: Vec<(NewDelivery, Vec<NewJob>)>,
    /// A valid request that asks for nothing (other event types): answer 204.
    pub ignored: bool,
}

pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}
