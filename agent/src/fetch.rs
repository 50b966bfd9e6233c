//! Fetching one module of a desired state, trusting the registry for nothing: the manifest
//! by digest (its bytes must hash to it), the cosign signature checked on the node against
//! the module's signer policy from the signed desired state *and* the agent's own trusted
//! root, the blob streamed to a private staging file and verified entry by entry against its
//! `index.json`, the composefs digest compared with the desired one, then every file stored
//! as an object by its fs-verity digest.

use crate::objects::Objects;
use powernode_module::{
    artifact::{ReadLimits, index::Index, read_and_verify_with},
    desired_state::{DesiredModule, SignerPolicy},
    digest::Digest,
    registry::{Credentials, Registry, parse_reference, with_digest},
    trust::{
        trusted_root::TrustedRoot,
        verify::{self, Policy, TrustedKey},
    },
};
use std::path::Path;

/// Why a module was refused (the generation is not built; the active one stays).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{module}: the registry's manifest does not hash to {want} (got {got})")]
    ManifestDigest {
        module: String,
        want: Digest,
        got: Digest,
    },
    #[error("{module}: signature: {why}")]
    Signature { module: String, why: String },
    #[error("{module}: artifact: {why}")]
    Artifact { module: String, why: String },
    #[error("{module}: composefs digest {got} is not the desired {want}")]
    Composefs {
        module: String,
        want: Digest,
        got: Digest,
    },
}

/// What the agent trusts besides the signed desired state.
#[derive(Debug, Clone, Default)]
pub struct LocalTrust {
    pub trusted_root: Option<TrustedRoot>,
    pub insecure_registry: bool,
}

/// A fetched, verified module: its index (what composition needs).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Fetched {
    pub index: Index,
    pub manifest_text: String,
}

/// `verified/<manifest digest>.json`: a module this agent verified, under which policy, so
/// an unchanged module is not fetched again on the next generation. Reused only for the
/// same signer policy and composefs digest, and only while all its objects are present.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Verified {
    signer: SignerPolicy,
    composefs_digest: Digest,
    fetched: Fetched,
}

/// As [`fetch`], but a module verified before under the same policy, whose objects are all
/// still in the store, is taken from the agent's own record instead of the network.
pub async fn fetch_cached(
    m: &DesiredModule,
    local: &LocalTrust,
    objects: &Objects,
    state: &Path,
) -> anyhow::Result<Result<Fetched, Refused>> {
    let dir = state.join("verified");
    let record = dir.join(format!("{}.json", m.manifest_digest.hex()));
    if let Ok(bytes) = std::fs::read(&record)
        && let Ok(v) = serde_json::from_slice::<Verified>(&bytes)
        && v.signer == m.signer
        && v.composefs_digest == m.composefs_digest
        && all_present(&v.fetched.index, objects)
    {
        return Ok(Ok(v.fetched));
    }
    let fetched = match fetch(m, local, objects, &state.join("staging")).await? {
        Ok(f) => f,
        Err(r) => return Ok(Err(r)),
    };
    std::fs::create_dir_all(&dir)?;
    let v = Verified {
        signer: m.signer.clone(),
        composefs_digest: m.composefs_digest,
        fetched,
    };
    crate::files::write_atomic(&record, &serde_json::to_vec(&v)?)?;
    Ok(Ok(v.fetched))
}

fn all_present(index: &Index, objects: &Objects) -> bool {
    use powernode_module::artifact::index::EntryKind;
    index.entries.iter().all(|e| match &e.kind {
        EntryKind::File {
            fsverity,
            inline: None,
            ..
        } if e.path.starts_with("rootfs/") => objects.has(fsverity),
        _ => true,
    })
}

fn policy(m: &DesiredModule, local: &LocalTrust) -> Result<Policy, Refused> {
    let refuse = |why: String| Refused::Signature {
        module: m.name.clone(),
        why,
    };
    let SignerPolicy {
        keys,
        identity_regexp,
        issuer_regexp,
        require_tlog,
    } = &m.signer;
    let mut p = Policy {
        require_tlog: *require_tlog,
        ..Default::default()
    };
    for k in keys {
        p.keys.push(TrustedKey::from_pem(k).map_err(&refuse)?);
    }
    if let (Some(id), Some(iss)) = (identity_regexp, issuer_regexp) {
        let Some(root) = &local.trusted_root else {
            return Err(refuse(
                "the policy is keyless, and this agent has no --trusted-root to check certificates against".into(),
            ));
        };
        p.identity = Some(regex::Regex::new(id).map_err(|e| refuse(e.to_string()))?);
        p.issuer = Some(regex::Regex::new(iss).map_err(|e| refuse(e.to_string()))?);
        p.trusted_root = root.clone();
    }
    if p.keys.is_empty() && p.identity.is_none() {
        return Err(refuse("the desired state pins no signer for it".into()));
    }
    Ok(p)
}

