//! Signing a manifest digest and appending the signature to its `.sig` manifest.

use super::{
    fulcio::SigningCert,
    layout::{
        ANN_BUNDLE, ANN_CERTIFICATE, ANN_CHAIN, ANN_SIGNATURE, Descriptor, SIMPLESIGNING,
        SignatureManifest, signature_tag,
    },
    payload::Payload,
    rekor,
};
use crate::{
    digest::Digest,
    registry::{OCI_MANIFEST, Registry, RegistryError, repository_name, with_tag},
};
use base64::Engine as _;
use oci_client::Reference;
use sigstore::crypto::SigStoreSigner;
use std::collections::BTreeMap;

/// What signs: a cosign key, or an ephemeral key with a Fulcio certificate.
#[derive(Debug)]
pub enum Material {
    Key(SigStoreSigner),
    Keyless {
        signer: SigStoreSigner,
        cert: SigningCert,
    },
}

impl Material {
    fn signer(&self) -> &SigStoreSigner {
        match self {
            Material::Key(s) | Material::Keyless { signer: s, .. } => s,
        }
    }

    /// The PEM a transparency-log entry names: the certificate, or the public key.
    fn public_pem(&self) -> Result<String, String> {
        match self {
            Material::Keyless { cert, .. } => Ok(cert.leaf_pem.clone()),
            Material::Key(s) => s
                .to_sigstore_keypair()
                .and_then(|k| k.public_key_to_pem())
                .map_err(|e| e.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("signing: {0}")]
    Crypto(String),
    #[error("transparency log: {0}")]
    Rekor(String),
    #[error("the existing signature manifest at {0} is not valid: {1}")]
    Existing(String, String),
}

#[derive(Debug, Clone)]
pub struct Signed {
    /// `HOST/REPO:sha256-<hex>.sig`
    pub signature_ref: String,
    pub signature_manifest: Digest,
    /// How many signatures the manifest now holds.
    pub layers: usize,
}

/// Signs `repo@digest` and appends the signature to its `.sig` manifest (existing
/// signatures are kept). Uploads to Rekor first when `rekor_url` is set.
pub async fn sign(
    registry: &Registry,
    http: &reqwest::Client,
    repo: &Reference,
    digest: &Digest,
    material: &Material,
    rekor_url: Option<&str>,
) -> Result<Signed, SignError> {
    let payload = Payload::new(&repository_name(repo), digest).to_bytes();
    let sig = material
        .signer()
        .sign(&payload)
        .map_err(|e| SignError::Crypto(e.to_string()))?;
    let mut ann = BTreeMap::new();
    ann.insert(
        ANN_SIGNATURE.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(&sig),
    );
    if let Material::Keyless { cert, .. } = material {
        ann.insert(ANN_CERTIFICATE.to_owned(), cert.leaf_pem.clone());
        ann.insert(ANN_CHAIN.to_owned(), cert.chain_pem.clone());
    }
    if let Some(url) = rekor_url {
        let pem = material.public_pem().map_err(SignError::Crypto)?;
        let bundle = rekor::upload(http, url, &payload, &sig, &pem)
            .await
            .map_err(SignError::Rekor)?;
        ann.insert(
            ANN_BUNDLE.to_owned(),
            serde_json::to_string(&bundle).map_err(|e| SignError::Rekor(e.to_string()))?,
        );
    }
    let sig_ref = with_tag(repo, &signature_tag(digest));
    let payload_digest = registry.push_small_blob(&sig_ref, &payload).await?;
    let layer = Descriptor {
        media_type: SIMPLESIGNING.to_owned(),
        digest: payload_digest.to_string(),
        size: payload.len() as u64,
        annotations: Some(ann),
    };
    let mut layers = match registry.fetch_manifest(&sig_ref).await? {
        Some((bytes, _)) => {
            SignatureManifest::parse(&bytes)
                .map_err(|e| SignError::Existing(sig_ref.whole(), e))?
                .layers
        }
        None => Vec::new(),
    };
    layers.push(layer);
    let (manifest, config) = SignatureManifest::build(layers);
    registry.push_small_blob(&sig_ref, &config).await?;
    let sig_manifest = registry
        .push_manifest(&sig_ref, &manifest.to_bytes(), OCI_MANIFEST)
        .await?;
    Ok(Signed {
        signature_ref: sig_ref.whole(),
        signature_manifest: sig_manifest,
        layers: manifest.layers.len(),
    })
}
