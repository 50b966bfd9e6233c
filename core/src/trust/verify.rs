//! Verification, check by check (ARCHITECTURE.md §5, SECURITY.md):
//!
//! 1. the layer is the payload it claims (digest), and the payload names this exact
//!    manifest digest;
//! 2. the signature verifies over the payload with the key, or with the certificate's key;
//! 3. a bundle, when present (required for keyless unless the policy waives it), describes
//!    this signature, payload and certificate, and its signed entry timestamp verifies
//!    under a trusted transparency-log key — it also gives the signing time;
//! 4. the certificate chains to a certificate authority the trusted root trusted when it
//!    was signed, was valid at signing time, and — when the trusted root lists CT logs —
//!    embeds a valid SCT from one of them;
//! 5. the certificate's identity and issuer match the pinned policy.
//!
//! The policy comes from the verifier's configuration, never from the artifact. An error
//! fetching signatures is an error, not "unsigned".

use super::{
    bundle::{Bundle, HashedRekord},
    cert::{self, CertInfo},
    layout::{
        ANN_BUNDLE, ANN_CERTIFICATE, ANN_CHAIN, ANN_SIGNATURE, SIMPLESIGNING, SignatureManifest,
        signature_tag,
    },
    payload::{PAYLOAD_TYPE, Payload},
    sct,
    trusted_root::{CertificateAuthority, TrustedRoot, rfc3339},
};
use crate::{
    digest::Digest,
    registry::{Registry, RegistryError, with_tag},
};
use base64::Engine as _;
use oci_client::Reference;
use regex::Regex;
use sigstore::crypto::{CosignVerificationKey, Signature};
use std::{collections::BTreeMap, fmt};

/// A public key the policy trusts, with its PEM (for matching Rekor entries).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub key: CosignVerificationKey,
    pub pem: String,
}

impl TrustedKey {
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        Ok(TrustedKey {
            key: super::keys::public_from_pem(pem.as_bytes())?,
            pem: pem.to_owned(),
        })
    }
}

/// Who may sign: keys, and/or keyless identities under trusted roots.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub keys: Vec<TrustedKey>,
    /// Keyless: both regexps must be set for certificates to be accepted.
    pub identity: Option<Regex>,
    pub issuer: Option<Regex>,
    pub trusted_root: TrustedRoot,
    /// Whether a transparency-log bundle is required for keyless signatures (cosign's
    /// default; `--insecure-ignore-tlog` turns it off).
    pub require_tlog: bool,
}

impl Policy {
    fn keyless(&self) -> Option<(&Regex, &Regex)> {
        Some((self.identity.as_ref()?, self.issuer.as_ref()?))
    }
}

/// Why one signature was not accepted. The code strings are stable (metrics labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    PayloadDigestMismatch,
    PayloadInvalid(String),
    WrongManifest { signed: String },
    SignatureMissing,
    SignatureInvalid,
    KeyMismatch,
    CertificateMissing,
    CertificateInvalid(String),
    CertificateUntrusted(String),
    CertificateExpired(String),
    CertificateNotLogged(String),
    IdentityMismatch(Vec<String>),
    IssuerMismatch(Option<String>),
    TlogMissing,
    BundleInvalid(String),
    BundleMismatch(String),
    KeylessNotAllowed,
}

