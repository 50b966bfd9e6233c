//! Exchanging an OIDC token for a short-lived signing certificate at Fulcio (API v2).

use super::oidc::IdToken;
use base64::Engine as _;
use serde::Deserialize;
use sigstore::crypto::SigStoreSigner;

/// A certificate chain from Fulcio, PEM, leaf first.
#[derive(Debug, Clone)]
pub struct SigningCert {
    pub leaf_pem: String,
    pub chain_pem: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    signed_certificate_embedded_sct: Option<Signed>,
    #[serde(default)]
    signed_certificate_detached_sct: Option<Signed>,
}

#[derive(Deserialize)]
struct Signed {
    chain: Chain,
}

#[derive(Deserialize)]
struct Chain {
    certificates: Vec<String>,
}

/// Requests a certificate for `signer`'s public key, proving possession by signing the
/// token's subject.
pub async fn request_certificate(
    http: &reqwest::Client,
    fulcio_url: &str,
    token: &IdToken,
    signer: &SigStoreSigner,
) -> Result<SigningCert, String> {
    let public_pem = signer
        .to_sigstore_keypair()
        .and_then(|k| k.public_key_to_pem())
        .map_err(|e| e.to_string())?;
    let proof = signer
        .sign(token.subject.as_bytes())
        .map_err(|e| e.to_string())?;
    let body = serde_json::json!({
        "credentials": {"oidcIdentityToken": token.raw},
        "publicKeyRequest": {
            "publicKey": {"algorithm": "ECDSA", "content": public_pem},
            "proofOfPossession": base64::engine::general_purpose::STANDARD.encode(proof),
        },
    });
    let endpoint = format!("{}/api/v2/signingCert", fulcio_url.trim_end_matches('/'));
    let res = http
        .post(&endpoint)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("Fulcio {endpoint}: {e}"))?;
    let status = res.status();
    let text = res
        .text()
        .await
        .map_err(|e| format!("Fulcio {endpoint}: {e}"))?;
    if !status.is_success() {
        return Err(format!("Fulcio {endpoint} answered {status}: {text}"));
    }
    let a: Answer = serde_json::from_str(&text)
        .map_err(|e| format!("Fulcio {endpoint}: unexpected answer: {e}"))?;
    let certs = a
        .signed_certificate_embedded_sct
        .or(a.signed_certificate_detached_sct)
        .map(|s| s.chain.certificates)
        .unwrap_or_default();
    let mut it = certs.into_iter();
    let leaf_pem = it
        .next()
        .ok_or_else(|| format!("Fulcio {endpoint}: no certificate in the answer"))?;
    let chain_pem: String = it.collect::<Vec<_>>().join("");
    Ok(SigningCert {
        leaf_pem,
        chain_pem,
    })
}
