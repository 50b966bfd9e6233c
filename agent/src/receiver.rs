//! Talking to the receiver as this instance: read the desired state (conditionally), send
//! reports. The desired state is verified against the pinned receiver keys (several during
//! a rotation) before anything of it is used; keys are never fetched at run time.

use anyhow::Context as _;
use powernode_module::desired_state::{self, DesiredState, Envelope, TrustedKey};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    pub instance: String,
    pub token: String,
    /// The receiver keys this node trusts: a state must carry a signature by one of them.
    pub keys: Vec<TrustedKey>,
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
    pub fn new(
        url: &str,
        instance: &str,
        token: &str,
        keys: Vec<TrustedKey>,
    ) -> anyhow::Result<Receiver> {
        if keys.is_empty() {
            anyhow::bail!("--receiver-key: no receiver key to trust");
        }
        Ok(Receiver {
            url: url.trim_end_matches('/').to_owned(),
            instance: instance.to_owned(),
            token: token.trim().to_owned(),
            keys,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    /// Trusts `ca_pem` (a PEM CA certificate) for the receiver's TLS, besides the system's
    /// roots.
    pub fn with_ca(mut self, ca_pem: Option<&[u8]>) -> anyhow::Result<Receiver> {
        if let Some(pem) = ca_pem {
            let ca = reqwest::Certificate::from_pem(pem).context("--receiver-ca")?;
            self.http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .add_root_certificate(ca)
                .build()?;
        }
        Ok(self)
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
        let (doc, id) = desired_state::verify_trusted(&envelope, &self.keys)
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

/// The instance token is a bearer secret: it goes to a receiver over TLS, or over plain HTTP
/// only on loopback (the receiver on the same host, or a local TLS-terminating proxy), unless
/// the operator says `--insecure`. The same rule the builder applies to registries.
pub fn check_transport(url: &str, insecure: bool) -> anyhow::Result<()> {
    let u = reqwest::Url::parse(url).with_context(|| format!("--receiver {url:?}"))?;
    let host = u.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback || insecure => Ok(()),
        "http" => anyhow::bail!(
            "--receiver {url}: plain http to a receiver that is not on loopback would send the \
             instance token in the clear; use https (--receiver-ca for a private CA), or \
             --insecure to allow it anyway"
        ),
        other => anyhow::bail!("--receiver {url}: scheme {other:?} is neither https nor http"),
    }
}

#[cfg(test)]
mod tests {
    use super::check_transport;

    #[test]
    fn the_token_goes_over_tls_or_stays_on_the_host() {
        for ok in [
            "https://receiver.example.org",
            "http://127.0.0.1:8080",
            "http://127.3.4.5",
            "http://[::1]:8080",
            "http://localhost:8080",
        ] {
            assert!(check_transport(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://receiver.example.org",
            "http://10.0.0.7:8080",
            "http://[fd00::1]",
        ] {
            let e = check_transport(refused, false).unwrap_err().to_string();
            assert!(e.contains("--insecure"), "{refused}: {e}");
            assert!(
                check_transport(refused, true).is_ok(),
                "{refused} with --insecure"
            );
        }
        assert!(check_transport("ftp://receiver", true).is_err());
        assert!(check_transport("not a url", true).is_err());
    }
}
