//! Naming and trusting the receiver's keys: a key id per public key, stable however its PEM
//! is wrapped, and the set of keys a node trusts (several during a rotation).

use crate::digest::Digest;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner};

/// The key id a signature names: SHA-256 of the public key PEM, in its canonical form
/// (the base64 body re-wrapped at 64 columns, CRLF line ends: the form the receiver writes
/// and always named its key by), so the same key copied through an editor or `openssl`
/// keeps its id. Text that is not one PEM block is hashed
/// as it is (trimmed).
pub fn key_id(public_pem: &str) -> String {
    let canonical = canonical_pem(public_pem);
    Digest::of(canonical.as_deref().unwrap_or(public_pem.trim()).as_bytes()).to_string()
}

/// One PEM block re-encoded: its label, its base64 body in 64-column lines.
fn canonical_pem(pem: &str) -> Option<String> {
    let pem = pem.trim();
    let label = pem.strip_prefix("-----BEGIN ")?.split_once("-----")?.0;
    let end = format!("-----END {label}-----");
    let body = pem
        .strip_prefix(&format!("-----BEGIN {label}-----"))?
        .strip_suffix(&end)?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(b64.as_bytes()).ok()?;
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\r\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).ok()?);
        out.push_str("\r\n");
    }
    out.push_str(&end);
    Some(out)
}

/// Splits text holding one or more PEM public keys (a file a node trusts) into its blocks.
pub fn pem_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let Some(label) = block["-----BEGIN ".len()..]
            .split_once("-----")
            .map(|(l, _)| l.to_owned())
        else {
            break;
        };
        let end = format!("-----END {label}-----");
        let Some(stop) = block.find(&end) else { break };
        out.push(block[..stop + end.len()].to_owned());
        rest = &block[stop + end.len()..];
    }
    out
}

/// A public key a verifier trusts, with its key id (what signatures name).
#[derive(Clone)]
pub struct TrustedKey {
    pub keyid: String,
    pub key: CosignVerificationKey,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl TrustedKey {
    /// One PEM public key.
    pub fn from_pem(pem: &str) -> Result<TrustedKey, String> {
        let key = CosignVerificationKey::try_from_pem(pem.trim().as_bytes())
            .map_err(|e| format!("not a public key: {e}"))?;
        Ok(TrustedKey {
            keyid: key_id(pem),
            key,
        })
    }
}

/// One key that signs: the signer and its public key's PEM (its `keyid`).
pub struct SigningKey<'a> {
    pub signer: &'a SigStoreSigner,
    pub public_pem: &'a str,
}

impl std::fmt::Debug for SigningKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("keyid", &key_id(self.public_pem))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> String {
        sigstore::crypto::SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .unwrap()
            .to_sigstore_keypair()
            .unwrap()
            .public_key_to_pem()
            .unwrap()
    }

    #[test]
    fn key_ids_survive_rewrapping_and_files_hold_several_keys() {
        let pem = public();
        let other = public();
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let rewrapped = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &body[..30],
            &body[30..]
        );
        assert_eq!(key_id(&rewrapped), key_id(&pem));
        assert_eq!(
            key_id(&pem),
            Digest::of(pem.trim().as_bytes()).to_string(),
            "the receiver's own PEM is already canonical (ids of signed states stay)"
        );
        let file = format!("# old\n{pem}\n# new\n{other}");
        let blocks = pem_blocks(&file);
        assert_eq!(blocks.len(), 2);
        assert_eq!(key_id(&blocks[0]), key_id(&pem));
        assert_eq!(key_id(&blocks[1]), key_id(&other));
    }
}
