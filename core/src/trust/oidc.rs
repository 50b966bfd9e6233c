//! The OIDC identity token for keyless signing: given directly (`SIGSTORE_ID_TOKEN`), or
//! requested from the CI runner (`ACTIONS_ID_TOKEN_REQUEST_URL` + `_TOKEN`, as GitHub and
//! Forgejo/Gitea Actions provide).
//!
//! We read the token's claims only to build Fulcio's proof of possession; Fulcio verifies the
//! token. CI tokens often carry no `email`, so nothing here requires one.

use base64::Engine as _;
use serde::Deserialize;

#[derive(Debug, Clone)]
pub struct IdToken {
    pub raw: String,
    pub subject: String,
    pub issuer: String,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    iss: Option<String>,
}

impl IdToken {
    /// Reads the claims of a JWT (without verifying it: Fulcio does that).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim().to_owned();
        let mut parts = raw.split('.');
        let (Some(_), Some(body), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("the identity token is not a JWT (header.payload.signature)".into());
        };
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body.trim_end_matches('='))
            .map_err(|_| "the identity token's payload is not base64url")?;
        let c: Claims = serde_json::from_slice(&json)
            .map_err(|e| format!("the identity token's claims: {e}"))?;
        // Fulcio's challenge is the email for email identities, else the subject.
        let subject = c
            .email
            .or(c.sub)
            .ok_or("the identity token has neither `email` nor `sub`")?;
        Ok(IdToken {
            raw,
            subject,
            issuer: c.iss.unwrap_or_default(),
        })
    }
}

/// Finds a token: an explicit one, else `SIGSTORE_ID_TOKEN`, else the Actions runner's.
pub async fn discover(explicit: Option<String>, http: &reqwest::Client) -> Result<IdToken, String> {
    if let Some(t) = explicit.filter(|t| !t.is_empty()) {
        return IdToken::parse(&t);
    }
    if let Ok(t) = std::env::var("SIGSTORE_ID_TOKEN")
        && !t.is_empty()
    {
        return IdToken::parse(&t);
    }
    let (Ok(url), Ok(bearer)) = (
        std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) else {
        return Err(
            "keyless signing needs an OIDC token: pass --identity-token, set SIGSTORE_ID_TOKEN, \
                    or run in Actions with `permissions: id-token: write` \
                    (ACTIONS_ID_TOKEN_REQUEST_URL/ACTIONS_ID_TOKEN_REQUEST_TOKEN)"
                .into(),
        );
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{sep}audience=sigstore");
    #[derive(Deserialize)]
    struct Answer {
        value: String,
    }
    let res = http
        .get(&url)
        .bearer_auth(bearer)
        .send()
        .await
        .map_err(|e| format!("requesting an OIDC token from the Actions runner: {e}"))?;
    let status = res.status();
    if !status.is_success() {
        return Err(format!(
            "the Actions runner refused an OIDC token: {status}"
        ));
    }
    let a: Answer = res
        .json()
        .await
        .map_err(|e| format!("the Actions runner's OIDC answer: {e}"))?;
    IdToken::parse(&a.value)
}
