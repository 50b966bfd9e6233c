//! cosign key files: `cosign.key` (encrypted with scrypt + secretbox, `COSIGN_PASSWORD`) and
//! `cosign.pub` (PEM public key). sigstore-rs does the cryptography.

use sigstore::crypto::{
    CosignVerificationKey, SigStoreSigner, SigningScheme, signing_key::SigStoreKeyPair,
};
use std::path::Path;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot decrypt the private key (wrong COSIGN_PASSWORD?): {reason}")]
    Decrypt { path: String, reason: String },
    #[error("{path}: not a usable public key: {reason}")]
    Public { path: String, reason: String },
    #[error("generating a key pair: {0}")]
    Generate(String),
}

/// A new ECDSA P-256 key pair: (encrypted private key PEM, public key PEM).
pub fn generate(password: &[u8]) -> Result<(Zeroizing<String>, String), KeyError> {
    let e = |x: sigstore::errors::SigstoreError| KeyError::Generate(x.to_string());
    let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .map_err(e)?;
    let pair = signer.to_sigstore_keypair().map_err(e)?;
    Ok((
        pair.private_key_to_encrypted_pem(password).map_err(e)?,
        pair.public_key_to_pem().map_err(e)?,
    ))
}

/// Loads and decrypts a cosign private key.
pub fn load_private(path: &Path, password: &[u8]) -> Result<SigStoreSigner, KeyError> {
    let p = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: p.clone(),
        source,
    })?;
    let pair =
        SigStoreKeyPair::from_encrypted_pem(&pem, password).map_err(|e| KeyError::Decrypt {
            path: p.clone(),
            reason: e.to_string(),
        })?;
    pair.to_sigstore_signer(&SigningScheme::ECDSA_P256_SHA256_ASN1)
        .map_err(|e| KeyError::Decrypt {
            path: p,
            reason: e.to_string(),
        })
}

/// Loads a PEM public key (`cosign.pub`).
pub fn load_public(path: &Path) -> Result<CosignVerificationKey, KeyError> {
    let p = path.display().to_string();
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: p.clone(),
        source,
    })?;
    public_from_pem(&pem).map_err(|reason| KeyError::Public { path: p, reason })
}

pub fn public_from_pem(pem: &[u8]) -> Result<CosignVerificationKey, String> {
    CosignVerificationKey::try_from_pem(pem).map_err(|e| e.to_string())
}
