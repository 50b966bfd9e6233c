//! Recomputing only what changed (ARCHITECTURE.md §8).
//!
//! Each computation records the digest of its inputs and the closure of module names they
//! reach. A change to a module's `live` versions queues a job naming the module, which
//! recomputes only the templates whose closure names it ([`Store::templates_reaching`]); a
//! change to one template queues a job naming the template; and a recomputation whose
//! inputs digest as the last one's composes nothing at all.
//!
//! [`Store::templates_reaching`]: crate::store::Store::templates_reaching

use super::{Assignments, Fleet, Live, Recomputed};
use crate::{
    lifecycle::Actor,
    store::{Job, LastComputation, NewJob, ServedState, TemplateId, TemplateRow, Via},
};
use powernode_module::{
    diagnostics::{Finding, Severity},
    digest::Digest,
};
use std::collections::BTreeSet;

/// Bumped when what goes into an input digest, or how it is composed, changes meaning.
const INPUTS_VERSION: u32 = 1;

/// The job that recomputes every template's desired state (start-up, migrations, new keys).
/// One queued at a time (its dedupe key is fixed).
pub fn recompute_job() -> NewJob {
    Job::DesiredStates {
        modules: None,
        template: None,
    }
    .to_new()
}

/// The job a change to these modules' `live` versions queues: the templates whose closure
/// reaches one of them. One queued per set of modules.
pub fn recompute_modules_job<'a>(modules: impl IntoIterator<Item = &'a str>) -> NewJob {
    let names: BTreeSet<&str> = modules.into_iter().collect();
    Job::DesiredStates {
        modules: Some(names.into_iter().map(str::to_owned).collect()),
        template: None,
    }
    .to_new()
}

/// The job a change to one template (created, assignments changed) queues.
pub fn recompute_template_job(template: &TemplateId) -> NewJob {
    Job::DesiredStates {
        modules: None,
        template: Some(template.to_owned()),
    }
    .to_new()
}

/// What a computation starts from, digested.
#[derive(Debug, Clone)]
pub(super) struct Inputs {
    pub digest: String,
    /// Every module name reachable from the assignments and the served state's modules
    /// through the dependencies of any live version, whether it has live versions or not.
    pub closure: Vec<String>,
}

