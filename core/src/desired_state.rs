//! The desired state of a template: what every instance built from it should run, signed by
//! the receiver so a node can check it came from there and was not changed on the way.
//!
//! The signed form is a DSSE envelope (the format in-toto and Sigstore use): the canonical
//! JSON of [`DesiredState`] as `payload`, and an ECDSA P-256 signature over DSSE's
//! pre-authentication encoding of (payload type, payload). A verifier checks the signature
//! over the exact bytes received and only then parses them, so no re-serialisation can make
//! a signed document mean something else. `state_id` is the SHA-256 of the payload bytes.
//!
//! Schema 2 binds a document to its template and its place in time: `sequence` rises with
//! every state a template serves, `issued_at`/`expires_at` bound its validity. A node pins
//! its template, keeps the highest sequence it applied and refuses anything older, foreign
//! or expired ([`DesiredState::admit`]), so a saved state cannot be replayed to take it back
//! to a yanked version. Schema 1 documents carry none of that and are refused.

use crate::digest::Digest;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner, Signature};

mod keys;
pub use keys::{SigningKey, TrustedKey, key_id, pem_blocks};

/// DSSE `payloadType` of a desired-state document.
pub const PAYLOAD_TYPE: &str = "application/vnd.powernode.desired-state.v1+json";
/// The document's own format version (2: `sequence`, `issued_at`, `expires_at`, `hold`).
pub const SCHEMA_VERSION: u32 = 2;

/// What instances of one template should run, in composition order (lowest layer first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    pub schema_version: u32,
    pub template_id: String,
    /// Rises with every state the template serves (never reused, also across replicas).
    pub sequence: u64,
    /// Unix seconds when the receiver signed it.
    pub issued_at: i64,
    /// Unix seconds after which no node applies it (the receiver re-issues well before).
    pub expires_at: i64,
    /// Set on a *hold* state: the receiver cannot compose anything it may serve, so nodes
    /// keep what they run and apply nothing (`modules` is empty then). The reason, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    pub platform: String,
    pub modules: Vec<DesiredModule>,
    /// The composefs digest of the merged tree, as a node that composes `modules` in this
    /// order will measure it.
    pub composefs_digest: Digest,
    pub composefs_format: u32,
}

/// One module of a desired state: everything a node needs to fetch and verify it itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredModule {
    pub name: String,
    pub version: String,
    /// `registry/repository@sha256:…`: fetched by digest, never by tag.
    pub reference: String,
    pub manifest_digest: Digest,
    pub composefs_digest: Digest,
    /// Who must have signed it: the module's pinned policy, not anything from the artifact.
    pub signer: SignerPolicy,
    /// The Debian packages the module names (its manifest's `package_spec`), which the node
    /// installs with its own apt before the module's files are laid over them. Absent when
    /// empty, so the states of package-less templates keep their ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<crate::package::PackageSpec>,
}

/// A module's pinned signer policy, as the receiver enforces it at ingest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerPolicy {
    /// PEM public keys (key-based signing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Keyless: the certificate identity and issuer must match these (anchored) regexps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_regexp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_regexp: Option<String>,
    pub require_tlog: bool,
}

impl DesiredState {
    /// The canonical bytes: compact JSON, fields in declaration order, no trailing newline.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `sha256:<hex>` of the canonical bytes.
    pub fn state_id(&self) -> Digest {
        Digest::of(&self.canonical_bytes())
    }

    /// The id of what the state says, without when and in which order it was issued: two
    /// states with the same content id differ only by `sequence`, `issued_at`, `expires_at`.
    pub fn content_id(&self) -> Digest {
        DesiredState {
            sequence: 0,
            issued_at: 0,
            expires_at: 0,
            ..self.clone()
        }
        .state_id()
    }

    /// Whether a node may act on this (already verified) state: it must be for the node's
    /// `template` (when pinned), newer than the highest sequence it applied (`applied`, with
    /// that state's id: the same state again is not a replay) and not expired at `now`
    /// (unix seconds).
    pub fn admit(
        &self,
        state_id: &str,
        template: Option<&str>,
        applied: Option<(u64, &str)>,
        now: i64,
    ) -> Result<(), Inadmissible> {
        if let Some(t) = template
            && t != self.template_id
        {
            return Err(Inadmissible::ForeignTemplate {
                state: self.template_id.clone(),
                pinned: t.to_owned(),
            });
        }
        if let Some((seq, id)) = applied
            && (self.sequence < seq || (self.sequence == seq && state_id != id))
        {
            return Err(Inadmissible::Replay {
                sequence: self.sequence,
                applied: seq,
            });
        }
        if now >= self.expires_at {
            return Err(Inadmissible::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }
}

/// Why a node will not act on a correctly signed state.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Inadmissible {
    #[error("the desired state is for template {state:?}, but this node is pinned to {pinned:?}")]
    ForeignTemplate { state: String, pinned: String },
    #[error(
        "the desired state has sequence {sequence}, not above {applied}, the highest this node applied (a replay or downgrade)"
    )]
    Replay { sequence: u64, applied: u64 },
    #[error("the desired state expired at {expires_at} (unix seconds; now {now})")]
    Expired { expires_at: i64, now: i64 },
}

