//! Ingest: a tag in the registry becomes a verified `draft` version, or a recorded reason
//! why not. Always re-reads the registry by digest; a webhook is only a hint.
//!
//! Order of checks: artifact type → (version immutability) → signature under the module's
//! pinned policy → blob digest → every tar entry against index.json → composefs digest
//! against the signed annotation → manifest.yaml valid and naming the policy's module.

use crate::{
    metrics::Metrics,
    policy::{ModuleTrust, Policies},
    store::{Lifecycle, NewAudit, Store, VersionRow, now_ms},
};
use powernode_module::{
    artifact::{ARTIFACT_TYPE, LAYER_MEDIA_TYPE, read_and_verify},
    digest::Digest,
    manifest,
    registry::{Registry, RegistryError, artifact as ann, parse_reference, with_digest, with_tag},
    trust::verify::{self, Verified, VerifyError},
};
use serde::Deserialize;
use serde_json::json;
use std::{collections::BTreeMap, sync::Arc};

/// What ingest needs, shared by workers.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub store: Store,
    pub registry: Registry,
    /// `host[:port]` of the registry, prefixed to repository names.
    pub registry_host: String,
    pub policies: Arc<Policies>,
    pub metrics: Arc<Metrics>,
    pub signature_timeout_ms: i64,
    pub max_artifact_bytes: u64,
    pub work_dir: std::path::PathBuf,
}

/// How a job ended, when it did not fail transiently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ingested(String),
    AlreadyIngested(String),
    PendingSignature(String),
    Rejected(String, String),
    Ignored(String),
}

/// A failure worth retrying (the registry is down, the database is busy, …).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(pub String);

impl From<RegistryError> for Transient {
    fn from(e: RegistryError) -> Self {
        Transient(e.to_string())
    }
}