impl Reason {
    pub fn code(&self) -> &'static str {
        match self {
            Reason::PayloadDigestMismatch => "payload_digest_mismatch",
            Reason::PayloadInvalid(_) => "payload_invalid",
            Reason::WrongManifest { .. } => "wrong_manifest",
            Reason::SignatureMissing => "signature_missing",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::KeyMismatch => "key_mismatch",
            Reason::CertificateMissing => "certificate_missing",
            Reason::CertificateInvalid(_) => "certificate_invalid",
            Reason::CertificateUntrusted(_) => "certificate_untrusted",
            Reason::CertificateExpired(_) => "certificate_expired",
            Reason::CertificateNotLogged(_) => "certificate_not_logged",
            Reason::IdentityMismatch(_) => "identity_mismatch",
            Reason::IssuerMismatch(_) => "issuer_mismatch",
            Reason::TlogMissing => "tlog_missing",
            Reason::BundleInvalid(_) => "bundle_invalid",
            Reason::BundleMismatch(_) => "bundle_mismatch",
            Reason::KeylessNotAllowed => "keyless_not_allowed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::PayloadDigestMismatch => {
                write!(f, "the layer's content does not match its digest")
            }
            Reason::PayloadInvalid(e) => {
                write!(f, "the payload is not a cosign signature payload: {e}")
            }
            Reason::WrongManifest { signed } => {
                write!(
                    f,
                    "the payload signs another manifest ({signed}), not this one"
                )
            }
            Reason::SignatureMissing => write!(f, "the layer has no signature annotation"),
            Reason::SignatureInvalid => write!(f, "the signature does not verify over the payload"),
            Reason::KeyMismatch => write!(f, "the signature does not verify with any trusted key"),
            Reason::CertificateMissing => write!(
                f,
                "no certificate, and no trusted key verifies the signature"
            ),
            Reason::CertificateInvalid(e) => write!(f, "the certificate cannot be read: {e}"),
            Reason::CertificateUntrusted(e) => {
                write!(f, "the certificate does not chain to a trusted root: {e}")
            }
            Reason::CertificateExpired(e) => {
                write!(f, "the certificate was not valid at signing time: {e}")
            }
            Reason::CertificateNotLogged(e) => write!(
                f,
                "the certificate has no valid SCT from a CT log of the trusted root: {e}"
            ),
            Reason::IdentityMismatch(ids) => {
                write!(
                    f,
                    "the certificate identity {ids:?} does not match the pinned identity"
                )
            }
            Reason::IssuerMismatch(i) => {
                write!(
                    f,
                    "the certificate issuer {i:?} does not match the pinned issuer"
                )
            }
            Reason::TlogMissing => {
                write!(f, "no transparency-log bundle, and the policy requires one")
            }
            Reason::BundleInvalid(e) => write!(f, "the transparency-log bundle is invalid: {e}"),
            Reason::BundleMismatch(e) => write!(
                f,
                "the transparency-log bundle does not describe this signature: {e}"
            ),
            Reason::KeylessNotAllowed => {
                write!(
                    f,
                    "the signature is keyless, but the policy pins no identity and issuer"
                )
            }
        }
    }
}

/// One signature layer, as fetched.
#[derive(Debug, Clone)]
pub struct LayerInput {
    pub layer_digest: String,
    pub media_type: String,
    pub payload: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

/// What an accepted signature tells about its signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub layer_digest: String,
    /// The certificate's identity (keyless) or `None` (key).
    pub identity: Option<String>,
    pub issuer: Option<String>,
    /// Index of the trusted key that verified it (key-based).
    pub key_index: Option<usize>,
    /// Rekor's integrated time, when a bundle was verified.
    pub integrated_time: Option<i64>,
    /// Keyless: the commit the certificate says the signing workflow ran for (Fulcio's
    /// Source Repository Digest, else the deprecated GitHub Workflow SHA).
    pub source_commit: Option<String>,
    /// Keyless: the certificate's Source Repository URI.
    pub source_repository: Option<String>,
}

