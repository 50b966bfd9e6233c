//! Sigstore's `trusted_root.json` (what cosign's `--trusted-root` reads): the Fulcio CA
//! chains, Rekor and Certificate Transparency log keys a verifier trusts, each for the time
//! window (`validFor`) it was trusted in. A private deployment is configured the same way
//! as the public one.

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::{fmt, path::Path};

/// When a CA or log is trusted (`validFor`), in Unix seconds; a missing end is open.
///
/// A rotated-out Fulcio CA or log key stays in the trusted root with an `end`, so old
/// signatures still verify; it must not vouch for anything signed after that.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidFor {
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl ValidFor {
    /// Whether `t` (Unix seconds) is inside the window, both ends included.
    pub fn contains(&self, t: i64) -> bool {
        self.start.is_none_or(|s| s <= t) && self.end.is_none_or(|e| t <= e)
    }
}

impl fmt::Display for ValidFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |v: Option<i64>| v.map(rfc3339).unwrap_or_else(|| "…".into());
        write!(f, "{} to {}", t(self.start), t(self.end))
    }
}

/// Unix seconds as RFC 3339 (UTC), for messages and for writing trusted roots.
pub fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("@{t}"))
}

/// A Fulcio certificate authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateAuthority {
    /// DER certificates, leaf-most first, root last.
    pub chain: Vec<Vec<u8>>,
    /// Certificates signed (by Rekor's clock, else their notBefore) in this window chain here.
    pub valid_for: ValidFor,
}

/// A transparency log (Rekor) or Certificate Transparency log key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKey {
    /// The log id: SHA-256 of the key's DER, unless the trusted root says otherwise.
    pub log_id: Vec<u8>,
    /// SubjectPublicKeyInfo, DER.
    pub public_key_der: Vec<u8>,
    /// Entries (or SCTs) timestamped in this window verify under this key.
    pub valid_for: ValidFor,
}

