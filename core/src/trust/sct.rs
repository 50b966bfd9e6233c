//! Certificate Transparency for Fulcio certificates (RFC 6962): Fulcio logs every
//! certificate it issues in a CT log and embeds the log's signed promise (an SCT) in the
//! certificate. A certificate without a valid SCT from a trusted log was not published,
//! so its misissuance could go unnoticed; cosign refuses it when its trusted root lists
//! CT logs, and so do we.
//!
//! The SCT signs the *precertificate*: the leaf's TBSCertificate without the SCT extension,
//! with the SHA-256 of the issuer's public key (RFC 6962 section 3.2).

use super::trusted_root::{LogKey, rfc3339};
use sha2::{Digest as _, Sha256};
use sigstore::crypto::{CosignVerificationKey, Signature};
use x509_cert::{
    Certificate,
    der::{self, Decode, Encode, Tag, TagNumber, Tagged},
    ext::{
        Extension,
        pkix::{
            SignedCertificateTimestampList,
            sct::{HashAlgorithm, SignatureAlgorithm, SignedCertificateTimestamp, Version},
        },
    },
};

/// OID of the embedded SCT list extension (RFC 6962 section 3.3).
pub const OID_SCT_LIST: &str = "1.3.6.1.4.1.11129.2.4.2";

/// Checks that `leaf_der` embeds at least one SCT that verifies under one of `logs`, for a
/// time inside that log's window. `issuer_spki_der` is the key that signed the leaf (from
/// the verified chain). Returns the accepted SCT's time (Unix milliseconds).
pub fn verify_embedded(
    leaf_der: &[u8],
    issuer_spki_der: &[u8],
    logs: &[LogKey],
) -> Result<u64, String> {
    let cert = Certificate::from_der(leaf_der).map_err(|e| format!("certificate DER: {e}"))?;
    let list = match cert
        .tbs_certificate()
        .get_extension::<SignedCertificateTimestampList>()
    {
        Ok(Some((_, list))) => list,
        Ok(None) => return Err("the certificate embeds no SCT".into()),
        Err(e) => return Err(format!("the SCT list extension is malformed: {e}")),
    };
    let scts = list
        .parse_timestamps()
        .map_err(|e| format!("the SCT list is malformed: {e:?}"))?;
    if scts.is_empty() {
        return Err("the certificate's SCT list is empty".into());
    }
    let tbs = precert_tbs_der(leaf_der).map_err(|e| format!("certificate DER: {e}"))?;
    let issuer_key_hash: [u8; 32] = Sha256::digest(issuer_spki_der).into();
    let mut why = Vec::new();
    for (i, s) in scts.iter().enumerate() {
        let sct = match s.parse_timestamp() {
            Ok(sct) => sct,
            Err(e) => {
                why.push(format!("SCT {i} is malformed: {e:?}"));
                continue;
            }
        };
        match check_one(&sct, &tbs, &issuer_key_hash, logs) {
            Ok(()) => return Ok(sct.timestamp),
            Err(e) => why.push(format!("SCT {i}: {e}")),
        }
    }
    Err(why.join("; "))
}

fn check_one(
    sct: &SignedCertificateTimestamp,
    tbs: &[u8],
    issuer_key_hash: &[u8; 32],
    logs: &[LogKey],
) -> Result<(), String> {
    let id = &sct.log_id.key_id;
    let Some(log) = logs.iter().find(|l| l.log_id == id) else {
        return Err(format!(
            "from CT log {}, which the trusted root does not list",
            hex::encode(id)
        ));
    };
    let at = (sct.timestamp / 1000) as i64;
    if !log.valid_for.contains(at) {
        return Err(format!(
            "CT log {} is trusted for {}, but the SCT is from {}",
            hex::encode(id),
            log.valid_for,
            rfc3339(at)
        ));
    }
    let key = CosignVerificationKey::try_from_der(&log.public_key_der)
        .map_err(|e| format!("CT log key: {e}"))?;
    let alg = &sct.signature.algorithm;
    let matches = alg.hash == HashAlgorithm::Sha256
        && matches!(
            (&alg.signature, &key),
            (
                SignatureAlgorithm::Ecdsa,
                CosignVerificationKey::ECDSA_P256_SHA256_ASN1(_)
            ) | (
                SignatureAlgorithm::Rsa,
                CosignVerificationKey::RSA_PKCS1_SHA256(_)
            )
        );
    if !matches {
        return Err(format!(
            "signed with {:?}/{:?}, which is not what the CT log's key signs with",
            alg.signature, alg.hash
        ));
    }
    let data = signed_data(sct, tbs, issuer_key_hash)?;
    key.verify_signature(Signature::Raw(sct.signature.signature.as_slice()), &data)
        .map_err(|_| "the signature does not verify over the precertificate".to_owned())
}