/// An instance's report: what it observed running. The contract between the node agent,
/// which sends it, and the receiver, which parses it (unknown fields are refused).
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The desired state the instance worked towards.
    pub desired_state_id: Digest,
    /// Module → the composefs digest of what runs.
    pub running_module_digests: std::collections::BTreeMap<String, Digest>,
    /// The merged tree's digest, measured from the active image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composefs_digest: Option<Digest>,
    pub status: ReportStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Per running module: its packages' installed versions and its units' states, as the
    /// node read them from dpkg and systemd (the node's word, like the rest of the report).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub modules: std::collections::BTreeMap<String, ModuleObservation>,
    /// Bytes the agent's state directory holds (generations, objects, records): what its
    /// garbage collection keeps, for operators watching disk use across the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_bytes: Option<u64>,
}

/// What a node observed of one module's packages and units.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleObservation {
    /// Package → its installed version (`dpkg-query`'s `${Version}`), `null` when it is not
    /// installed.
    #[serde(default)]
    pub packages: std::collections::BTreeMap<String, Option<String>>,
    /// Unit → its `ActiveState` (`active`, `failed`, `inactive`, …).
    #[serde(default)]
    pub units: std::collections::BTreeMap<String, String>,
}

#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    /// The desired state runs.
    Applied,
    /// The last attempt failed; what ran before runs again.
    Failed,
    /// The target is refused, or out of retries.
    Rejected,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Applied => "applied",
            ReportStatus::Failed => "failed",
            ReportStatus::Rejected => "rejected",
        }
    }
}

/// A DSSE envelope carrying a desired state.
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// Base64 of the canonical JSON.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// `sha256:<hex>` of the signing public key's PEM text, so a node holding several
    /// pinned keys (during a rotation) knows which one to try.
    pub keyid: String,
    /// Base64 of the ASN.1 DER ECDSA signature.
    pub sig: String,
}

/// DSSE's pre-authentication encoding: `DSSEv1 <len> <type> <len> <body>`, the bytes a
/// signature covers (public so tests and fuzz targets can sign documents of their own).
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("signing the desired state: {0}")]
    Sign(String),
    #[error("not a desired-state envelope: {0}")]
    Malformed(String),
    #[error("payload type {0:?} is not {PAYLOAD_TYPE}")]
    PayloadType(String),
    #[error("no signature verifies with the pinned receiver key")]
    BadSignature,
    #[error(
        "no signature on the desired state is by a key this node trusts: signed by {signed_by:?}, \
         trusted {trusted:?}; add the receiver's current key (GET /api/v1/signing-keys) to receiver_key"
    )]
    UntrustedKey {
        signed_by: Vec<String>,
        trusted: Vec<String>,
    },
    #[error("the signed document is not a desired state: {0}")]
    Document(String),
    #[error("desired state schema_version {0} is not supported (expected {SCHEMA_VERSION})")]
    Schema(u32),
}

/// Signs `state`: the envelope and its `state_id`.
pub fn sign(
    state: &DesiredState,
    signer: &SigStoreSigner,
    public_pem: &str,
) -> Result<(Envelope, Digest), EnvelopeError> {
    sign_all(state, &[SigningKey { signer, public_pem }])
}

/// Signs `state` with every key of `keys` (one signature each, in order): during a key
/// rotation the receiver signs with the old and the new key, so nodes trusting either
/// accept the state.
pub fn sign_all(
    state: &DesiredState,
    keys: &[SigningKey<'_>],
) -> Result<(Envelope, Digest), EnvelopeError> {
    let body = state.canonical_bytes();
    let signed = pae(PAYLOAD_TYPE, &body);
    let signatures = keys
        .iter()
        .map(|k| {
            let sig = k
                .signer
                .sign(&signed)
                .map_err(|e| EnvelopeError::Sign(e.to_string()))?;
            Ok(EnvelopeSignature {
                keyid: key_id(k.public_pem),
                sig: STANDARD.encode(sig),
            })
        })
        .collect::<Result<Vec<_>, EnvelopeError>>()?;
    if signatures.is_empty() {
        return Err(EnvelopeError::Sign("no signing key".into()));
    }
    Ok((
        Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: STANDARD.encode(&body),
            signatures,
        },
        Digest::of(&body),
    ))
}