/// Checks one signature layer against `digest` under `policy`, at time `now` (seconds).
pub fn verify_layer(
    l: &LayerInput,
    digest: &Digest,
    policy: &Policy,
    now: u64,
) -> Result<Verified, Reason> {
    // 1. Payload.
    if l.layer_digest != Digest::of(&l.payload).to_string() {
        return Err(Reason::PayloadDigestMismatch);
    }
    if l.media_type != SIMPLESIGNING {
        return Err(Reason::PayloadInvalid(format!(
            "media type {}",
            l.media_type
        )));
    }
    let payload: Payload =
        serde_json::from_slice(&l.payload).map_err(|e| Reason::PayloadInvalid(e.to_string()))?;
    if payload.critical.kind != PAYLOAD_TYPE {
        return Err(Reason::PayloadInvalid(format!(
            "type {:?}",
            payload.critical.kind
        )));
    }
    if payload.critical.image.docker_manifest_digest != digest.to_string() {
        return Err(Reason::WrongManifest {
            signed: payload.critical.image.docker_manifest_digest,
        });
    }
    let sig_b64 = l
        .annotations
        .get(ANN_SIGNATURE)
        .ok_or(Reason::SignatureMissing)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig_b64.trim())
        .map_err(|_| Reason::SignatureInvalid)?;
    let cert_pem = l
        .annotations
        .get(ANN_CERTIFICATE)
        .filter(|c| !c.trim().is_empty());

    // 2. Signature, by key first.
    for (i, k) in policy.keys.iter().enumerate() {
        if k.key
            .verify_signature(Signature::Raw(&sig), &l.payload)
            .is_ok()
        {
            let integrated_time = match l.annotations.get(ANN_BUNDLE) {
                Some(b) => Some(check_bundle(b, &l.payload, &sig, &k.pem, policy)?),
                None => None,
            };
            return Ok(Verified {
                layer_digest: l.layer_digest.clone(),
                identity: None,
                issuer: None,
                key_index: Some(i),
                integrated_time,
                source_commit: None,
                source_repository: None,
            });
        }
    }
    let Some(cert_pem) = cert_pem else {
        return Err(if policy.keys.is_empty() {
            Reason::CertificateMissing
        } else {
            Reason::KeyMismatch
        });
    };
    let Some((identity_re, issuer_re)) = policy.keyless() else {
        return Err(if policy.keys.is_empty() {
            Reason::KeylessNotAllowed
        } else {
            Reason::KeyMismatch
        });
    };
    let info = cert::parse_pem(cert_pem).map_err(Reason::CertificateInvalid)?;
    let key = CosignVerificationKey::try_from_der(&info.spki_der)
        .map_err(|e| Reason::CertificateInvalid(e.to_string()))?;
    key.verify_signature(Signature::Raw(&sig), &l.payload)
        .map_err(|_| Reason::SignatureInvalid)?;

    // 3. Bundle → signing time.
    let integrated_time = match l.annotations.get(ANN_BUNDLE) {
        Some(b) => Some(check_bundle(b, &l.payload, &sig, cert_pem, policy)?),
        None if policy.require_tlog => return Err(Reason::TlogMissing),
        None => None,
    };
    let signing_time = integrated_time.map(|t| t.max(0) as u64).unwrap_or(now);
    // Without a log, the certificate's own start is the best claim of when it was issued.
    let issued_at = integrated_time.unwrap_or(info.not_before as i64);

    // 4. Chain, validity at signing time, CT.
    let chain = l
        .annotations
        .get(ANN_CHAIN)
        .map(|c| cert::pem_chain_to_der(c).map_err(Reason::CertificateInvalid))
        .transpose()?
        .unwrap_or_default();
    let issuer_spki = check_chain(&info, &chain, &policy.trusted_root, signing_time, issued_at)?;
    if !policy.trusted_root.ctlogs.is_empty() {
        sct::verify_embedded(&info.der, &issuer_spki, &policy.trusted_root.ctlogs)
            .map_err(Reason::CertificateNotLogged)?;
    }

    // 5. Identity and issuer.
    if !info.identities.iter().any(|id| identity_re.is_match(id)) {
        return Err(Reason::IdentityMismatch(info.identities));
    }
    match &info.issuer {
        Some(iss) if issuer_re.is_match(iss) => {}
        other => return Err(Reason::IssuerMismatch(other.clone())),
    }
    Ok(Verified {
        layer_digest: l.layer_digest.clone(),
        identity: info.identities.first().cloned(),
        issuer: info.issuer,
        key_index: None,
        integrated_time,
        source_commit: info.source_commit,
        source_repository: info.source_repository,
    })
}

