//! Constant-time checks of shared secrets and HMAC signatures.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Compares a presented header with the expected one without leaking where they differ.
pub fn header_matches(presented: Option<&str>, expected: &str) -> bool {
    match presented {
        Some(p) => bool::from(p.as_bytes().ct_eq(expected.as_bytes())),
        None => false,
    }
}

/// Whether `signature_hex` is the HMAC-SHA256 of `body` under any of `secrets` (several are
/// accepted during rotation). The comparison is constant-time (`Mac::verify_slice`).
pub fn hmac_matches(secrets: &[String], body: &[u8], signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    secrets.iter().any(|s| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(s.as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_accepts_any_current_secret_only() {
        let body = b"{}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"new").unwrap();
        mac.update(body);
        let sig = hex::encode(mac.finalize().into_bytes());
        assert!(hmac_matches(&["old".into(), "new".into()], body, &sig));
        assert!(!hmac_matches(&["old".into()], body, &sig));
        assert!(!hmac_matches(&["new".into()], b"{ }", &sig));
        assert!(!hmac_matches(&["new".into()], body, "zz"));
        assert!(!hmac_matches(&["new".into()], body, ""));
        assert!(header_matches(Some("Bearer x"), "Bearer x"));
        assert!(!header_matches(Some("Bearer y"), "Bearer x"));
        assert!(!header_matches(None, "Bearer x"));
    }
}