impl LogKey {
    /// A key whose log id is the SHA-256 of its DER, trusted from the epoch on.
    pub fn new(public_key_der: &[u8]) -> Self {
        LogKey {
            log_id: Sha256::digest(public_key_der).to_vec(),
            public_key_der: public_key_der.to_vec(),
            valid_for: ValidFor {
                start: Some(0),
                end: None,
            },
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedRoot {
    pub certificate_authorities: Vec<CertificateAuthority>,
    /// Rekor logs.
    pub tlogs: Vec<LogKey>,
    /// Certificate Transparency logs. When any is listed, a Fulcio certificate needs an
    /// embedded SCT from one of them.
    pub ctlogs: Vec<LogKey>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    tlogs: Vec<RawTlog>,
    #[serde(default)]
    ctlogs: Vec<RawTlog>,
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
    #[serde(default)]
    valid_for: Option<RawValidFor>,
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
    #[serde(default)]
    valid_for: Option<RawValidFor>,
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

#[derive(Deserialize)]
struct RawValidFor {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("invalid base64: {e}"))
}

fn valid_for(v: Option<RawValidFor>, what: &str) -> Result<ValidFor, String> {
    let Some(v) = v else {
        return Ok(ValidFor::default());
    };
    let t = |s: Option<String>, field: &str| {
        s.map(|s| {
            chrono::DateTime::parse_from_rfc3339(&s)
                .map(|d| d.timestamp())
                .map_err(|e| format!("{what}: validFor.{field} {s:?} is not an RFC 3339 time: {e}"))
        })
        .transpose()
    };
    let w = ValidFor {
        start: t(v.start, "start")?,
        end: t(v.end, "end")?,
    };
    if let (Some(s), Some(e)) = (w.start, w.end)
        && e < s
    {
        return Err(format!("{what}: validFor ends ({w}) before it starts"));
    }
    Ok(w)
}

fn log_key(tl: RawTlog, what: &str) -> Result<LogKey, String> {
    let key = b64(&tl.public_key.raw_bytes).map_err(|e| format!("{what}: {e}"))?;
    let log_id = match tl.log_id {
        Some(l) => b64(&l.key_id).map_err(|e| format!("{what}: logId: {e}"))?,
        None => Sha256::digest(&key).to_vec(),
    };
    Ok(LogKey {
        log_id,
        public_key_der: key,
        valid_for: valid_for(tl.public_key.valid_for, what)?,
    })
}

impl TrustedRoot {
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| format!("trusted root: {e}"))?;
        let mut t = TrustedRoot::default();
        for (i, ca) in raw.certificate_authorities.into_iter().enumerate() {
            let chain = ca
                .cert_chain
                .certificates
                .iter()
                .map(|c| b64(&c.raw_bytes))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("certificateAuthorities[{i}]: {e}"))?;
            if !chain.is_empty() {
                t.certificate_authorities.push(CertificateAuthority {
                    chain,
                    valid_for: valid_for(ca.valid_for, &format!("certificateAuthorities[{i}]"))?,
                });
            }
        }
        for (i, tl) in raw.tlogs.into_iter().enumerate() {
            t.tlogs.push(log_key(tl, &format!("tlogs[{i}]"))?);
        }
        for (i, tl) in raw.ctlogs.into_iter().enumerate() {
            t.ctlogs.push(log_key(tl, &format!("ctlogs[{i}]"))?);
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
        TrustedRoot {
            certificate_authorities: vec![CertificateAuthority {
                chain: ca_chain.to_vec(),
                valid_for: ValidFor {
                    start: Some(0),
                    end: None,
                },
            }],
            tlogs: rekor_key_der.map(LogKey::new).into_iter().collect(),
            ctlogs: Vec::new(),
        }
        .to_json_pretty()
    }

    /// This trusted root as Sigstore's `trusted_root.json` (pretty-printed).
    pub fn to_json_pretty(&self) -> String {
        let e = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let window = |v: &ValidFor| {
            let mut m = serde_json::Map::new();
            if let Some(s) = v.start {
                m.insert("start".into(), rfc3339(s).into());
            }
            if let Some(t) = v.end {
                m.insert("end".into(), rfc3339(t).into());
            }
            serde_json::Value::Object(m)
        };
        let log = |l: &LogKey| {
            serde_json::json!({
                "baseUrl": "",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": e(&l.public_key_der),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": window(&l.valid_for),
                },
                "logId": {"keyId": e(&l.log_id)},
            })
        };
        let cas: Vec<_> = self
            .certificate_authorities
            .iter()
            .map(|ca| {
                let certs: Vec<_> = ca
                    .chain
                    .iter()
                    .map(|c| serde_json::json!({"rawBytes": e(c)}))
                    .collect();
                serde_json::json!({"certChain": {"certificates": certs}, "validFor": window(&ca.valid_for)})
            })
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": self.tlogs.iter().map(log).collect::<Vec<_>>(),
            "certificateAuthorities": cas,
            "ctlogs": self.ctlogs.iter().map(log).collect::<Vec<_>>(),
            "timestampAuthorities": [],
        }))
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_read_from_authorities_tlogs_and_ctlogs_and_written_back() {
        let text = r#"{
          "certificateAuthorities": [{"certChain": {"certificates": [{"rawBytes": "AAEC"}]},
            "validFor": {"start": "2021-03-07T03:20:29.000Z", "end": "2022-12-31T23:59:59.999Z"}}],
          "tlogs": [{"publicKey": {"rawBytes": "AQID", "validFor": {"start": "2021-01-12T11:53:27Z"}}}],
          "ctlogs": [{"publicKey": {"rawBytes": "BAUG", "validFor": {"start": "2021-03-14T00:00:00Z", "end": "2022-10-31T23:59:59Z"}},
            "logId": {"keyId": "CAkK"}}]
        }"#;
        let t = TrustedRoot::from_json(text).unwrap();
        let ca = t.certificate_authorities[0].valid_for;
        assert_eq!((ca.start, ca.end), (Some(1615087229), Some(1672531199)));
        assert!(ca.contains(1672531199) && !ca.contains(1672531200));
        assert!(!ca.contains(1615087228));
        assert_eq!(t.tlogs[0].valid_for.end, None);
        assert!(t.tlogs[0].valid_for.contains(i64::MAX));
        assert_eq!(t.tlogs[0].log_id, Sha256::digest([1u8, 2, 3]).to_vec());
        assert_eq!(t.ctlogs[0].log_id, vec![8, 9, 10]);
        assert_eq!(t.ctlogs[0].valid_for.end, Some(1667260799));
        assert_eq!(TrustedRoot::from_json(&t.to_json_pretty()).unwrap(), t);
    }

    #[test]
    fn a_window_that_is_not_rfc3339_or_ends_before_it_starts_is_refused() {
        let bad = r#"{"certificateAuthorities": [{"certChain": {"certificates": [{"rawBytes": "AAEC"}]},
            "validFor": {"start": "yesterday"}}]}"#;
        let err = TrustedRoot::from_json(bad).unwrap_err();
        assert!(
            err.contains("certificateAuthorities[0]: validFor.start \"yesterday\""),
            "{err}"
        );
        let bad = r#"{"tlogs": [{"publicKey": {"rawBytes": "AQID",
            "validFor": {"start": "2022-01-01T00:00:00Z", "end": "2021-01-01T00:00:00Z"}}}]}"#;
        let err = TrustedRoot::from_json(bad).unwrap_err();
        assert!(err.contains("tlogs[0]: validFor ends"), "{err}");
    }
}