/// Verifies `envelope` against the set of keys a node trusts: it holds if a signature whose
/// `keyid` names a trusted key verifies with that key. Signatures by keys the node does not
/// trust are ignored; when no signature names a trusted key the refusal lists both sides.
pub fn verify_trusted(
    envelope: &Envelope,
    keys: &[TrustedKey],
) -> Result<(DesiredState, Digest), EnvelopeError> {
    let named: Vec<&TrustedKey> = keys
        .iter()
        .filter(|k| envelope.signatures.iter().any(|s| s.keyid == k.keyid))
        .collect();
    if named.is_empty() {
        if envelope.payload_type != PAYLOAD_TYPE {
            return Err(EnvelopeError::PayloadType(envelope.payload_type.clone()));
        }
        return Err(EnvelopeError::UntrustedKey {
            signed_by: envelope
                .signatures
                .iter()
                .map(|s| s.keyid.chars().take(80).collect())
                .take(8)
                .collect(),
            trusted: keys.iter().map(|k| k.keyid.clone()).collect(),
        });
    }
    for k in named {
        let mine = Envelope {
            signatures: envelope
                .signatures
                .iter()
                .filter(|s| s.keyid == k.keyid)
                .cloned()
                .collect(),
            ..envelope.clone()
        };
        match verify(&mine, &k.key) {
            Err(EnvelopeError::BadSignature) => continue,
            other => return other,
        }
    }
    Err(EnvelopeError::BadSignature)
}

