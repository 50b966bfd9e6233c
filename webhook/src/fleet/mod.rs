//! The fleet: templates with assigned modules, the signed desired state of each template,
//! and the instances that apply it and report what they run (ARCHITECTURE.md §8).
//!
//! A desired state is recomputed when one of its inputs changes — a version entering or
//! leaving `live` (the promotion's transaction enqueues [`recompute_job`]), an assignment,
//! a new template — and never on a read. A recomputation whose composition has conflicts
//! does not replace the served state (fail safe): the template shows the findings and the
//! block is audited.

pub mod cache;
pub mod drift;
pub mod key;
pub mod layers;
pub mod resolve;

use crate::{
    ingest::trust::Policies,
    lifecycle::Actor,
    store::{AuditAction, LastComputation, NewAudit, NewJob, Store, VersionRow, Via},
};
use key::ReceiverKey;
use powernode_module::{
    Version,
    artifact::COMPOSEFS_FORMAT,
    compose,
    desired_state::{self, DesiredModule, DesiredState, SignerPolicy},
    diagnostics::{Code, Finding, Severity},
    digest::Digest,
};
use serde::Serialize;
use std::{collections::BTreeMap, sync::Arc};

/// The job that recomputes every template's desired state. One queued at a time (its
/// dedupe key is fixed): a burst of promotions recomputes once.
pub fn recompute_job() -> NewJob {
    NewJob {
        kind: "desired_states".into(),
        dedupe_key: "desired_states".into(),
        payload: serde_json::json!({}),
    }
}

#[derive(Debug, Clone)]
pub struct Fleet {
    pub store: Store,
    pub key: Arc<ReceiverKey>,
    pub policies: Arc<Policies>,
    /// `host:port` of the registry, for the references nodes fetch by digest.
    pub registry_host: String,
    pub cache: Arc<cache::Cache>,
}

/// The outcome of recomputing one template.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Recomputed {
    pub template_id: String,
    /// The state now served (unchanged when blocked).
    pub state_id: Option<String>,
    /// The served state changed.
    pub changed: bool,
    /// Conflicts kept the new state from being served.
    pub blocked: bool,
    pub conflicts: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// The modules of the computed state, in composition order.
    pub modules: Vec<String>,
}

