//! Sigstore's `trusted_root.json` (what cosign's `--trusted-root` reads): the Fulcio CA
//! chains and Rekor public keys a verifier trusts. A private deployment is configured the
//! same way as the public one.

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct TrustedRoot {
    /// Certificate authorities: each chain is DER certificates, leaf-most first, root last.
    pub certificate_authorities: Vec<Vec<Vec<u8>>>,
    /// Transparency logs: (log id = SHA-256 of the key's DER, public key DER).
    pub tlogs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    tlogs: Vec<RawTlog>,
    #[serde(default)]
    certificate_authorities: Vec<RawCa>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTlog {
    public_key: RawKey,
    #[serde(default)]
    log_id: Option<RawLogId>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCa {
    cert_chain: RawChain,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawCert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCert {
    raw_bytes: String,
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("invalid base64: {e}"))
}

impl TrustedRoot {
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| format!("trusted root: {e}"))?;
        let mut t = TrustedRoot::default();
        for ca in raw.certificate_authorities {
            let chain = ca
                .cert_chain
                .certificates
                .iter()
                .map(|c| b64(&c.raw_bytes))
                .collect::<Result<Vec<_>, _>>()?;
            if !chain.is_empty() {
                t.certificate_authorities.push(chain);
            }
        }
        for tl in raw.tlogs {
            let key = b64(&tl.public_key.raw_bytes)?;
            let id = match tl.log_id {
                Some(l) => b64(&l.key_id)?,
                None => Sha256::digest(&key).to_vec(),
            };
            t.tlogs.push((id, key));
        }
        if t.certificate_authorities.is_empty() && t.tlogs.is_empty() {
            return Err(
                "trusted root lists no certificate authorities and no transparency logs".into(),
            );
        }
        Ok(t)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Builds a trusted_root.json for a CA chain (DER, root last) and optional Rekor key —
    /// what an operator writes for a private Fulcio/Rekor, and what tests use.
    pub fn to_json(ca_chain: &[Vec<u8>], rekor_key_der: Option<&[u8]>) -> String {
        let e = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let certs: Vec<_> = ca_chain
            .iter()
            .map(|c| serde_json::json!({"rawBytes": e(c)}))
            .collect();
        let tlogs: Vec<_> = rekor_key_der
            .map(|k| {
                serde_json::json!({
                    "baseUrl": "",
                    "hashAlgorithm": "SHA2_256",
                    "publicKey": {"rawBytes": e(k), "keyDetails": "PKIX_ECDSA_P256_SHA_256"},
                    "logId": {"keyId": e(&Sha256::digest(k))},
                })
            })
            .into_iter()
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": tlogs,
            "certificateAuthorities": [{"certChain": {"certificates": certs}, "validFor": {"start": "1970-01-01T00:00:00Z"}}],
            "ctlogs": [],
            "timestampAuthorities": [],
        }))
        .unwrap_or_default()
    }
}