/// Verifies `envelope` with `key` (the receiver key pinned by the verifier) and returns the
/// document and its `state_id`. Nothing of the document is read before the signature holds.
pub fn verify(
    envelope: &Envelope,
    key: &CosignVerificationKey,
) -> Result<(DesiredState, Digest), EnvelopeError> {
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(EnvelopeError::PayloadType(envelope.payload_type.clone()));
    }
    let body = STANDARD
        .decode(envelope.payload.as_bytes())
        .map_err(|e| EnvelopeError::Malformed(format!("payload: {e}")))?;
    let signed = pae(PAYLOAD_TYPE, &body);
    let ok = envelope.signatures.iter().any(|s| {
        STANDARD
            .decode(s.sig.as_bytes())
            .is_ok_and(|sig| key.verify_signature(Signature::Raw(&sig), &signed).is_ok())
    });
    if !ok {
        return Err(EnvelopeError::BadSignature);
    }
    #[derive(Deserialize)]
    struct Head {
        schema_version: u32,
    }
    let head: Head =
        serde_json::from_slice(&body).map_err(|e| EnvelopeError::Document(e.to_string()))?;
    if head.schema_version != SCHEMA_VERSION {
        return Err(EnvelopeError::Schema(head.schema_version));
    }
    let state: DesiredState =
        serde_json::from_slice(&body).map_err(|e| EnvelopeError::Document(e.to_string()))?;
    Ok((state, Digest::of(&body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigstore::crypto::SigningScheme;

    fn doc() -> DesiredState {
        let d: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        DesiredState {
            schema_version: SCHEMA_VERSION,
            template_id: "edge".into(),
            sequence: 7,
            issued_at: 1_000,
            expires_at: 2_000,
            hold: None,
            platform: "rpi4".into(),
            modules: vec![DesiredModule {
                name: "my-redis".into(),
                version: "0.1.0".into(),
                reference: format!("r.example/acct/my-redis@{d}"),
                manifest_digest: d,
                composefs_digest: d,
                signer: SignerPolicy {
                    identity_regexp: Some("^x$".into()),
                    issuer_regexp: Some("^y$".into()),
                    require_tlog: true,
                    ..Default::default()
                },
                packages: vec!["redis-server".parse().unwrap()],
            }],
            composefs_digest: d,
            composefs_format: 1,
        }
    }

    fn keypair() -> (SigStoreSigner, String, CosignVerificationKey) {
        let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .unwrap();
        let pem = signer
            .to_sigstore_keypair()
            .unwrap()
            .public_key_to_pem()
            .unwrap();
        let key = CosignVerificationKey::try_from_pem(pem.as_bytes()).unwrap();
        (signer, pem, key)
    }

    #[test]
    fn signed_state_verifies_and_keeps_its_id() {
        let (signer, pem, key) = keypair();
        let (env, id) = sign(&doc(), &signer, &pem).unwrap();
        assert_eq!(id, doc().state_id());
        let (back, id2) = verify(&env, &key).unwrap();
        assert_eq!(back, doc());
        assert_eq!(id2, id);
        assert_eq!(env.signatures[0].keyid, key_id(&pem));
    }

    #[test]
    fn changed_payload_other_key_or_type_is_refused() {
        let (signer, pem, key) = keypair();
        let (env, _) = sign(&doc(), &signer, &pem).unwrap();
        let mut changed = doc();
        changed.modules[0].version = "0.2.0".into();
        let tampered = Envelope {
            payload: STANDARD.encode(changed.canonical_bytes()),
            ..env.clone()
        };
        assert_eq!(verify(&tampered, &key), Err(EnvelopeError::BadSignature));
        let (_, _, other) = keypair();
        assert_eq!(verify(&env, &other), Err(EnvelopeError::BadSignature));
        let retyped = Envelope {
            payload_type: "application/json".into(),
            ..env
        };
        assert!(matches!(
            verify(&retyped, &key),
            Err(EnvelopeError::PayloadType(_))
        ));
    }

    #[test]
    fn schema_1_documents_are_refused() {
        let (signer, pem, key) = keypair();
        let mut v = serde_json::to_value(doc()).unwrap();
        v["schema_version"] = 1.into();
        let body = serde_json::to_vec(&v).unwrap();
        let sig = signer.sign(&pae(PAYLOAD_TYPE, &body)).unwrap();
        let env = Envelope {
            payload_type: PAYLOAD_TYPE.into(),
            payload: STANDARD.encode(&body),
            signatures: vec![EnvelopeSignature {
                keyid: key_id(&pem),
                sig: STANDARD.encode(sig),
            }],
        };
        assert_eq!(verify(&env, &key), Err(EnvelopeError::Schema(1)));
    }

    #[test]
    fn admit_refuses_foreign_older_and_expired_states() {
        let d = doc();
        let id = d.state_id().to_string();
        assert_eq!(d.admit(&id, Some("edge"), Some((6, "x")), 1_500), Ok(()));
        assert_eq!(d.admit(&id, None, None, 1_999), Ok(()));
        assert_eq!(
            d.admit(&id, None, Some((7, &id)), 1_500),
            Ok(()),
            "the same state"
        );
        assert!(matches!(
            d.admit(&id, Some("core"), None, 1_500),
            Err(Inadmissible::ForeignTemplate { .. })
        ));
        assert_eq!(
            d.admit(&id, None, Some((8, "x")), 1_500),
            Err(Inadmissible::Replay {
                sequence: 7,
                applied: 8
            })
        );
        assert!(matches!(
            d.admit(&id, None, Some((7, "other")), 1_500),
            Err(Inadmissible::Replay { .. })
        ));
        assert!(matches!(
            d.admit(&id, None, None, 2_000),
            Err(Inadmissible::Expired { .. })
        ));
    }

    #[test]
    fn content_id_ignores_when_and_in_which_order() {
        let mut later = doc();
        later.sequence = 9;
        later.issued_at = 5;
        later.expires_at = 6;
        assert_ne!(later.state_id(), doc().state_id());
        assert_eq!(later.content_id(), doc().content_id());
    }

    #[test]
    fn rotation_overlap_verifies_with_either_key_and_refuses_strangers() {
        let (old, old_pem, _) = keypair();
        let (new, new_pem, _) = keypair();
        let both = [
            SigningKey {
                signer: &old,
                public_pem: &old_pem,
            },
            SigningKey {
                signer: &new,
                public_pem: &new_pem,
            },
        ];
        let (env, id) = sign_all(&doc(), &both).unwrap();
        let keyids: Vec<_> = env.signatures.iter().map(|s| s.keyid.clone()).collect();
        assert_eq!(keyids, [key_id(&old_pem), key_id(&new_pem)]);
        let trust = |pems: &[&str]| -> Vec<TrustedKey> {
            pems.iter()
                .map(|p| TrustedKey::from_pem(p).unwrap())
                .collect()
        };
        for t in [
            trust(&[&old_pem]),
            trust(&[&new_pem]),
            trust(&[&new_pem, &old_pem]),
        ] {
            assert_eq!(verify_trusted(&env, &t).unwrap().1, id);
        }
        let (only_new, _) = sign(&doc(), &new, &new_pem).unwrap();
        let err = verify_trusted(&only_new, &trust(&[&old_pem])).unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::UntrustedKey {
                signed_by: vec![key_id(&new_pem)],
                trusted: vec![key_id(&old_pem)],
            }
        );
        assert!(err.to_string().contains("signing-keys"), "{err}");
        // A signature that names a trusted key but was made by another is not enough.
        let mut forged = only_new.clone();
        forged.signatures[0].keyid = key_id(&old_pem);
        assert_eq!(
            verify_trusted(&forged, &trust(&[&old_pem])),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn pae_is_dsse_v1() {
        // The example from the DSSE specification's protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }
}