impl Fleet {
    /// Recomputes every template (the [`recompute_job`]).
    pub async fn recompute_all(&self) -> anyhow::Result<Vec<Recomputed>> {
        let mut out = Vec::new();
        for t in self.store.templates().await? {
            if let Some(r) = self.recompute(&t.id, &Actor::Auto, Via::Auto).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Recomputes one template's desired state and serves it unless it has conflicts.
    /// `None` if there is no such template.
    pub async fn recompute(
        &self,
        template_id: &str,
        actor: &Actor,
        via: Via,
    ) -> anyhow::Result<Option<Recomputed>> {
        let Some(template) = self.store.template(template_id).await? else {
            return Ok(None);
        };
        let assignments = self
            .store
            .assignments(template_id)
            .await?
            .into_iter()
            .map(|a| {
                let req = a.requirement.as_deref().map(str::parse).transpose()?;
                Ok((a.module_name, req))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let live = candidates(self.store.live_versions().await?);
        let resolution = resolve::resolve(&assignments, &live);
        let mut findings: Vec<Finding> = resolution
            .unresolved
            .iter()
            .map(|u| {
                Finding::new(Code::AssignmentUnresolved, &u.module, &u.why)
                    .field(format!("assignments.{}", u.module))
            })
            .collect();
        let mut layers = Vec::new();
        for c in resolution.chosen.values() {
            match layers::layer_of(c) {
                Ok(l) => layers.push(l),
                // One unreadable version blocks the templates that need it (fail safe), not
                // the recomputation of every other template.
                Err(why) => findings.push(
                    Finding::new(
                        Code::EntryInvalid,
                        c.data.module.as_str(),
                        format!("version {} cannot be composed: {why}", c.data.id),
                    )
                    .field(format!("versions.{}", c.data.id)),
                ),
            }
        }
        let composition = compose::compose(&layers);
        findings.extend(composition.findings().iter().cloned());
        let blocked = composition.merged_digest().is_none()
            || findings.iter().any(|f| f.severity == Severity::Conflict);
        let (conflicts, warnings): (Vec<_>, Vec<_>) = findings
            .iter()
            .cloned()
            .partition(|f| f.severity != Severity::Warning);
        let order: Vec<String> = composition.order().iter().map(|m| m.to_string()).collect();

        let mut serve = None;
        let mut candidate_id = None;
        if let (false, Some(merged)) = (blocked, composition.merged_digest()) {
            let mut modules = Vec::new();
            for name in &order {
                let c = resolution.chosen[name.as_str()];
                modules.push(
                    self.desired_module(&c.data, &c.version, &c.manifest)
                        .await?,
                );
            }
            let state = DesiredState {
                schema_version: desired_state::SCHEMA_VERSION,
                template_id: template.id.clone(),
                platform: template.platform.clone(),
                modules,
                composefs_digest: merged,
                composefs_format: COMPOSEFS_FORMAT,
            };
            let (envelope, id) =
                desired_state::sign(&state, &self.key.signer, &self.key.public_pem)?;
            candidate_id = Some(id.to_string());
            serve = Some((
                id.to_string(),
                serde_json::to_value(&state)?,
                serde_json::to_value(&envelope)?,
            ));
        }
        let outcome = LastComputation {
            blocked,
            findings: serde_json::to_value(&findings)?,
            candidate_state_id: candidate_id.clone(),
            computed_at: self.store.now(),
        };
        let previous = self.store.served_state_id(template_id).await?;
        let audit = NewAudit {
            version_id: None,
            template_id: Some(template_id.to_owned()),
            module: None,
            actor: actor.encode(),
            via,
            action: if blocked {
                AuditAction::DesiredStateBlocked
            } else {
                AuditAction::DesiredStateChanged
            },
            from_state: None,
            to_state: None,
            reason: blocked.then(|| {
                conflicts
                    .iter()
                    .map(|f| f.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
            evidence: serde_json::json!({
                "previous_state_id": previous,
                "state_id": candidate_id,
                "modules": order,
                "conflicts": conflicts,
            }),
        };
        let changed = self
            .store
            .record_computation(
                template_id,
                &outcome,
                serve.as_ref().map(|(id, d, e)| (id.as_str(), d, e)),
                &audit,
            )
            .await?;
        let state_id = if blocked { previous } else { candidate_id };
        if let Some(id) = &state_id {
            self.cache.set_state(template_id, id);
        }
        if blocked {
            tracing::warn!(
                template = template_id,
                conflicts = conflicts.len(),
                "desired state blocked by conflicts; the served state stays"
            );
        } else if changed {
            tracing::info!(template = template_id, state_id = ?state_id, "desired state changed");
        }
        Ok(Some(Recomputed {
            template_id: template_id.to_owned(),
            state_id,
            changed,
            blocked,
            conflicts,
            warnings,
            modules: order,
        }))
    }

    /// What a node needs to fetch and verify `v`: its reference by digest, digests and the
    /// module's pinned signer policy (configuration, or the identity pinned on first use).
    async fn desired_module(
        &self,
        v: &VersionRow,
        version: &Version,
        manifest: &powernode_module::manifest::Manifest,
    ) -> anyhow::Result<DesiredModule> {
        let manifest_digest: Digest = v.manifest_digest.parse()?;
        let composefs_digest: Digest = v
            .composefs_digest
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("version {} has no composefs digest", v.id))?
            .parse()?;
        let trust = self.policies.by_name(&v.module);
        let mut signer = SignerPolicy {
            keys: trust.map(|t| t.key_pems.clone()).unwrap_or_default(),
            identity_regexp: trust.and_then(|t| t.identity_regexp.clone()),
            issuer_regexp: trust.and_then(|t| t.issuer_regexp.clone()),
            require_tlog: trust.is_none_or(|t| t.policy.require_tlog),
        };
        if signer.identity_regexp.is_none()
            && let Some(pin) = self.store.pin(&v.module).await?
        {
            signer.identity_regexp = Some(pin.identity_pattern);
            signer.issuer_regexp = Some(format!("^{}$", regex::escape(&pin.issuer)));
        }
        Ok(DesiredModule {
            name: v.module.clone(),
            version: version.to_string(),
            reference: format!("{}/{}@{manifest_digest}", self.registry_host, v.repository),
            manifest_digest,
            composefs_digest,
            signer,
            packages: manifest.package_spec.clone(),
        })
    }
}

/// Live versions as resolution candidates, by module. A version whose manifest no longer
/// parses (it did at ingest) is left out with an error in the log rather than failing
/// every template.
pub fn candidates(rows: Vec<VersionRow>) -> BTreeMap<String, Vec<resolve::Candidate<VersionRow>>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for row in rows {
        let version = match Version::parse(&row.version) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(version = %row.id, error = %e, "live version is not SemVer; left out");
                continue;
            }
        };
        let Some(manifest) = row
            .manifest
            .as_deref()
            .and_then(|t| powernode_module::manifest::parse(t).manifest)
        else {
            tracing::error!(version = %row.id, "live version has no valid manifest; left out");
            continue;
        };
        out.entry(row.module.clone())
            .or_default()
            .push(resolve::Candidate {
                version,
                manifest,
                data: row,
            });
    }
    out
}
