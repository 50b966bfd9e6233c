//! Talking to the receiver as this instance: read the desired state (conditionally), send
//! reports. The desired state is verified against the pinned receiver key before anything
//! of it is used; the key is never fetched at run time.

use anyhow::Context as _;
use powernode_module::desired_state::{self, DesiredState, Envelope};
use sigstore::crypto::CosignVerificationKey;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    pub instance: String,
    pub token: String,
    pub key: CosignVerificationKey,
    http: reqwest::Client,
}

/// What the receiver answered for the desired state.
#[derive(Debug)]
pub enum Answer {
    /// `If-None-Match` named the served state.
    Unchanged,
    /// A verified document and its `state_id`.
    State(Box<DesiredState>, String),
}

pub use powernode_module::desired_state::Report;

impl Receiver {
    pub fn new(url: &str, instance: &str, token: &str, key_pem: &str) -> anyhow::Result<Receiver> {
        let key = powernode_module::trust::keys::public_from_pem(key_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("--receiver-key: {e}"))?;
        Ok(Receiver {
            url: url.trim_end_matches('/').to_owned(),
            instance: instance.to_owned(),
            token: token.trim().to_owned(),
            key,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    /// `GET /api/v1/instances/{id}/desired-state`, conditional on `current`.
    pub async fn desired(&self, current: Option<&str>) -> anyhow::Result<Answer> {
        let url = format!(
            "{}/api/v1/instances/{}/desired-state",
            self.url, self.instance
        );
        let mut req = self.http.get(&url).bearer_auth(&self.token);
        if let Some(c) = current {
            req = req.header("If-None-Match", format!("\"{c}\""));
        }
        let res = req.send().await.with_context(|| format!("GET {url}"))?;
        match res.status().as_u16() {
            304 => return Ok(Answer::Unchanged),
            200 => {}
            s => {
                let body = res.text().await.unwrap_or_default();
                anyhow::bail!("GET {url}: {s}: {body}");
            }
        }
        let envelope: Envelope = res
            .json()
            .await
            .context("the desired state is not a DSSE envelope")?;
        let (doc, id) = desired_state::verify(&envelope, &self.key)
            .map_err(|e| Refusal(format!("desired state refused: {e}")))?;
        if doc.template_id.is_empty() {
            return Err(Refusal("desired state names no template".into()).into());
        }
        Ok(Answer::State(Box::new(doc), id.to_string()))
    }

    /// `POST /api/v1/instances/{id}/report`.
    pub async fn report(&self, r: &Report) -> anyhow::Result<()> {
        let url = format!("{}/api/v1/instances/{}/report", self.url, self.instance);
        let res = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(r)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        if !res.status().is_success() {
            let s = res.status();
            anyhow::bail!("POST {url}: {s}: {}", res.text().await.unwrap_or_default());
        }
        Ok(())
    }
}

/// A desired state the agent will not act on (bad signature, malformed document).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);