impl From<anyhow::Error> for Transient {
    fn from(e: anyhow::Error) -> Self {
        Transient(format!("{e:#}"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciManifest {
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    layers: Vec<Layer>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layer {
    media_type: String,
    digest: String,
    size: u64,
}

pub fn version_id(module: &str, version: &str) -> String {
    format!("v-{module}-{version}")
}

fn audit(
    v: &VersionRow,
    action: &str,
    from: Option<Lifecycle>,
    reason: Option<String>,
    evidence: serde_json::Value,
) -> NewAudit {
    NewAudit {
        version_id: Some(v.id.clone()),
        module: Some(v.module.clone()),
        actor: "module-webhook".into(),
        via: "ingest".into(),
        action: action.into(),
        from_state: from,
        to_state: Some(v.lifecycle),
        reason,
        evidence,
    }
}

impl Ctx {
    /// Ingests `repository:tag`.
    pub async fn ingest(&self, repository: &str, tag: &str) -> Result<Outcome, Transient> {
        let Some(trust) = self.policies.for_repository(repository) else {
            return Ok(Outcome::Ignored(format!(
                "no trust policy pins a signer for {repository}"
            )));
        };
        let repo_ref = parse_reference(&format!("{}/{repository}", self.registry_host))?;
        let tag_ref = with_tag(&repo_ref, tag);
        let Some((bytes, digest)) = self.registry.fetch_manifest(&tag_ref).await? else {
            return Ok(Outcome::Ignored(format!(
                "{repository}:{tag} no longer exists"
            )));
        };
        let m: OciManifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(_) => {
                return Ok(Outcome::Ignored(format!(
                    "{repository}:{tag} is not an OCI manifest"
                )));
            }
        };
        if m.artifact_type.as_deref() != Some(ARTIFACT_TYPE)
            || m.layers.len() != 1
            || m.layers[0].media_type != LAYER_MEDIA_TYPE
        {
            return Ok(Outcome::Ignored(format!(
                "{repository}:{tag} is not a module artifact"
            )));
        }
        let version = m
            .annotations
            .get(ann::ANN_VERSION)
            .cloned()
            .unwrap_or_else(|| powernode_module::version_from_tag(tag));
        let id = version_id(&trust.name, &version);
        let existing = self.store.version(&trust.name, &version).await?;
        if let Some(e) = &existing
            && e.lifecycle.is_published()
        {
            if e.manifest_digest == digest.to_string() {
                return Ok(Outcome::AlreadyIngested(id));
            }
            // Versions are immutable: record the attempt, change nothing.
            self.store
                .audit(&NewAudit {
                    version_id: Some(e.id.clone()),
                    module: Some(trust.name.clone()),
                    actor: "module-webhook".into(),
                    via: "ingest".into(),
                    action: "refused_different_digest".into(),
                    from_state: Some(e.lifecycle),
                    to_state: Some(e.lifecycle),
                    reason: Some(format!(
                        "version {version} is already {} with digest {}; {repository}:{tag} now points to {digest}",
                        e.lifecycle, e.manifest_digest
                    )),
                    evidence: json!({"existing": e.manifest_digest, "offered": digest.to_string(), "tag": tag}),
                })
                .await?;
            return Ok(Outcome::Rejected(
                id,
                "version exists with another digest".into(),
            ));
        }
        let now = now_ms();
        let mut row = VersionRow {
            id: id.clone(),
            module: trust.name.clone(),
            version: version.clone(),
            lifecycle: Lifecycle::PendingSignature,
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            manifest_digest: digest.to_string(),
            artifact_digest: Some(m.layers[0].digest.clone()),
            composefs_digest: None,
            composefs_format: None,
            source_repository: m.annotations.get(ann::ANN_SOURCE).cloned(),
            source_commit: m.annotations.get(ann::ANN_REVISION).cloned(),
            signer_identity: None,
            signer_issuer: None,
            file_index: None,
            manifest: None,
            reject_reason: None,
            created_at: existing
                .as_ref()
                .filter(|e| e.manifest_digest == digest.to_string())
                .map(|e| e.created_at)
                .unwrap_or(now),
            updated_at: now,
        };

        // Signature.
        let verified = match verify::verify(&self.registry, &repo_ref, &digest, &trust.policy).await
        {
            Ok(v) => v,
            Err(VerifyError::Fetch(e)) => return Err(e.into()),
            Err(e) => {
                self.metrics.verification_failure(e.code());
                return self
                    .wait_for_signature(row, existing.as_ref(), e.to_string())
                    .await;
            }
        };
        let signer = self.pick_signer(trust, &verified).await?;
        let signer = match signer {
            Ok(s) => s,
            Err(why) => {
                return self
                    .reject(row, existing.as_ref(), "signer_not_pinned", why)
                    .await;
            }
        };
        row.signer_identity = signer.identity.clone();
        row.signer_issuer = signer.issuer.clone();

        // Content.
        let layer = &m.layers[0];
        if layer.size > self.max_artifact_bytes {
            return self
                .reject(
                    row,
                    existing.as_ref(),
                    "artifact_too_large",
                    format!(
                        "{} bytes is over the {} allowed",
                        layer.size, self.max_artifact_bytes
                    ),
                )
                .await;
        }
        let Ok(layer_digest) = layer.digest.parse::<Digest>() else {
            return self
                .reject(
                    row,
                    existing.as_ref(),
                    "artifact_invalid",
                    format!("layer digest {:?} is invalid", layer.digest),
                )
                .await;
        };
        let tmp = tempfile::NamedTempFile::new_in(&self.work_dir)
            .map_err(|e| Transient(format!("temporary file: {e}")))?;
        let mut f = tokio::fs::File::create(tmp.path())
            .await
            .map_err(|e| Transient(format!("temporary file: {e}")))?;
        match self
            .registry
            .pull_blob_into(
                &with_digest(&repo_ref, &digest),
                &layer_digest,
                self.max_artifact_bytes,
                &mut f,
            )
            .await
        {
            Ok(_) => {}
            Err(RegistryError::Invalid { what, message }) => {
                return self
                    .reject(
                        row,
                        existing.as_ref(),
                        "artifact_invalid",
                        format!("{what}: {message}"),
                    )
                    .await;
            }
            Err(e) => return Err(e.into()),
        }
        drop(f);
        let path = tmp.path().to_owned();
        let inspection = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&path)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    read_and_verify(std::io::BufReader::with_capacity(1 << 20, f))
                        .map_err(|e| e.to_string())
                })
        })
        .await
        .map_err(|e| Transient(e.to_string()))?;
        let inspection = match inspection {
            Ok(i) => i,
            Err(why) => {
                return self
                    .reject(row, existing.as_ref(), "artifact_invalid", why)
                    .await;
            }
        };
        let signed_cfs = m.annotations.get(ann::ANN_COMPOSEFS_DIGEST);
        if signed_cfs != Some(&inspection.composefs_digest.to_string()) {
            return self
                .reject(
                    row,
                    existing.as_ref(),
                    "composefs_mismatch",
                    format!(
                        "the artifact's composefs digest is {}, the signed annotation says {}",
                        inspection.composefs_digest,
                        signed_cfs.map(String::as_str).unwrap_or("nothing")
                    ),
                )
                .await;
        }
        let parsed = manifest::parse(&inspection.manifest_text);
        let Some(man) = parsed.manifest else {
            let why: Vec<String> = parsed.findings.iter().map(|f| f.to_string()).collect();
            return self
                .reject(row, existing.as_ref(), "manifest_invalid", why.join("; "))
                .await;
        };
        if man.identity.name.as_str() != trust.name || inspection.release.name != trust.name {
            return self
                .reject(
                    row,
                    existing.as_ref(),
                    "module_mismatch",
                    format!(
                        "the artifact is module {:?}, but {repository} belongs to {:?}",
                        man.identity.name.as_str(),
                        trust.name
                    ),
                )
                .await;
        }
        if let (Some(pinned), Some(asked)) = (
            &trust.identity_regexp,
            man.identity.cosign_identity_regexp.as_ref(),
        ) && pinned != &asked.source
        {
            return self
                .reject(
                    row,
                    existing.as_ref(),
                    "identity_change_held",
                    format!(
                        "the manifest asks for signer {:?}, the pinned policy says {pinned:?}; an operator must change the policy",
                        asked.source
                    ),
                )
                .await;
        }
        let from = existing.as_ref().map(|e| e.lifecycle);
        row.lifecycle = Lifecycle::Draft;
        row.composefs_digest = Some(inspection.composefs_digest.to_string());
        row.composefs_format = Some(powernode_module::artifact::COMPOSEFS_FORMAT as i64);
        row.file_index = Some(serde_json::to_value(&inspection.index).unwrap_or_default());
        row.manifest = Some(inspection.manifest_text.clone());
        if row.source_commit.is_none() && !inspection.release.git_commit.is_empty() {
            row.source_commit = Some(inspection.release.git_commit.clone());
        }
        let evidence = json!({
            "manifest_digest": row.manifest_digest,
            "artifact_digest": row.artifact_digest,
            "composefs_digest": row.composefs_digest,
            "signature_layer": signer.layer_digest,
            "signer_identity": signer.identity,
            "signer_issuer": signer.issuer,
            "key_index": signer.key_index,
            "tlog_integrated_time": signer.integrated_time,
        });
        let a = audit(&row, "ingested", from, None, evidence);
        if !self.store.write_version(&row, &a).await? {
            return Ok(Outcome::AlreadyIngested(id));
        }
        if trust.trust_on_first_use
            && trust.identity_regexp.is_none()
            && let (Some(i), Some(iss)) = (&signer.identity, &signer.issuer)
        {
            self.store.set_pin(&trust.name, i, iss, &id).await?;
        }
        Ok(Outcome::Ingested(id))
    }

    /// Chooses the accepted signature, applying a first-use pin when the policy uses one.
    async fn pick_signer(
        &self,
        trust: &ModuleTrust,
        verified: &[Verified],
    ) -> Result<Result<Verified, String>, Transient> {
        let first = verified[0].clone();
        if !(trust.trust_on_first_use && trust.identity_regexp.is_none()) {
            return Ok(Ok(first));
        }
        match self.store.pin(&trust.name).await? {
            None => Ok(Ok(first)),
            Some((id, iss)) => Ok(verified
                .iter()
                .find(|v| v.identity.as_deref() == Some(&id) && v.issuer.as_deref() == Some(&iss))
                .cloned()
                .ok_or_else(|| {
                    format!("no signature by the identity pinned on first use ({id}, issuer {iss})")
                })),
        }
    }

    /// No acceptable signature yet: wait (until the timeout, then reject).
    async fn wait_for_signature(
        &self,
        mut row: VersionRow,
        existing: Option<&VersionRow>,
        why: String,
    ) -> Result<Outcome, Transient> {
        if now_ms() - row.created_at > self.signature_timeout_ms {
            return self
                .reject(
                    row,
                    existing,
                    "signature_timeout",
                    format!("no acceptable signature in time: {why}"),
                )
                .await;
        }
        row.reject_reason = Some(why.clone());
        let unchanged = existing.is_some_and(|e| {
            e.lifecycle == Lifecycle::PendingSignature && e.manifest_digest == row.manifest_digest
        });
        if !unchanged {
            let a = audit(
                &row,
                "awaiting_signature",
                existing.map(|e| e.lifecycle),
                Some(why),
                json!({"manifest_digest": row.manifest_digest}),
            );
            self.store.write_version(&row, &a).await?;
        }
        Ok(Outcome::PendingSignature(row.id))
    }

    async fn reject(
        &self,
        mut row: VersionRow,
        existing: Option<&VersionRow>,
        code: &str,
        why: String,
    ) -> Result<Outcome, Transient> {
        self.metrics.rejection(code);
        row.lifecycle = Lifecycle::Rejected;
        row.reject_reason = Some(format!("{code}: {why}"));
        let same = existing.is_some_and(|e| {
            e.lifecycle == Lifecycle::Rejected
                && e.manifest_digest == row.manifest_digest
                && e.reject_reason == row.reject_reason
        });
        if !same {
            let a = audit(
                &row,
                "rejected",
                existing.map(|e| e.lifecycle),
                Some(format!("{code}: {why}")),
                json!({"manifest_digest": row.manifest_digest, "code": code}),
            );
            self.store.write_version(&row, &a).await?;
        }
        Ok(Outcome::Rejected(row.id, format!("{code}: {why}")))
    }

    /// A `.sig` tag was pushed: re-check versions of `repository` waiting for `digest`.
    pub async fn recheck_signature(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<Outcome>, Transient> {
        let mut out = Vec::new();
        for v in self.store.pending_versions(Some(digest)).await? {
            if v.repository == repository {
                out.push(self.ingest(&v.repository, &v.tag).await?);
            }
        }
        Ok(out)
    }
}