/// OID 1.3.6.1.5.5.7.3.3 (id-kp-codeSigning), DER content bytes.
const EKU_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];

/// Checks the chain under the authorities trusted when the certificate was issued
/// (`issued_at`) and its validity at `at`; returns the SPKI (DER) of the leaf's issuer.
fn check_chain(
    info: &CertInfo,
    chain: &[Vec<u8>],
    root: &TrustedRoot,
    at: u64,
    issued_at: i64,
) -> Result<Vec<u8>, Reason> {
    if root.certificate_authorities.is_empty() {
        return Err(Reason::CertificateUntrusted(
            "no trusted root configured (give --trusted-root)".into(),
        ));
    }
    let (current, retired): (Vec<_>, Vec<_>) = root
        .certificate_authorities
        .iter()
        .partition(|ca| ca.valid_for.contains(issued_at));
    let err = match verify_path(info, chain, &current, at) {
        Ok(spki) => return Ok(spki),
        Err(e) => e,
    };
    // Name the window when an authority outside it would have vouched for the certificate.
    if let Some(ca) = retired
        .iter()
        .find(|ca| verify_path(info, chain, &[**ca], at).is_ok())
    {
        return Err(Reason::CertificateUntrusted(format!(
            "its certificate authority is trusted for certificates issued {}, but this one was issued at {}",
            ca.valid_for,
            rfc3339(issued_at)
        )));
    }
    Err(err)
}

fn verify_path(
    info: &CertInfo,
    chain: &[Vec<u8>],
    cas: &[&CertificateAuthority],
    at: u64,
) -> Result<Vec<u8>, Reason> {
    use rustls_pki_types::{CertificateDer, UnixTime};
    use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};
    let leaf = CertificateDer::from(info.der.as_slice());
    let ee =
        EndEntityCert::try_from(&leaf).map_err(|e| Reason::CertificateInvalid(format!("{e:?}")))?;
    let root_ders: Vec<CertificateDer<'_>> = cas
        .iter()
        .filter_map(|ca| ca.chain.last())
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchors = root_ders
        .iter()
        .map(|d| {
            anchor_from_trusted_cert(d)
                .map_err(|e| Reason::CertificateUntrusted(format!("trusted root: {e:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut intermediates: Vec<CertificateDer<'_>> = chain
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    for ca in cas {
        for d in &ca.chain[..ca.chain.len().saturating_sub(1)] {
            intermediates.push(CertificateDer::from(d.as_slice()));
        }
    }
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        time,
        KeyUsage::required(EKU_CODE_SIGNING),
        None,
        None,
    )
    .map(|path| path.issuer_spki().as_ref().to_vec())
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            Reason::CertificateExpired(format!(
                "valid {}..{}, signed at {at}",
                info.not_before, info.not_after
            ))
        }
        other => Reason::CertificateUntrusted(format!("{other:?}")),
    })
}

/// Verifies a bundle's SET and that it describes this signature; returns the integrated time.
fn check_bundle(
    bundle_json: &str,
    payload: &[u8],
    sig: &[u8],
    public_pem: &str,
    policy: &Policy,
) -> Result<i64, Reason> {
    let b: Bundle =
        serde_json::from_str(bundle_json).map_err(|e| Reason::BundleInvalid(e.to_string()))?;
    let d = base64::engine::general_purpose::STANDARD;
    let log_id = hex::decode(&b.payload.log_id)
        .map_err(|_| Reason::BundleInvalid("logID is not hex".into()))?;
    let Some(tlog) = policy
        .trusted_root
        .tlogs
        .iter()
        .find(|t| t.log_id == log_id)
    else {
        return Err(Reason::BundleInvalid(format!(
            "transparency log {} is not in the trusted root",
            b.payload.log_id
        )));
    };
    let key = CosignVerificationKey::try_from_der(&tlog.public_key_der)
        .map_err(|e| Reason::BundleInvalid(e.to_string()))?;
    let set = d
        .decode(&b.signed_entry_timestamp)
        .map_err(|_| Reason::BundleInvalid("SignedEntryTimestamp is not base64".into()))?;
    key.verify_signature(Signature::Raw(&set), &b.payload.canonical())
        .map_err(|_| Reason::BundleInvalid("the signed entry timestamp does not verify".into()))?;
    // A log key vouches only for entries integrated while it was trusted.
    let at = b.payload.integrated_time;
    if !tlog.valid_for.contains(at) {
        return Err(Reason::BundleInvalid(format!(
            "transparency log {} is trusted for entries integrated {}, but this one was integrated at {}",
            b.payload.log_id,
            tlog.valid_for,
            rfc3339(at)
        )));
    }
    let body = d
        .decode(&b.payload.body)
        .map_err(|_| Reason::BundleInvalid("body is not base64".into()))?;
    let entry: HashedRekord =
        serde_json::from_slice(&body).map_err(|e| Reason::BundleInvalid(e.to_string()))?;
    entry
        .describes(payload, sig, public_pem)
        .map_err(Reason::BundleMismatch)?;
    Ok(b.payload.integrated_time)
}