/// The bytes an SCT for a precertificate signs (RFC 6962 section 3.2, `digitally-signed`
/// struct with `precert_entry`), in TLS encoding.
fn signed_data(
    sct: &SignedCertificateTimestamp,
    tbs: &[u8],
    issuer_key_hash: &[u8; 32],
) -> Result<Vec<u8>, String> {
    let Version::V1 = sct.version;
    let tbs_len = u32::try_from(tbs.len())
        .ok()
        .filter(|n| *n < 1 << 24)
        .ok_or("the precertificate is too large for an SCT")?;
    let ext = sct.extensions.as_slice();
    let ext_len = u16::try_from(ext.len()).map_err(|_| "SCT extensions are too large")?;
    let mut v = Vec::with_capacity(tbs.len() + ext.len() + 64);
    v.push(0); // sct_version: v1
    v.push(0); // signature_type: certificate_timestamp
    v.extend_from_slice(&sct.timestamp.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes()); // entry_type: precert_entry
    v.extend_from_slice(issuer_key_hash);
    v.extend_from_slice(&tbs_len.to_be_bytes()[1..]); // opaque TBSCertificate<1..2^24-1>
    v.extend_from_slice(tbs);
    v.extend_from_slice(&ext_len.to_be_bytes()); // CtExtensions<0..2^16-1>
    v.extend_from_slice(ext);
    Ok(v)
}

/// The leaf's TBSCertificate without the SCT list extension, from the original DER (a
/// decoded `TbsCertificate` does not always re-encode byte for byte).
fn precert_tbs_der(leaf_der: &[u8]) -> der::Result<Vec<u8>> {
    const EXTENSIONS: Tag = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber(3),
    };
    let fields = Vec::<der::Any>::from_der(leaf_der)?;
    let tbs = fields.first().ok_or_else(|| Tag::Sequence.value_error())?;
    let mut tbs_fields: Vec<der::Any> = tbs.decode_as()?;
    if let Some(exts) = tbs_fields.iter_mut().find(|f| f.tag() == EXTENSIONS) {
        let list = Vec::<der::Any>::from_der(exts.value())?;
        let mut kept = Vec::new();
        for e in list {
            if e.decode_as::<Extension>()?.extn_id.to_string() != OID_SCT_LIST {
                kept.push(e);
            }
        }
        *exts = der::Any::new(EXTENSIONS, kept.to_der()?)?;
    }
    tbs_fields.to_der()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{pem, trusted_root::ValidFor};
    use base64::Engine as _;

    // A certificate from Sigstore's public Fulcio with its embedded SCT, its issuer
    // (sigstore-intermediate) and the public CT log key (the vectors sigstore-rs tests with).
    const LEAF: &str = "-----BEGIN CERTIFICATE-----
MIICzDCCAlGgAwIBAgIUF96OLbM9/tDVHKCJliXLTFvnfjAwCgYIKoZIzj0EAwMw
NzEVMBMGA1UEChMMc2lnc3RvcmUuZGV2MR4wHAYDVQQDExVzaWdzdG9yZS1pbnRl
cm1lZGlhdGUwHhcNMjMxMjEzMDU1MDU1WhcNMjMxMjEzMDYwMDU1WjAAMFkwEwYH
KoZIzj0CAQYIKoZIzj0DAQcDQgAEmir+Lah2291zCsLkmREQNLzf99z571BNB+fa
rerSLGzcwLFK7GRLTGYcO0oStxCYavxRQPMo3JvB8vGtZbn/76OCAXAwggFsMA4G
A1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDAzAdBgNVHQ4EFgQU8U9M
t9GMrRm8+gifPtc63nlP3OIwHwYDVR0jBBgwFoAU39Ppz1YkEZb5qNjpKFWixi4Y
ZD8wGwYDVR0RAQH/BBEwD4ENYXNjQHRldHN1by5zaDAsBgorBgEEAYO/MAEBBB5o
dHRwczovL2dpdGh1Yi5jb20vbG9naW4vb2F1dGgwLgYKKwYBBAGDvzABCAQgDB5o
dHRwczovL2dpdGh1Yi5jb20vbG9naW4vb2F1dGgwgYkGCisGAQQB1nkCBAIEewR5
AHcAdQDdPTBqxscRMmMZHhyZZzcCokpeuN48rf+HinKALynujgAAAYxhumYsAAAE
AwBGMEQCIHRRe20lRrNM4xd07mpjTtgaE6FGS3jjF++zW8ZMnth3AiAd6LVAAeVW
hSW4T0XJRw9lGU6/EK9+ELZpEjrY03dJ1zAKBggqhkjOPQQDAwNpADBmAjEAiHqK
W9PQ/5h7VROVIWPaxUo3LhrL2sZanw4bzTDBDY0dRR19ZFzjtAph1RzpQqppAjEA
plAvxwkAIR2jurboJZ4Zm9rNAx8KvA+A5yQFzNkGgKDLjTJrKmSKoIcWV3j7WfdL
-----END CERTIFICATE-----";
    const ISSUER: &str = "-----BEGIN CERTIFICATE-----
