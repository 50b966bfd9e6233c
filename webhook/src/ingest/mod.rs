//! Ingest: a tag in the registry becomes a verified `draft` version, or a recorded reason
//! why not. Always re-reads the registry by digest; a webhook is only a hint.
//!
//! Three steps: **fetch** (the manifest by tag, the signatures, the blob, streamed into the
//! staging directory), **check** (pure functions in [`checks`] and [`tofu`], each returning a
//! typed [`Rejection`]) and **write** (the version and its audit row in one transaction).
//!
//! Order of checks: release tag is SemVer → artifact type → version immutability → the tag,
//! annotation and `module-release` agree on the version → signature under the module's pinned
//! policy → source commit → blob size and digest → every tar entry against index.json →
//! composefs digest against the signed annotation → manifest valid, naming the policy's
//! module, in its pinned category → first-use pin (under `trust_on_first_use = "confirm"` a
//! proposal: the version waits in `pending_signature` for an operator, see [`first_use`]).

pub mod checks;
mod first_use;
pub mod rejection;
pub mod staging;
pub mod tofu;

use crate::catalogue::{ModuleTrust, Policies};
use crate::{
    error::Error,
    metrics::Metrics,
    store::{AuditAction, Lifecycle, NewAudit, Store, VersionId, VersionRow, Via},
};
use powernode_module::{
    Version,
    artifact::{ARTIFACT_TYPE, Inspection, LAYER_MEDIA_TYPE, ReadLimits, read_and_verify_with},
    digest::Digest,
    manifest,
    registry::{Registry, RegistryError, artifact as ann, parse_reference, with_digest, with_tag},
    trust::verify::{self, Verified, VerifyError},
};
pub use rejection::Rejection;
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
    /// Largest number of index.json entries accepted (checked before any entry is read).
    pub max_index_entries: usize,
    /// Where blobs are staged while they are checked: this receiver's locked claim under
    /// `DATA_DIR/staging` ([`staging::Staging`]).
    pub work_dir: std::path::PathBuf,
    /// Keeps the claim (and its lock) for as long as any copy of the context lives.
    pub staging: Arc<staging::Staging>,
}

/// How a job ended, when it did not fail transiently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ingested(VersionId),
    AlreadyIngested(VersionId),
    PendingSignature(VersionId),
    /// Not ingested, and why (typed: match the variant, show its `Display`).
    Rejected(VersionId, Rejection),
    Ignored(String),
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

fn audit(
    v: &VersionRow,
    action: AuditAction,
    from: Option<Lifecycle>,
    reason: Option<String>,
    evidence: serde_json::Value,
) -> NewAudit {
    NewAudit {
        version_id: Some(v.id.clone()),
        template_id: None,
        module: Some(v.module.to_string()),
        actor: "module-webhook".into(),
        via: Via::Ingest,
        action,
        from_state: from,
        to_state: Some(v.lifecycle),
        reason,
        evidence,
    }
}

