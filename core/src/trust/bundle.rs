//! cosign's `dev.sigstore.cosign/bundle` annotation: a Rekor entry (hashedrekord) with its
//! signed entry timestamp (SET). Verifying it proves the signature was logged, and when.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    #[serde(rename = "SignedEntryTimestamp")]
    pub signed_entry_timestamp: String,
    #[serde(rename = "Payload")]
    pub payload: BundlePayload,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundlePayload {
    pub body: String,
    pub integrated_time: i64,
    pub log_index: i64,
    #[serde(rename = "logID")]
    pub log_id: String,
}

impl BundlePayload {
    /// The canonical JSON the SET signs: keys sorted, no whitespace (RFC 8785 for these
    /// plain string/integer fields).
    pub fn canonical(&self) -> Vec<u8> {
        let v = serde_json::json!({
            "body": self.body,
            "integratedTime": self.integrated_time,
            "logID": self.log_id,
            "logIndex": self.log_index,
        });
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

/// A hashedrekord entry body, as Rekor stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HashedRekord {
    pub api_version: String,
    pub kind: String,
    pub spec: HashedRekordSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HashedRekordSpec {
    pub data: HrData,
    pub signature: HrSignature,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HrData {
    pub hash: HrHash,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HrHash {
    pub algorithm: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HrSignature {
    pub content: String,
    pub public_key: HrPublicKey,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HrPublicKey {
    pub content: String,
}

impl HashedRekord {
    /// The entry for a signature over `payload` by the key or certificate `public_pem`.
    pub fn new(payload: &[u8], signature: &[u8], public_pem: &str) -> Self {
        let e = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        HashedRekord {
            api_version: "0.0.1".into(),
            kind: "hashedrekord".into(),
            spec: HashedRekordSpec {
                data: HrData {
                    hash: HrHash {
                        algorithm: "sha256".into(),
                        value: hex::encode(Sha256::digest(payload)),
                    },
                },
                signature: HrSignature {
                    content: e(signature),
                    public_key: HrPublicKey {
                        content: e(public_pem.as_bytes()),
                    },
                },
            },
        }
    }

    /// Checks this entry describes exactly this signature, payload and key/certificate.
    pub fn describes(
        &self,
        payload: &[u8],
        signature: &[u8],
        public_pem: &str,
    ) -> Result<(), String> {
        let d = base64::engine::general_purpose::STANDARD;
        if self.kind != "hashedrekord" {
            return Err(format!(
                "bundle entry is a {:?}, not a hashedrekord",
                self.kind
            ));
        }
        let h = &self.spec.data.hash;
        if h.algorithm != "sha256" || h.value != hex::encode(Sha256::digest(payload)) {
            return Err("bundle entry is for a different payload".into());
        }
        let sig = d
            .decode(&self.spec.signature.content)
            .map_err(|_| "bundle entry signature is not base64")?;
        if sig != signature {
            return Err("bundle entry is for a different signature".into());
        }
        let key = d
            .decode(&self.spec.signature.public_key.content)
            .map_err(|_| "bundle entry public key is not base64")?;
        if normalise_pem(&key) != normalise_pem(public_pem.as_bytes()) {
            return Err("bundle entry is for a different certificate or key".into());
        }
        Ok(())
    }
}

fn normalise_pem(b: &[u8]) -> String {
    String::from_utf8_lossy(b).split_whitespace().collect()
}