impl Fleet {
    /// Runs the `desired_states` job: the templates `modules` may change, `template`, or,
    /// given neither, every template.
    pub async fn recompute_changed(
        &self,
        modules: Option<&[String]>,
        template: Option<&TemplateId>,
    ) -> anyhow::Result<Vec<Recomputed>> {
        let targets: BTreeSet<TemplateId> = match (modules, template) {
            (None, None) => self
                .store
                .templates()
                .await?
                .into_iter()
                .map(|t| t.id)
                .collect(),
            (modules, template) => {
                let mut t: BTreeSet<TemplateId> = template.cloned().into_iter().collect();
                if let Some(m) = modules {
                    let m: BTreeSet<String> = m.iter().cloned().collect();
                    t.extend(self.store.templates_reaching(&m).await?);
                }
                t
            }
        };
        tracing::info!(
            templates = targets.len(),
            modules = ?modules,
            template = template.map(TemplateId::as_str),
            "recomputing desired states"
        );
        // The live set is read once for all of them, not once per template (after the
        // epoch that tells, under each template's lock, whether it is still current).
        let live = match targets.len() {
            0 | 1 => None,
            _ => {
                let epoch = self.store.live_epoch().await?;
                let live = super::candidates(self.store.live_versions().await?);
                crate::faults::point("fleet.recompute_many.after_live_read").await;
                Some(super::SharedLive { epoch, live })
            }
        };
        let mut out = Vec::new();
        for id in targets {
            if let Some(r) = self
                .recompute_from(&id, &Actor::Auto, Via::Auto, live.as_ref())
                .await?
            {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The inputs of `template`'s computation: the assignments, the platform, and every live
    /// version of every module in their closure as the state would describe it (reference,
    /// digests, signer policy, packages) plus its id.
    pub(super) async fn inputs(
        &self,
        template: &TemplateRow,
        assignments: &Assignments,
        live: &Live,
        served: Option<&ServedState>,
    ) -> anyhow::Result<Inputs> {
        let served_modules: Vec<String> = served
            .and_then(|s| s.document["modules"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m["name"].as_str().map(str::to_owned))
            .collect();
        let mut closure = BTreeSet::new();
        let mut queue: Vec<String> = assignments
            .iter()
            .map(|(m, _)| m.clone())
            .chain(served_modules.iter().cloned())
            .collect();
        while let Some(m) = queue.pop() {
            if !closure.insert(m.clone()) {
                continue;
            }
            for c in live.get(&m).into_iter().flatten() {
                for d in &c.manifest.dependency_spec {
                    if !closure.contains(d.name.as_str()) {
                        queue.push(d.name.as_str().to_owned());
                    }
                }
            }
        }
        let mut versions = Vec::new();
        for m in &closure {
            let mut cands: Vec<_> = live.get(m).into_iter().flatten().collect();
            cands.sort_by_key(|c| c.data.id.to_string());
            for c in cands {
                let described = match self.desired_module(&c.data, &c.manifest).await {
                    Ok(d) => serde_json::to_value(d)?,
                    Err(e) => serde_json::json!({"error": format!("{e:#}")}),
                };
                versions.push(serde_json::json!({
                    "id": c.data.id.to_string(),
                    "indexed": c.data.file_index.is_some(),
                    "module": described,
                }));
            }
        }
        let doc = serde_json::json!({
            "inputs": INPUTS_VERSION,
            "receiver": env!("CARGO_PKG_VERSION"),
            "platform": template.platform,
            "assignments": assignments
                .iter()
                .map(|(m, r)| serde_json::json!([m, r.as_ref().map(|r| r.to_string())]))
                .collect::<Vec<_>>(),
            "served": served_modules,
            "live": versions,
        });
        Ok(Inputs {
            digest: Digest::of(&serde_json::to_vec(&doc)?).to_string(),
            closure: closure.into_iter().collect(),
        })
    }

    /// The outcome of the last computation, when `inputs` are what it was computed from and
    /// the served state needs no re-issue: nothing to compose.
    pub(super) async fn unchanged(
        &self,
        template_id: &TemplateId,
        inputs: &Inputs,
        last: Option<&LastComputation>,
        served: Option<&ServedState>,
    ) -> anyhow::Result<Option<Recomputed>> {
        let Some(last) = last.filter(|l| l.input_digest.as_deref() == Some(&inputs.digest)) else {
            return Ok(None);
        };
        if let Some(st) = served {
            let now_s = self.store.now().div_euclid(1000);
            if st.sequence <= 0
                || st.expires_at - now_s <= self.validity_secs / 2
                || self.resign_due(&st.envelope).await?
            {
                return Ok(None);
            }
            self.cache.set_state(template_id, &st.state_id);
        }
        let findings: Vec<Finding> =
            serde_json::from_value(last.findings.clone()).unwrap_or_default();
        let (conflicts, warnings): (Vec<_>, Vec<_>) = findings
            .into_iter()
            .partition(|f| f.severity != Severity::Warning);
        Ok(Some(Recomputed {
            template_id: template_id.to_owned(),
            state_id: served.map(|s| s.state_id.clone()),
            changed: false,
            blocked: last.blocked,
            conflicts,
            warnings,
            modules: last.modules.clone().unwrap_or_default(),
            degraded: served
                .and_then(|s| s.degraded.clone())
                .and_then(|d| serde_json::from_value(d).ok()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn recompute_jobs_are_the_queues_desired_states_rows() {
        // The promotion enqueues the recomputation without knowing this enum: same row.
        let row = super::recompute_job();
        let all = Job::DesiredStates {
            modules: None,
            template: None,
        };
        assert_eq!(
            Job::decode(row.kind.as_str(), &row.payload),
            Ok(all.clone())
        );
        assert_eq!(row.dedupe_key, all.dedupe_key());
        assert_eq!(
            row.payload,
            serde_json::json!({}),
            "the payload rows always had"
        );
        // Targeted jobs: one queued per module set or template, each decoding back.
        for row in [
            super::recompute_modules_job(["my-redis"]),
            super::recompute_template_job(&"t1".into()),
        ] {
            let job = Job::decode(row.kind.as_str(), &row.payload).unwrap();
            assert_eq!(job.to_new().dedupe_key, row.dedupe_key);
            assert_ne!(row.dedupe_key, all.dedupe_key());
        }
        // A replica from before targeted jobs reads one as a full recomputation.
        #[derive(Debug, Deserialize)]
        #[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
        enum Before {
            DesiredStates {},
        }
        let row = super::recompute_modules_job(["my-redis"]);
        assert!(matches!(
            serde_json::from_value::<Before>(
                serde_json::json!({"kind": row.kind.as_str(), "payload": row.payload})
            ),
            Ok(Before::DesiredStates {})
        ));
    }
}
