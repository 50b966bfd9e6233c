//! `module-builder verify`.

use crate::cli::{Format, VerifyArgs};
use anyhow::Context;
use powernode_module::{
    registry,
    trust::{
        trusted_root::TrustedRoot,
        verify::{self, Policy, TrustedKey},
    },
};
use serde_json::json;
use std::process::ExitCode;

pub fn policy(a: &VerifyArgs) -> anyhow::Result<Policy> {
    let mut p = Policy {
        require_tlog: !a.insecure_ignore_tlog,
        ..Default::default()
    };
    for k in &a.key {
        let pem = std::fs::read_to_string(k).with_context(|| format!("reading {}", k.display()))?;
        p.keys
            .push(TrustedKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", k.display()))?);
    }
    if let (Some(id), Some(iss)) = (
        &a.certificate_identity_regexp,
        &a.certificate_oidc_issuer_regexp,
    ) {
        p.identity = Some(regex::Regex::new(id).context("--certificate-identity-regexp")?);
        p.issuer = Some(regex::Regex::new(iss).context("--certificate-oidc-issuer-regexp")?);
        let Some(root) = &a.trusted_root else {
            anyhow::bail!(
                "keyless verification needs --trusted-root (Sigstore trusted_root.json with the Fulcio CA)"
            );
        };
        p.trusted_root = TrustedRoot::load(root).map_err(anyhow::Error::msg)?;
    } else if let Some(root) = &a.trusted_root {
        p.trusted_root = TrustedRoot::load(root).map_err(anyhow::Error::msg)?;
    }
    if p.keys.is_empty() && p.identity.is_none() {
        anyhow::bail!(
            "say whom to trust: --key cosign.pub, or --certificate-identity-regexp and --certificate-oidc-issuer-regexp"
        );
    }
    Ok(p)
}

pub fn run(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let p = policy(&a)?;
    let r = registry::parse_reference(&a.reference)?;
    let rt = super::runtime()?;
    let client = super::registry(&r, &a.registry)?;
    let digest = super::sign::resolve_digest(&rt, &client, &r)?;
    let started = std::time::Instant::now();
    let result = rt.block_on(verify::verify(&client, &r, &digest, &p));
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "verification done"
    );
    match result {
        Ok(sigs) => {
            match a.format {
                Format::Json => {
                    let v: Vec<_> = sigs
                        .iter()
                        .map(|s| {
                            json!({
                                "layer": s.layer_digest, "identity": s.identity, "issuer": s.issuer,
                                "key_index": s.key_index, "integrated_time": s.integrated_time,
                            })
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&json!({
                            "verified": true,
                            "reference": format!("{}@{digest}", registry::repository_name(&r)),
                            "signatures": v,
                        }))?
                    );
                }
                Format::Human => {
                    println!("Verified {}@{digest}", registry::repository_name(&r));
                    for s in &sigs {
                        match (&s.identity, s.key_index) {
                            (Some(id), _) => println!(
                                "  keyless: {id} (issuer {})",
                                s.issuer.as_deref().unwrap_or("?")
                            ),
                            (None, Some(i)) => println!("  key: {}", a.key[i].display()),
                            _ => {}
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: verification failed: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