#[derive(serde::Deserialize)]
struct OciManifest {
    layers: Vec<OciLayer>,
}

#[derive(serde::Deserialize)]
struct OciLayer {
    digest: String,
    size: u64,
}

/// Fetches and verifies `m`, storing its objects. Transient failures (network) are
/// `Err(anyhow)`; refusals are `Ok(Err(Refused))`.
pub async fn fetch(
    m: &DesiredModule,
    local: &LocalTrust,
    objects: &Objects,
    staging: &Path,
) -> anyhow::Result<Result<Fetched, Refused>> {
    let policy = match policy(m, local) {
        Ok(p) => p,
        Err(r) => return Ok(Err(r)),
    };
    let reference = parse_reference(&m.reference)?;
    let host = reference.resolve_registry().to_owned();
    let insecure = local.insecure_registry || powernode_module::registry::is_loopback(&host);
    let registry = Registry::new(&reference, Credentials::Anonymous, insecure);
    let at = with_digest(&reference, &m.manifest_digest);
    let Some((bytes, got)) = registry.fetch_manifest(&at).await? else {
        anyhow::bail!(
            "{}: the registry has no manifest {}",
            m.name,
            m.manifest_digest
        );
    };
    if got != m.manifest_digest {
        return Ok(Err(Refused::ManifestDigest {
            module: m.name.clone(),
            want: m.manifest_digest,
            got,
        }));
    }
    match verify::verify(&registry, &reference, &m.manifest_digest, &policy).await {
        Ok(_) => {}
        Err(verify::VerifyError::Fetch(e)) => return Err(e.into()),
        Err(e) => {
            return Ok(Err(Refused::Signature {
                module: m.name.clone(),
                why: e.to_string(),
            }));
        }
    }
    let art = |why: String| Refused::Artifact {
        module: m.name.clone(),
        why,
    };
    let manifest: OciManifest = match serde_json::from_slice(&bytes) {
        Ok(x) => x,
        Err(e) => return Ok(Err(art(format!("manifest: {e}")))),
    };
    let [layer] = &manifest.layers[..] else {
        return Ok(Err(art("expected exactly one layer".into())));
    };
    let Ok(layer_digest) = layer.digest.parse::<Digest>() else {
        return Ok(Err(art(format!("layer digest {:?}", layer.digest))));
    };
    std::fs::create_dir_all(staging)?;
    let tmp = tempfile::NamedTempFile::new_in(staging)?;
    let mut f = tokio::fs::File::create(tmp.path()).await?;
    match registry
        .pull_blob_into(&at, &layer_digest, layer.size, &mut f)
        .await
    {
        Ok(_) => {}
        // The registry served other bytes than the signed digest names: refused, not retried
        // as if the network had failed.
        Err(powernode_module::registry::RegistryError::Invalid { what, message }) => {
            return Ok(Err(art(format!("{what}: {message}"))));
        }
        Err(e) => {
            return Err(
                anyhow::Error::from(e).context(format!("{}: fetching the artifact", m.name))
            );
        }
    }
    drop(f);
    let path = tmp.path().to_owned();
    let objects = objects.clone();
    let want_cfs = m.composefs_digest;
    let name = m.name.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Result<Fetched, Refused>> {
        let art = |why: String| Refused::Artifact {
            module: name.clone(),
            why,
        };
        let file = std::fs::File::open(&path)?;
        let inspection = match read_and_verify_with(
            std::io::BufReader::with_capacity(1 << 20, file),
            &ReadLimits::default(),
        ) {
            Ok(i) => i,
            Err(e) => return Ok(Err(art(e.to_string()))),
        };
        if inspection.composefs_digest != want_cfs {
            return Ok(Err(Refused::Composefs {
                module: name.clone(),
                want: want_cfs,
                got: inspection.composefs_digest,
            }));
        }
        store_objects(&path, &inspection.index, &objects)?;
        Ok(Ok(Fetched {
            index: inspection.index,
            manifest_text: inspection.manifest_text,
        }))
    })
    .await?
}

/// Second pass over the verified tar: every external rootfs file into the object store.
fn store_objects(tar_path: &Path, index: &Index, objects: &Objects) -> anyhow::Result<()> {
    use powernode_module::artifact::index::EntryKind;
    let by_path: std::collections::HashMap<&str, &Digest> = index
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::File {
                fsverity,
                inline: None,
                ..
            } if e.path.starts_with("rootfs/") => Some((e.path.as_str(), fsverity)),
            _ => None,
        })
        .collect();
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(tar_path)?,
    ));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if let Some(d) = by_path.get(path.as_str()) {
            let size = entry.header().size()?;
            objects.put(d, size, &mut entry)?;
        }
    }
    Ok(())
}
