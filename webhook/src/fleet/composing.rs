//! Composing a template's desired state from the live set: the full state its assignments
//! resolve to, the degraded one served when a version it names left `live`, and what a node
//! needs of each chosen version (its reference, digests and pinned signer policy).

use super::{
    Assignments, Composed, Degraded, DegradedMode, Fleet, Live, layers, resolve, unsigned,
};
use crate::store::{TemplateRow, VersionRow};
use powernode_module::{
    compose,
    desired_state::{DesiredModule, DesiredState, SignerPolicy},
    diagnostics::{Code, Finding, Severity},
};

impl Fleet {
    /// Resolves `assignments` against `live` and composes them: the findings and, when
    /// nothing blocks, the unsigned document.
    pub(super) async fn compose(
        &self,
        template: &TemplateRow,
        assignments: &Assignments,
        live: &Live,
    ) -> anyhow::Result<Composed> {
        let resolution = resolve::resolve(assignments, live);
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
        let order: Vec<String> = composition.order().iter().map(|m| m.to_string()).collect();
        let mut state = None;
        if let (false, Some(merged)) = (blocked, composition.merged_digest()) {
            let mut modules = Vec::new();
            for name in &order {
                let c = resolution.chosen[name.as_str()];
                modules.push(self.desired_module(&c.data, &c.manifest).await?);
            }
            state = Some(unsigned(template, modules, merged, None));
        }
        Ok(Composed {
            findings,
            blocked,
            order,
            state,
        })
    }

    /// The state to serve when the full one cannot be composed and the served one names a
    /// version that left `live`: the assignments that compose on their own, together; if
    /// those conflict, a hold state.
    pub(super) async fn degrade(
        &self,
        template: &TemplateRow,
        assignments: &Assignments,
        live: &Live,
        conflicts: &[Finding],
    ) -> anyhow::Result<(DesiredState, Degraded)> {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for a in assignments {
            let alone = self
                .compose(template, std::slice::from_ref(a), live)
                .await?;
            if alone.state.is_some() {
                kept.push(a.clone());
            } else {
                dropped.push(a.0.clone());
            }
        }
        let why: Vec<&str> = conflicts.iter().map(|f| f.message.as_str()).collect();
        let why = why.join("; ");
        let rest = self.compose(template, &kept, live).await?;
        if let Some(state) = rest.state {
            let reason = format!(
                "the served state named a version that is no longer live and the assignments cannot all be composed ({why}); serving the template without {}",
                dropped.join(", ")
            );
            return Ok((
                state,
                Degraded {
                    mode: DegradedMode::Degraded,
                    reason,
                    dropped,
                    findings: conflicts.to_vec(),
                },
            ));
        }
        let reason = format!(
            "the served state named a version that is no longer live and nothing composes without it ({why}); nodes hold what they run"
        );
        let empty = compose::compose(&[])
            .merged_digest()
            .ok_or_else(|| anyhow::anyhow!("the empty composition has no digest"))?;
        let hold = unsigned(template, Vec::new(), empty, Some(reason.clone()));
        Ok((
            hold,
            Degraded {
                mode: DegradedMode::Held,
                reason,
                dropped: assignments.iter().map(|a| a.0.clone()).collect(),
                findings: conflicts.to_vec(),
            },
        ))
    }

    /// What a node needs to fetch and verify `v`: its reference by digest, digests and the
    /// module's pinned signer policy (configuration, or the identity pinned on first use).
    pub(super) async fn desired_module(
        &self,
        v: &VersionRow,
        manifest: &powernode_module::manifest::Manifest,
    ) -> anyhow::Result<DesiredModule> {
        let manifest_digest = v.manifest_digest;
        let composefs_digest = v
            .composefs_digest
            .ok_or_else(|| anyhow::anyhow!("version {} has no composefs digest", v.id))?;
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
            name: v.module.to_string(),
            version: v.version.to_string(),
            reference: format!("{}/{}@{manifest_digest}", self.registry_host, v.repository),
            manifest_digest,
            composefs_digest,
            signer,
            packages: manifest.package_spec.clone(),
        })
    }
}
