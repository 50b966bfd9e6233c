//! Uploading a hashedrekord entry to Rekor and turning the answer into a cosign bundle.

use super::bundle::{Bundle, BundlePayload, HashedRekord};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogEntry {
    body: String,
    integrated_time: i64,
    #[serde(rename = "logID")]
    log_id: String,
    log_index: i64,
    verification: Verification,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Verification {
    signed_entry_timestamp: String,
}

/// Logs a signature in Rekor at `url` and returns the bundle cosign attaches.
pub async fn upload(
    http: &reqwest::Client,
    url: &str,
    payload: &[u8],
    signature: &[u8],
    public_pem: &str,
) -> Result<Bundle, String> {
    let entry = HashedRekord::new(payload, signature, public_pem);
    let endpoint = format!("{}/api/v1/log/entries", url.trim_end_matches('/'));
    let res = http
        .post(&endpoint)
        .json(&entry)
        .send()
        .await
        .map_err(|e| format!("Rekor {endpoint}: {e}"))?;
    let status = res.status();
    let text = res
        .text()
        .await
        .map_err(|e| format!("Rekor {endpoint}: {e}"))?;
    if !status.is_success() {
        return Err(format!("Rekor {endpoint} answered {status}: {text}"));
    }
    let entries: BTreeMap<String, LogEntry> = serde_json::from_str(&text)
        .map_err(|e| format!("Rekor {endpoint}: unexpected answer: {e}"))?;
    let (_, e) = entries
        .into_iter()
        .next()
        .ok_or_else(|| format!("Rekor {endpoint}: empty answer"))?;
    Ok(Bundle {
        signed_entry_timestamp: e.verification.signed_entry_timestamp,
        payload: BundlePayload {
            body: e.body,
            integrated_time: e.integrated_time,
            log_index: e.log_index,
            log_id: e.log_id,
        },
    })
}