/// Why verification of a reference failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("could not fetch signatures: {0}")]
    Fetch(#[from] RegistryError),
    #[error("{digest} is not signed: no signatures at {tag}")]
    Unsigned { digest: Digest, tag: String },
    #[error("{0}")]
    InvalidManifest(String),
    #[error("no signature of {digest} satisfies the policy:{}", list(.rejected))]
    Rejected {
        digest: Digest,
        rejected: Vec<(String, Reason)>,
    },
}

fn list(r: &[(String, Reason)]) -> String {
    r.iter()
        .map(|(l, why)| format!("\n  layer {l}: {why}"))
        .collect()
}

impl VerifyError {
    /// A stable label for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Fetch(_) => "fetch_failed",
            VerifyError::Unsigned { .. } => "unsigned",
            VerifyError::InvalidManifest(_) => "signature_manifest_invalid",
            VerifyError::Rejected { rejected, .. } => rejected
                .first()
                .map(|(_, r)| r.code())
                .unwrap_or("rejected"),
        }
    }
}

/// Largest signature payload we download (cosign payloads are a few hundred bytes).
const MAX_PAYLOAD: u64 = 64 << 10;

/// Fetches the signatures of `repo@digest` and returns those that satisfy `policy`.
pub async fn verify(
    registry: &Registry,
    repo: &Reference,
    digest: &Digest,
    policy: &Policy,
) -> Result<Vec<Verified>, VerifyError> {
    let tag = signature_tag(digest);
    let sig_ref = with_tag(repo, &tag);
    let Some((bytes, _)) = registry.fetch_manifest(&sig_ref).await? else {
        return Err(VerifyError::Unsigned {
            digest: *digest,
            tag: sig_ref.whole(),
        });
    };
    let m = SignatureManifest::parse(&bytes).map_err(VerifyError::InvalidManifest)?;
    if m.layers.is_empty() {
        return Err(VerifyError::Unsigned {
            digest: *digest,
            tag: sig_ref.whole(),
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut ok = Vec::new();
    let mut rejected = Vec::new();
    for layer in &m.layers {
        let d: Digest = match layer.digest.parse() {
            Ok(d) => d,
            Err(_) => {
                rejected.push((layer.digest.clone(), Reason::PayloadDigestMismatch));
                continue;
            }
        };
        let payload = registry.pull_small_blob(&sig_ref, &d, MAX_PAYLOAD).await?;
        let input = LayerInput {
            layer_digest: layer.digest.clone(),
            media_type: layer.media_type.clone(),
            payload,
            annotations: layer.annotations.clone().unwrap_or_default(),
        };
        match verify_layer(&input, digest, policy, now) {
            Ok(v) => ok.push(v),
            Err(r) => rejected.push((layer.digest.clone(), r)),
        }
    }
    if ok.is_empty() {
        return Err(VerifyError::Rejected {
            digest: *digest,
            rejected,
        });
    }
    Ok(ok)
}
