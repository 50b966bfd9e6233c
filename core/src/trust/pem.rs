//! Certificates out of PEM as cosign reads them (Go's `encoding/pem`): the base64 body may
//! come in lines of any length, or as one line, with CRLF or stray spaces — Fulcio and
//! Sigstore's own test Fulcio return such bodies. Only the layout is lenient: the body is
//! strict standard base64 and the certificate strict DER.

use base64::Engine as _;
use x509_cert::{Certificate, der::Decode};

const BEGIN: &str = "-----BEGIN ";
const DASHES: &str = "-----";

/// Every `CERTIFICATE` block of `pem`, decoded to DER, in order.
///
/// As in cosign, text before a block is skipped, but text after the last one is an error,
/// and so is a block of another type.
pub fn certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut rest = pem.trim();
    while !rest.is_empty() {
        let Some(at) = rest.find(BEGIN) else {
            return Err(format!(
                "unexpected text after certificate {}: {:?}",
                out.len(),
                excerpt(rest)
            ));
        };
        let after = &rest[at + BEGIN.len()..];
        let Some(end_label) = after.find(DASHES) else {
            return Err("unterminated BEGIN line".into());
        };
        let label = &after[..end_label];
        if label != "CERTIFICATE" {
            return Err(format!(
                "a {label:?} block where a CERTIFICATE was expected"
            ));
        }
        let body_and_rest = &after[end_label + DASHES.len()..];
        let end = format!("-----END {label}-----");
        let Some(end_at) = body_and_rest.find(&end) else {
            return Err(format!("certificate {} has no {end:?} line", out.len() + 1));
        };
        let body: String = body_and_rest[..end_at]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("certificate {}: invalid base64: {e}", out.len() + 1))?;
        Certificate::from_der(&der)
            .map_err(|e| format!("certificate {}: invalid DER: {e}", out.len() + 1))?;
        out.push(der);
        rest = body_and_rest[end_at + end.len()..].trim();
    }
    Ok(out)
}

fn excerpt(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real certificate (Sigstore's public Fulcio intermediate), as 64-column PEM.
    const WRAPPED: &str = "-----BEGIN CERTIFICATE-----
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
-----END CERTIFICATE-----
";

    fn one_line(pem: &str) -> String {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
    }

    #[test]
    fn single_line_crlf_and_spaced_bodies_decode_like_wrapped_ones() {
        let want = certificates(WRAPPED).unwrap();
        assert_eq!(want.len(), 1);
        assert_eq!(certificates(&one_line(WRAPPED)).unwrap(), want);
        assert_eq!(certificates(&WRAPPED.replace('\n', "\r\n")).unwrap(), want);
        assert_eq!(certificates(&WRAPPED.replace('\n', " \n\t")).unwrap(), want);
        // What x509-cert alone refuses.
        assert!(Certificate::load_pem_chain(one_line(WRAPPED).as_bytes()).is_err());
    }

    #[test]
    fn chains_keep_their_order_and_leading_text_is_skipped() {
        let two = format!("{}{WRAPPED}", one_line(WRAPPED));
        assert_eq!(certificates(&two).unwrap().len(), 2);
        let led = format!("subject=CN=x\n{WRAPPED}");
        assert_eq!(certificates(&led).unwrap().len(), 1);
        assert!(certificates("").unwrap().is_empty());
    }

    #[test]
    fn bad_base64_der_labels_and_trailing_text_are_refused() {
        let err = certificates(&WRAPPED.replace("MIIC", "MI*C")).unwrap_err();
        assert!(err.contains("invalid base64"), "{err}");
        let err = certificates(&WRAPPED.replace("MIIC", "AIIC")).unwrap_err();
        assert!(err.contains("invalid DER"), "{err}");
        let err = certificates(&WRAPPED.replace("CERTIFICATE", "PUBLIC KEY")).unwrap_err();
        assert!(err.contains("\"PUBLIC KEY\" block"), "{err}");
        let err = certificates(&format!("{WRAPPED}garbage")).unwrap_err();
        assert!(err.contains("after certificate 1"), "{err}");
        let err = certificates(&WRAPPED.replace("-----END CERTIFICATE-----", "")).unwrap_err();
        assert!(
            err.contains("no \"-----END CERTIFICATE-----\" line"),
            "{err}"
        );
    }
}