MIICGjCCAaGgAwIBAgIUALnViVfnU0brJasmRkHrn/UnfaQwCgYIKoZIzj0EAwMw
KjEVMBMGA1UEChMMc2lnc3RvcmUuZGV2MREwDwYDVQQDEwhzaWdzdG9yZTAeFw0y
MjA0MTMyMDA2MTVaFw0zMTEwMDUxMzU2NThaMDcxFTATBgNVBAoTDHNpZ3N0b3Jl
LmRldjEeMBwGA1UEAxMVc2lnc3RvcmUtaW50ZXJtZWRpYXRlMHYwEAYHKoZIzj0C
AQYFK4EEACIDYgAE8RVS/ysH+NOvuDZyPIZtilgUF9NlarYpAd9HP1vBBH1U5CV7
7LSS7s0ZiH4nE7Hv7ptS6LvvR/STk798LVgMzLlJ4HeIfF3tHSaexLcYpSASr1kS
0N/RgBJz/9jWCiXno3sweTAOBgNVHQ8BAf8EBAMCAQYwEwYDVR0lBAwwCgYIKwYB
BQUHAwMwEgYDVR0TAQH/BAgwBgEB/wIBADAdBgNVHQ4EFgQU39Ppz1YkEZb5qNjp
KFWixi4YZD8wHwYDVR0jBBgwFoAUWMAeX5FFpWapesyQoZMi0CrFxfowCgYIKoZI
zj0EAwMDZwAwZAIwPCsQK4DYiZYDPIaDi5HFKnfxXx6ASSVmERfsynYBiX2X6SJR
nZU84/9DZdnFvvxmAjBOt6QpBlc4J/0DxvkTCqpclvziL6BCCPnjdlIB3Pu3BxsP
mygUY7Ii2zbdCdliiow=
-----END CERTIFICATE-----";
    const CTFE_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEiPSlFi0CmFTfEjCUqF9HuCEcYXNK\
AaYalIJmBZ8yyezPjTqhxrKBpMnaocVtLJBI1eM3uXnQzQGAJdJ4gs9Fyw==";

    fn der(pem_text: &str) -> Vec<u8> {
        pem::certificates(pem_text).unwrap().remove(0)
    }

    fn issuer_spki() -> Vec<u8> {
        Certificate::from_der(&der(ISSUER))
            .unwrap()
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .unwrap()
    }

    fn ctfe() -> LogKey {
        LogKey::new(
            &base64::engine::general_purpose::STANDARD
                .decode(CTFE_KEY)
                .unwrap(),
        )
    }

    #[test]
    fn a_real_fulcio_sct_verifies_under_the_public_ct_log() {
        let t = verify_embedded(&der(LEAF), &issuer_spki(), &[ctfe()]).unwrap();
        // 2023-12-13T05:50:55Z, when the certificate was issued.
        assert_eq!(t / 1000, 1702446655);
    }

    #[test]
    fn an_sct_from_an_unlisted_or_retired_log_or_for_another_issuer_is_refused() {
        let err = verify_embedded(&der(LEAF), &issuer_spki(), &[]).unwrap_err();
        assert!(
            err.contains("which the trusted root does not list"),
            "{err}"
        );

        let mut retired = ctfe();
        retired.valid_for = ValidFor {
            start: Some(0),
            end: Some(1_700_000_000),
        };
        let err = verify_embedded(&der(LEAF), &issuer_spki(), &[retired]).unwrap_err();
        assert!(
            err.contains("but the SCT is from 2023-12-13T05:50:55Z"),
            "{err}"
        );

        // The issuer key hash is part of what the SCT signs.
        let err = verify_embedded(&der(LEAF), &der(ISSUER), &[ctfe()]).unwrap_err();
        assert!(
            err.contains("does not verify over the precertificate"),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_without_an_sct_is_refused() {
        let err = verify_embedded(&der(ISSUER), &issuer_spki(), &[ctfe()]).unwrap_err();
        assert_eq!(err, "the certificate embeds no SCT");
    }
}
