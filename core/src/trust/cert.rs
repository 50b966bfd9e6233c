//! Reading what verification needs out of an X.509 signing certificate.

use super::{
    OID_GITHUB_WORKFLOW_SHA, OID_ISSUER_V1, OID_ISSUER_V2, OID_SOURCE_REPOSITORY_DIGEST,
    OID_SOURCE_REPOSITORY_URI,
};
use x509_cert::{
    Certificate,
    der::{Decode, Encode, asn1::Utf8StringRef},
    ext::pkix::{SubjectAltName, name::GeneralName},
};

/// The facts of a Fulcio-style leaf certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub der: Vec<u8>,
    /// Subject public key info, DER: the key the signature must verify under.
    pub spki_der: Vec<u8>,
    /// URI and email subject alternative names.
    pub identities: Vec<String>,
    /// The OIDC issuer (extension .1.8, falling back to .1.1).
    pub issuer: Option<String>,
    /// The commit the signing workflow ran for: Source Repository Digest (.1.13), falling
    /// back to the deprecated GitHub Workflow SHA (.1.3).
    pub source_commit: Option<String>,
    /// Source Repository URI (.1.12).
    pub source_repository: Option<String>,
    pub not_before: u64,
    pub not_after: u64,
}

/// Parses the first certificate of a PEM string (laid out as cosign accepts, see
/// [`super::pem`]).
pub fn parse_pem(pem: &str) -> Result<CertInfo, String> {
    let ders = super::pem::certificates(pem).map_err(|e| format!("certificate PEM: {e}"))?;
    let der = ders.first().ok_or("no certificate in PEM")?;
    let c = Certificate::from_der(der).map_err(|e| format!("certificate DER: {e}"))?;
    info(&c)
}

/// Parses every certificate of a PEM chain to DER.
pub fn pem_chain_to_der(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    super::pem::certificates(pem).map_err(|e| format!("certificate chain PEM: {e}"))
}

pub fn info(c: &Certificate) -> Result<CertInfo, String> {
    let tbs = c.tbs_certificate();
    let mut identities = Vec::new();
    if let Ok(Some((_, san))) = tbs.get_extension::<SubjectAltName>() {
        for n in san.0 {
            match n {
                GeneralName::UniformResourceIdentifier(u) => identities.push(u.to_string()),
                GeneralName::Rfc822Name(e) => identities.push(e.to_string()),
                _ => {}
            }
        }
    }
    let utf8 = |raw: &[u8]| {
        Utf8StringRef::from_der(raw)
            .ok()
            .map(|s| s.as_str().to_owned())
    };
    let raw_str = |raw: &[u8]| std::str::from_utf8(raw).ok().map(str::to_owned);
    let (mut v2, mut v1) = (None, None);
    let (mut digest, mut workflow_sha, mut repository) = (None, None, None);
    for ext in tbs.extensions().into_iter().flatten() {
        let raw = ext.extn_value.as_bytes();
        match ext.extn_id.to_string().as_str() {
            OID_ISSUER_V2 => v2 = utf8(raw),
            OID_ISSUER_V1 => v1 = raw_str(raw),
            OID_SOURCE_REPOSITORY_DIGEST => digest = utf8(raw),
            OID_GITHUB_WORKFLOW_SHA => workflow_sha = raw_str(raw),
            OID_SOURCE_REPOSITORY_URI => repository = utf8(raw),
            _ => {}
        }
    }
    Ok(CertInfo {
        der: c.to_der().map_err(|e| e.to_string())?,
        spki_der: tbs
            .subject_public_key_info()
            .to_der()
            .map_err(|e| e.to_string())?,
        identities,
        issuer: v2.or(v1),
        source_commit: digest.or(workflow_sha),
        source_repository: repository,
        not_before: tbs.validity().not_before.to_unix_duration().as_secs(),
        not_after: tbs.validity().not_after.to_unix_duration().as_secs(),
    })
}

/// DER → PEM ("CERTIFICATE").
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}