impl Ctx {
    /// Ingests `repository:tag`.
    pub async fn ingest(&self, repository: &str, tag: &str) -> Result<Outcome, Error> {
        let Some(trust) = self.policies.for_repository(repository) else {
            return Ok(Outcome::Ignored(format!(
                "no trust policy pins a signer for {repository}"
            )));
        };
        // Versions are SemVer; any other tag (`latest`, `redis-3.0.0`) is not a release and
        // must not take a version's place.
        let version = match Version::from_tag(tag) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Outcome::Ignored(format!(
                    "{repository}:{tag} is not a release tag: {e}"
                )));
            }
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
        let Ok(layer_digest) = m.layers[0].digest.parse::<Digest>() else {
            return Ok(Outcome::Ignored(format!(
                "{repository}:{tag} names its layer by a malformed digest {:?}",
                m.layers[0].digest
            )));
        };
        let id = VersionId::new(&trust.name, &version);
        let existing = self
            .store
            .version(&trust.name, &version.to_string())
            .await?;
        if let Some(e) = &existing
            && e.lifecycle.is_published()
        {
            if e.manifest_digest == digest {
                return Ok(Outcome::AlreadyIngested(id));
            }
            return self
                .refuse_different_digest(trust, e, repository, tag, &digest)
                .await;
        }
        let now = self.store.now();
        let row = VersionRow {
            id: id.clone(),
            // Configured names are checked when the configuration is read.
            module: trust.name.parse().map_err(anyhow::Error::msg)?,
            version: version.clone(),
            lifecycle: Lifecycle::PendingSignature,
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            manifest_digest: digest,
            artifact_digest: Some(layer_digest),
            composefs_digest: None,
            composefs_format: None,
            source_repository: m.annotations.get(ann::ANN_SOURCE).cloned(),
            source_commit: None,
            signer_identity: None,
            signer_issuer: None,
            file_index: None,
            manifest: None,
            reject_reason: None,
            created_at: existing
                .as_ref()
                .filter(|e| e.manifest_digest == digest)
                .map(|e| e.created_at)
                .unwrap_or(now),
            updated_at: now,
        };
        let existing = existing.as_ref();
        if let Err(r) = checks::version(
            &version,
            m.annotations.get(ann::ANN_VERSION).map(String::as_str),
            None,
        ) {
            return self.reject(row, existing, r).await;
        }

        // Signature.
        let verified = match verify::verify(&self.registry, &repo_ref, &digest, &trust.policy).await
        {
            Ok(v) => v,
            Err(VerifyError::Fetch(e)) => return Err(e.into()),
            Err(e) => {
                self.metrics.verification_failure(e.code());
                return self.wait_for_signature(row, existing, e.to_string()).await;
            }
        };
        let signer = match self
            .pick_signer(trust, &verified, &id, &row.manifest_digest.to_string())
            .await?
        {
            Ok(s) => s,
            Err(stop) => return self.stop(row, existing, stop).await,
        };

        // Content.
        let inspection = match self.fetch_and_inspect(&repo_ref, &digest, &m).await? {
            Ok(i) => i,
            Err(r) => return self.reject(row, existing, r).await,
        };
        let checked = self.check_content(trust, &m, &version, signer.verified(), &inspection);
        let (man_text, source_commit) = match checked {
            Ok(c) => c,
            Err(r) => return self.reject(row, existing, r).await,
        };

        // The first-use pin (or proposal), claimed atomically once everything else holds.
        let signer = match signer {
            first_use::Signer::Accepted(v) => v,
            first_use::Signer::FirstUse(_, candidate) => {
                match self.settle_pin(trust, candidate, &verified).await? {
                    Ok(v) => v,
                    Err(stop) => return self.stop(row, existing, stop).await,
                }
            }
        };
        self.write_draft(row, existing, signer, inspection, man_text, source_commit)
            .await
    }

    /// A published version is immutable: record the attempt to replace it, change nothing.
    async fn refuse_different_digest(
        &self,
        trust: &ModuleTrust,
        e: &VersionRow,
        repository: &str,
        tag: &str,
        digest: &Digest,
    ) -> Result<Outcome, Error> {
        self.store
            .audit(&NewAudit {
                version_id: Some(e.id.clone()),
                template_id: None,
                module: Some(trust.name.clone()),
                actor: "module-webhook".into(),
                via: Via::Ingest,
                action: AuditAction::RefusedDifferentDigest,
                from_state: Some(e.lifecycle),
                to_state: Some(e.lifecycle),
                reason: Some(format!(
                    "version {} is already {} with digest {}; {repository}:{tag} now points to {digest}",
                    e.version, e.lifecycle, e.manifest_digest
                )),
                evidence: json!({"existing": e.manifest_digest, "offered": digest.to_string(), "tag": tag}),
            })
            .await?;
        Ok(Outcome::Rejected(e.id.clone(), Rejection::DigestChanged))
    }

    /// Streams the layer into the staging directory and verifies every entry of it.
    async fn fetch_and_inspect(
        &self,
        repo_ref: &oci_client::Reference,
        digest: &Digest,
        m: &OciManifest,
    ) -> Result<Result<Inspection, Rejection>, Error> {
        let layer = &m.layers[0];
        if layer.size > self.max_artifact_bytes {
            return Ok(Err(Rejection::ArtifactTooLarge {
                size: layer.size,
                max: self.max_artifact_bytes,
            }));
        }
        let Ok(layer_digest) = layer.digest.parse::<Digest>() else {
            return Ok(Err(Rejection::ArtifactInvalid(format!(
                "layer digest {:?} is invalid",
                layer.digest
            ))));
        };
        let tmp = tempfile::NamedTempFile::new_in(&self.work_dir)
            .map_err(|e| Error::io(format!("staging a blob in {}", self.work_dir.display()), e))?;
        let mut f = tokio::fs::File::create(tmp.path())
            .await
            .map_err(|e| Error::io("staging a blob", e))?;
        match self
            .registry
            .pull_blob_into(
                &with_digest(repo_ref, digest),
                &layer_digest,
                self.max_artifact_bytes,
                &mut f,
            )
            .await
        {
            Ok(_) => {}
            Err(RegistryError::Invalid { what, message }) => {
                return Ok(Err(Rejection::ArtifactInvalid(format!(
                    "{what}: {message}"
                ))));
            }
            // Our own disk, not the registry: say where, so "No space left on device" points
            // the operator at the staging directory. The partial file goes with `tmp`.
            Err(RegistryError::Sink { source, .. }) => {
                return Err(Error::io(
                    format!(
                        "writing the blob into the staging directory {}",
                        self.work_dir.display()
                    ),
                    source,
                ));
            }
            Err(e) => return Err(e.into()),
        }
        drop(f);
        let path = tmp.path().to_owned();
        let limits = ReadLimits::default().with_max_index_entries(self.max_index_entries);
        let inspection = tokio::task::spawn_blocking(move || {
            std::fs::File::open(&path)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    read_and_verify_with(std::io::BufReader::with_capacity(1 << 20, f), &limits)
                        .map_err(|e| e.to_string())
                })
        })
        .await?;
        Ok(inspection.map_err(Rejection::ArtifactInvalid))
    }

    /// The content checks once the artifact is read: composefs digest, manifest, module,
    /// identity, category, version and commit. Returns the manifest text and source commit.
    fn check_content(
        &self,
        trust: &ModuleTrust,
        m: &OciManifest,
        version: &Version,
        signer: &Verified,
        inspection: &Inspection,
    ) -> Result<(String, Option<String>), Rejection> {
        let signed_cfs = m.annotations.get(ann::ANN_COMPOSEFS_DIGEST);
        if signed_cfs != Some(&inspection.composefs_digest.to_string()) {
            return Err(Rejection::ComposefsMismatch {
                artifact: inspection.composefs_digest.to_string(),
                signed: signed_cfs.cloned(),
            });
        }
        let parsed = manifest::parse(&inspection.manifest_text);
        let Some(man) = parsed.manifest else {
            let why: Vec<String> = parsed.findings.iter().map(|f| f.to_string()).collect();
            return Err(Rejection::ManifestInvalid(why.join("; ")));
        };
        if man.identity.name.as_str() != trust.name || inspection.release.name != trust.name {
            return Err(Rejection::ModuleMismatch {
                artifact: man.identity.name.as_str().to_owned(),
                repository: trust.repository.clone(),
                module: trust.name.clone(),
            });
        }
        if let (Some(pinned), Some(asked)) = (
            &trust.identity_regexp,
            man.identity.cosign_identity_regexp.as_ref(),
        ) && pinned != &asked.source
        {
            return Err(Rejection::IdentityChangeHeld {
                asked: asked.source.clone(),
                pinned: pinned.clone(),
            });
        }
        checks::category(
            &man.identity.category.to_string(),
            trust.category.as_deref(),
        )?;
        checks::version(
            version,
            m.annotations.get(ann::ANN_VERSION).map(String::as_str),
            Some(&inspection.release),
        )?;
        let commit = checks::source_commit(
            m.annotations.get(ann::ANN_REVISION).map(String::as_str),
            signer.source_commit.as_deref(),
            Some(inspection.release.git_commit.as_str()),
        )?;
        Ok((inspection.manifest_text.clone(), commit))
    }

    async fn write_draft(
        &self,
        mut row: VersionRow,
        existing: Option<&VersionRow>,
        signer: Verified,
        inspection: Inspection,
        manifest_text: String,
        source_commit: Option<String>,
    ) -> Result<Outcome, Error> {
        let from = existing.map(|e| e.lifecycle);
        row.lifecycle = Lifecycle::Draft;
        row.signer_identity = signer.identity.clone();
        row.signer_issuer = signer.issuer.clone();
        row.source_commit = source_commit;
        row.composefs_digest = Some(inspection.composefs_digest);
        row.composefs_format = Some(powernode_module::artifact::COMPOSEFS_FORMAT as i64);
        row.file_index = Some(serde_json::to_value(&inspection.index).unwrap_or_default());
        row.manifest = Some(manifest_text);
        let evidence = json!({
            "manifest_digest": row.manifest_digest,
            "artifact_digest": row.artifact_digest,
            "composefs_digest": row.composefs_digest,
            "source_commit": row.source_commit,
            "signature_layer": signer.layer_digest,
            "signer_identity": signer.identity,
            "signer_issuer": signer.issuer,
            "key_index": signer.key_index,
            "tlog_integrated_time": signer.integrated_time,
        });
        let id = row.id.clone();
        let a = audit(&row, AuditAction::Ingested, from, None, evidence);
        if !self.store.write_version(&row, &a).await? {
            return Ok(Outcome::AlreadyIngested(id));
        }
        Ok(Outcome::Ingested(id))
    }

    /// No acceptable signature yet: wait (until the timeout, then reject).
    async fn wait_for_signature(
        &self,
        mut row: VersionRow,
        existing: Option<&VersionRow>,
        why: String,
    ) -> Result<Outcome, Error> {
        if self.store.now() - row.created_at > self.signature_timeout_ms {
            return self
                .reject(row, existing, Rejection::SignatureTimeout(why))
                .await;
        }
        row.reject_reason = Some(why.clone());
        let unchanged = existing.is_some_and(|e| {
            e.lifecycle == Lifecycle::PendingSignature && e.manifest_digest == row.manifest_digest
        });
        if !unchanged {
            let evidence = json!({"manifest_digest": row.manifest_digest});
            self.record(
                &row,
                existing,
                AuditAction::AwaitingSignature,
                why,
                evidence,
            )
            .await?;
        }
        Ok(Outcome::PendingSignature(row.id))
    }

    /// Writes `row` as it now stands, with its audit row (`action`, `reason`, `evidence`),
    /// the transition from what `existing` said. Callers skip it when nothing changed.
    pub(crate) async fn record(
        &self,
        row: &VersionRow,
        existing: Option<&VersionRow>,
        action: AuditAction,
        reason: String,
        evidence: serde_json::Value,
    ) -> Result<(), Error> {
        let a = audit(
            row,
            action,
            existing.map(|e| e.lifecycle),
            Some(reason),
            evidence,
        );
        self.store.write_version(row, &a).await?;
        Ok(())
    }

    async fn reject(
        &self,
        mut row: VersionRow,
        existing: Option<&VersionRow>,
        why: Rejection,
    ) -> Result<Outcome, Error> {
        let code = why.code();
        self.metrics.rejection(code);
        let reason = why.to_string();
        row.lifecycle = Lifecycle::Rejected;
        row.reject_reason = Some(reason.clone());
        let same = existing.is_some_and(|e| {
            e.lifecycle == Lifecycle::Rejected
                && e.manifest_digest == row.manifest_digest
                && e.reject_reason == row.reject_reason
        });
        if !same {
            let evidence = json!({"manifest_digest": row.manifest_digest, "code": code});
            self.record(
                &row,
                existing,
                AuditAction::Rejected,
                reason.clone(),
                evidence,
            )
            .await?;
        }
        Ok(Outcome::Rejected(row.id, why))
    }

    /// A `.sig` tag was pushed: re-check versions of `repository` waiting for `digest`.
    pub async fn recheck_signature(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<Outcome>, Error> {
        let mut out = Vec::new();
        // A tag that names no well-formed digest names no pending version either.
        let Ok(digest) = digest.parse::<Digest>() else {
            return Ok(out);
        };
        for v in self.store.pending_versions(Some(&digest)).await? {
            if v.repository == repository {
                out.push(self.ingest(&v.repository, &v.tag).await?);
            }
        }
        Ok(out)
    }
}
