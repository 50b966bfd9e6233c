//! Webhook receivers. The edge only authenticates, parses and records: each handler turns a
//! request into deliveries and the jobs they hint at, and [`crate::server`] stores them in
//! one transaction before answering 202. Nothing here knows how to ingest.

pub mod auth;
pub mod distribution;
pub mod gitea;
pub mod harbor;

use crate::store::{NewDelivery, NewJob};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
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

/// The repositories the receiver accepts (`registry.repositories` globs; `*` stays within
/// one path segment).
#[derive(Debug, Clone)]
pub struct Repositories(GlobSet);

impl Repositories {
    pub fn new(globs: &[String]) -> anyhow::Result<Self> {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(
                GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| anyhow::anyhow!("registry.repositories {g:?}: {e}"))?,
            );
        }
        Ok(Repositories(b.build()?))
    }

    pub fn accepts(&self, repo: &str) -> bool {
        self.0.is_match(repo)
    }
}

/// `sha256-<hex>.sig` → `sha256:<hex>`: cosign's signature tag names the signed digest.
pub fn signed_digest_of_tag(tag: &str) -> Option<String> {
    let hex = tag.strip_prefix("sha256-")?.strip_suffix(".sig")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("sha256:{hex}"))
}

/// The job that ingests `repo:tag`.
pub fn ingest_job(repo: &str, tag: &str) -> NewJob {
    NewJob {
        kind: "ingest".into(),
        dedupe_key: format!("ingest:{repo}:{tag}"),
        payload: serde_json::json!({"repository": repo, "tag": tag}),
    }
}

/// The job that re-checks versions waiting for a signature of `digest`.
pub fn signature_job(repo: &str, digest: &str) -> NewJob {
    NewJob {
        kind: "signature".into(),
        dedupe_key: format!("signature:{repo}:{digest}"),
        payload: serde_json::json!({"repository": repo, "digest": digest}),
    }
}

/// The job for a tag pushed to `repo`: a signature re-check for cosign `.sig` tags, an
/// ingest otherwise.
pub fn job_for_tag(repo: &str, tag: &str) -> NewJob {
    match signed_digest_of_tag(tag) {
        Some(d) => signature_job(repo, &d),
        None => ingest_job(repo, tag),
    }
}
