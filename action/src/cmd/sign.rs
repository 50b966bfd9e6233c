//! `module-builder sign`.

use crate::cli::{RegistryArgs, SignArgs, SigningArgs};
use anyhow::Context;
use oci_client::Reference;
use powernode_module::{
    digest::Digest,
    registry::{self, Registry},
    trust::{
        fulcio, keys, oidc,
        sign::{self, Material, Signed},
    },
};
use sigstore::crypto::SigningScheme;
use std::process::ExitCode;

/// Loads the key, or obtains a keyless certificate (OIDC token → Fulcio).
pub async fn material(a: &SigningArgs, http: &reqwest::Client) -> anyhow::Result<Material> {
    if let Some(path) = &a.key {
        return Ok(Material::Key(keys::load_private(
            path,
            &super::keys::password(),
        )?));
    }
    let token = oidc::discover(a.identity_token.clone(), http)
        .await
        .map_err(anyhow::Error::msg)?;
    tracing::info!(subject = %token.subject, issuer = %token.issuer, "keyless signing");
    let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .context("creating an ephemeral signing key")?;
    let cert = fulcio::request_certificate(http, &a.fulcio_url, &token, &signer)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(Material::Keyless { signer, cert })
}

/// Signs `repo@digest`.
pub fn sign_digest(
    rt: &tokio::runtime::Runtime,
    client: &Registry,
    repo: &Reference,
    digest: &Digest,
    a: &SigningArgs,
) -> anyhow::Result<Signed> {
    let http = super::http()?;
    rt.block_on(async {
        let m = material(a, &http).await?;
        sign::sign(client, &http, repo, digest, &m, a.rekor_url.as_deref())
            .await
            .with_context(|| format!("signing {}@{digest}", registry::repository_name(repo)))
    })
}

/// Resolves a tag to a digest (warning: signing by tag signs whatever it points to now).
pub fn resolve_digest(
    rt: &tokio::runtime::Runtime,
    client: &Registry,
    r: &Reference,
) -> anyhow::Result<Digest> {
    if let Some(d) = r.digest() {
        return d.parse().map_err(anyhow::Error::from);
    }
    tracing::warn!(reference = %r.whole(), "resolving a tag; sign and verify by digest where you can");
    rt.block_on(client.resolve(r))?
        .with_context(|| format!("{} does not exist in the registry", r.whole()))
}

pub fn run(a: SignArgs) -> anyhow::Result<ExitCode> {
    let r = registry::parse_reference(&a.reference)?;
    let rt = super::runtime()?;
    let client = super::registry(
        &r,
        &RegistryArgs {
            ..a.registry.clone()
        },
    )?;
    let digest = resolve_digest(&rt, &client, &r)?;
    let signed = sign_digest(&rt, &client, &r, &digest, &a.signing)?;
    eprintln!(
        "signed {}@{digest}: {} signature(s) at {}",
        registry::repository_name(&r),
        signed.layers,
        signed.signature_ref
    );
    println!("{}", signed.signature_ref);
    Ok(ExitCode::SUCCESS)
}
