//! The fleet: templates with assigned modules, the signed desired state of each template,
//! and the instances that apply it and report what they run (ARCHITECTURE.md §8).
//!
//! A desired state is recomputed when one of its inputs changes — a version entering or
//! leaving `live` (the promotion's transaction enqueues [`recompute_modules_job`]: the
//! templates whose closure reaches the module), an assignment, a new template — and never
//! on a read; inputs that digest as the last computation's compose nothing, and one
//! replica at a time recomputes a template ([`incremental`]). A recomputation whose
//! composition has conflicts does not replace the served state (fail safe): the template
//! shows the findings and the block is audited.

pub mod cache;
mod composing;
pub mod drift;
pub mod incremental;
pub mod instances;
pub mod judge;
pub mod key;
pub mod layers;
mod outcome;
pub mod packages;
pub mod reports;
pub mod resolve;
mod serving;
pub mod templates;
pub mod tokens;
pub mod validate;

use crate::{
    catalogue::Policies,
    lifecycle::Actor,
    store::{
        AuditAction, LastComputation, NewAudit, Recorded, Serve, ServedState, Store, TemplateId,
        TemplateRow, VersionRow, Via,
    },
};
use key::Keys;
use powernode_module::{
    artifact::COMPOSEFS_FORMAT,
    desired_state::{self, DesiredModule, DesiredState},
    diagnostics::{Finding, Severity},
    digest::Digest,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

pub use incremental::{recompute_job, recompute_modules_job, recompute_template_job};
pub use outcome::{Degraded, DegradedMode, Recomputed};
pub use resolve::candidates;
pub use serving::{Poll, refresh_until};

#[derive(Debug, Clone)]
pub struct Fleet {
    pub store: Store,
    /// The keys every state is signed with (the next one too during a rotation).
    pub keys: Arc<Keys>,
    pub policies: Arc<Policies>,
    /// `host:port` of the registry, for the references nodes fetch by digest.
    pub registry_host: String,
    pub cache: Arc<cache::Cache>,
    /// Seconds a signed state is valid (`[fleet] state_validity_secs`).
    pub validity_secs: i64,
    /// Milliseconds without a report after which an instance is stale (`[fleet]`).
    pub stale_after_ms: i64,
    /// Counts compositions performed and skipped.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where reports are recorded (group commit).
    pub reports: crate::store::ReportLog,
}

/// One try at recomputing: done, or lost the compare-and-set to another replica.
enum Attempt {
    Done(Box<Recomputed>),
    Lost,
}

/// A document of `template` with sequence and times unset (filled in when it is signed).
fn unsigned(
    template: &TemplateRow,
    modules: Vec<DesiredModule>,
    composefs_digest: Digest,
    hold: Option<String>,
) -> DesiredState {
    DesiredState {
        schema_version: desired_state::SCHEMA_VERSION,
        template_id: template.id.to_string(),
        sequence: 0,
        issued_at: 0,
        expires_at: 0,
        hold,
        platform: template.platform.clone(),
        modules,
        composefs_digest,
        composefs_format: COMPOSEFS_FORMAT,
    }
}

/// Whether every module a stored document names is at a live manifest digest.
fn names_only(document: &serde_json::Value, live: &BTreeSet<Digest>) -> bool {
    document["modules"].as_array().is_some_and(|ms| {
        ms.iter().all(|m| {
            m["manifest_digest"]
                .as_str()
                .and_then(|d| d.parse::<Digest>().ok())
                .is_some_and(|d| live.contains(&d))
        })
    })
}

/// A stored document as a schema 2 one without sequence and times (schema 1 states, from
/// before sequences, are re-issued with the same content).
fn upgrade(document: &serde_json::Value) -> Option<DesiredState> {
    let mut d = document.clone();
    let o = d.as_object_mut()?;
    o.insert(
        "schema_version".into(),
        desired_state::SCHEMA_VERSION.into(),
    );
    for k in ["sequence", "issued_at", "expires_at"] {
        o.insert(k.into(), 0.into());
    }
    serde_json::from_value(d).ok()
}

/// One composition of assignments against the live versions.
struct Composed {
    findings: Vec<Finding>,
    blocked: bool,
    order: Vec<String>,
    /// The unsigned document (sequence and times unset) when nothing blocks it.
    state: Option<DesiredState>,
}

type Assignments = [(String, Option<semver::VersionReq>)];
pub(super) type Live = BTreeMap<String, Vec<resolve::Candidate<VersionRow>>>;

/// The live set a recomputation of many templates reads once, and the live epoch
/// ([`crate::store::Store::live_epoch`]) read just before it. Under each template's lock it
/// is used only while the epoch is still that one: else another replica may already have
/// served a state composed from a newer live set, and composing from this one would serve
/// older versions after newer ones (`tests/recompute.rs`, two replicas with a SIGKILL).
pub(super) struct SharedLive {
    pub epoch: i64,
    pub live: Live,
}

impl Fleet {
    /// Recomputes every template (the [`recompute_job`]).
    pub async fn recompute_all(&self) -> anyhow::Result<Vec<Recomputed>> {
        self.recompute_changed(None, None).await
    }

    /// Recomputes one template's desired state and serves it unless it has conflicts (or,
    /// when the served state names a version no longer live, serves what can be composed,
    /// see [`Degraded`]); re-issues the served state when it is past half its validity.
    /// `None` if there is no such template.
    pub async fn recompute(
        &self,
        template_id: &TemplateId,
        actor: &Actor,
        via: Via,
    ) -> anyhow::Result<Option<Recomputed>> {
        self.recompute_from(template_id, actor, via, None).await
    }

    /// [`Fleet::recompute`], composing from `live` (the live set a job that recomputes many
    /// templates read once) on the first try, if it is still current under the template's
    /// lock (see [`SharedLive`]).
    async fn recompute_from(
        &self,
        template_id: &TemplateId,
        actor: &Actor,
        via: Via,
        mut live: Option<&SharedLive>,
    ) -> anyhow::Result<Option<Recomputed>> {
        // Another replica serving a state between our read and our write makes the write
        // a no-op (compare-and-set on the sequence): compute again from what it left, and
        // from the live set as it is now.
        for _ in 0..5 {
            match self
                .try_recompute(template_id, actor, via, live.take())
                .await?
            {
                Some(Attempt::Done(r)) => return Ok(Some(*r)),
                Some(Attempt::Lost) => continue,
                None => return Ok(None),
            }
        }
        anyhow::bail!(
            "the served state of template {template_id} kept changing under recomputation"
        )
    }

    async fn try_recompute(
        &self,
        template_id: &TemplateId,
        actor: &Actor,
        via: Via,
        shared: Option<&SharedLive>,
    ) -> anyhow::Result<Option<Attempt>> {
        // One recomputation of a template at a time, on every replica; everything is read
        // under the lock, the served state (whose sequence the write compares) first.
        let lock = self.store.lock_template(template_id).await?;
        let served = self.store.served_state(template_id).await?;
        let last = self.store.last_computation(template_id).await?;
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
        // The shared live set, if no change to the live set committed since it was read.
        let shared = match shared {
            Some(s) if self.store.live_epoch().await? == s.epoch => Some(&s.live),
            _ => None,
        };
        let fresh;
        let live = match shared {
            Some(l) => l,
            None => {
                fresh = candidates(self.store.live_versions().await?);
                &fresh
            }
        };
        let inputs = self
            .inputs(&template, &assignments, live, served.as_ref())
            .await?;
        if let Some(r) = self
            .unchanged(template_id, &inputs, last.as_ref(), served.as_ref())
            .await?
        {
            self.metrics.composition("skipped");
            return Ok(Some(Attempt::Done(Box::new(r))));
        }
        self.metrics.composition("composed");
        let full = self.compose(&template, &assignments, live).await?;
        let blocked = full.blocked;
        let (conflicts, warnings): (Vec<_>, Vec<_>) = full
            .findings
            .iter()
            .cloned()
            .partition(|f| f.severity != Severity::Warning);
        let order = full.order.clone();

        let live_digests: BTreeSet<Digest> = live
            .values()
            .flatten()
            .map(|c| c.data.manifest_digest)
            .collect();
        // What to serve: the full state; else (fail safe) the served one while it is whole
        // and names only live versions; else what can be composed without the broken
        // assignments (recomputed while the template stays degraded).
        let plan = match (full.state, &served) {
            (Some(state), _) => Some((state, None)),
            (None, None) => None,
            (None, Some(st))
                if st.degraded.is_none() && names_only(&st.document, &live_digests) =>
            {
                upgrade(&st.document).map(|d| (d, None))
            }
            (None, Some(_)) => {
                let (state, d) = self
                    .degrade(&template, &assignments, live, &conflicts)
                    .await?;
                Some((state, Some(d)))
            }
        };
        let now_s = self.store.now().div_euclid(1000);
        let mut serve = None;
        let mut state_id = served.as_ref().map(|s| s.state_id.clone());
        let mut degraded = served
            .as_ref()
            .and_then(|s| s.degraded.clone())
            .and_then(|d| serde_json::from_value::<Degraded>(d).ok());
        if let Some((content, new_degraded)) = plan {
            let degraded_value = new_degraded
                .as_ref()
                .map(serde_json::to_value)
                .transpose()?;
            let resign = match &served {
                Some(st) => self.resign_due(&st.envelope).await?,
                None => false,
            };
            let same = !resign
                && served.as_ref().is_some_and(|st| {
                    st.sequence > 0
                        && serde_json::from_value::<DesiredState>(st.document.clone())
                            .is_ok_and(|d| d.content_id() == content.content_id())
                        && st.degraded == degraded_value
                        && st.expires_at - now_s > self.validity_secs / 2
                });
            if !same {
                let replaces = served.as_ref().map(|s| s.sequence);
                let state = DesiredState {
                    sequence: replaces.map_or(1, |s| s.max(0) as u64 + 1),
                    issued_at: now_s,
                    expires_at: now_s + self.validity_secs,
                    ..content
                };
                let (envelope, id) = desired_state::sign_all(&state, &self.keys.signing())?;
                state_id = Some(id.to_string());
                degraded = new_degraded;
                serve = Some((
                    id.to_string(),
                    serde_json::to_value(&state)?,
                    serde_json::to_value(&envelope)?,
                    state.sequence as i64,
                    state.expires_at,
                    degraded_value,
                    replaces,
                ));
            }
        }
        let outcome = LastComputation {
            blocked,
            findings: serde_json::to_value(&full.findings)?,
            candidate_state_id: if blocked { None } else { state_id.clone() },
            computed_at: self.store.now(),
            input_digest: Some(inputs.digest),
            closure: Some(inputs.closure),
            modules: Some(order.clone()),
        };
        let previous = served.as_ref().map(|s| s.state_id.clone());
        let audit = NewAudit {
            version_id: None,
            template_id: Some(template_id.to_owned()),
            module: None,
            actor: actor.encode(),
            via,
            action: if blocked && serve.is_none() {
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
                "state_id": state_id,
                "sequence": serve.as_ref().map(|s| s.3),
                "modules": order,
                "conflicts": conflicts,
                "degraded": degraded,
            }),
        };
        // Computed and signed, not yet written: the lock is held.
        crate::faults::point("fleet.recompute.before_commit").await;
        let recorded = self
            .store
            .record_computation(
                lock,
                template_id,
                &outcome,
                serve
                    .as_ref()
                    .map(|(id, d, e, seq, exp, deg, replaces)| Serve {
                        state_id: id,
                        document: d,
                        envelope: e,
                        sequence: *seq,
                        expires_at: *exp,
                        degraded: deg.as_ref(),
                        replaces: *replaces,
                    }),
                &audit,
            )
            .await?;
        if recorded == Recorded::Lost {
            return Ok(Some(Attempt::Lost));
        }
        let changed = recorded == Recorded::Served;
        if let Some(id) = &state_id {
            self.cache.set_state(template_id, id);
        }
        if let Some(d) = degraded.as_ref().filter(|_| changed) {
            tracing::error!(template = template_id.as_str(), mode = ?d.mode, reason = %d.reason, "desired state degraded: a version it needs left live");
        } else if blocked {
            tracing::warn!(
                template = template_id.as_str(),
                conflicts = conflicts.len(),
                "desired state blocked by conflicts; the served state stays"
            );
        } else if changed {
            tracing::info!(template = template_id.as_str(), state_id = ?state_id, "desired state changed");
        }
        Ok(Some(Attempt::Done(Box::new(Recomputed {
            template_id: template_id.to_owned(),
            state_id,
            changed,
            blocked,
            conflicts,
            warnings,
            modules: order,
            degraded,
        }))))
    }

    /// The state `template` serves, re-issued first when past half its validity (or from
    /// before expiries), so no node is left holding one about to expire. A failed re-issue
    /// leaves the current one served: it is valid until it expires.
    pub async fn served(&self, template: &TemplateId) -> anyhow::Result<Option<ServedState>> {
        let Some(st) = self.store.served_state(template).await? else {
            return Ok(None);
        };
        if st.expires_at - self.store.now().div_euclid(1000) > self.validity_secs / 2
            && !self.resign_due(&st.envelope).await?
        {
            return Ok(Some(st));
        }
        if let Err(e) = self.recompute(template, &Actor::Auto, Via::Auto).await {
            tracing::warn!(template = template.as_str(), error = %format!("{e:#}"), "re-issuing the desired state failed; serving the current one");
            return Ok(Some(st));
        }
        Ok(self.store.served_state(template).await?.or(Some(st)))
    }

    /// Whether a served envelope must be signed again: it is not signed by exactly this
    /// replica's keys, and those are the keys the replicas last started with. (A replica
    /// still on the old keys during a rolling restart leaves it alone, so two replicas never
    /// take turns re-signing.)
    async fn resign_due(&self, envelope: &serde_json::Value) -> anyhow::Result<bool> {
        let signed: BTreeSet<String> = envelope["signatures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["keyid"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mine = self.keys.keyids();
        if signed == mine {
            return Ok(false);
        }
        Ok(self.store.signing_keyids().await?.as_ref() == Some(&mine))
    }
}
