//! Promotion requests: gather the policy for the target stage, run the lifecycle's transition
//! function, and commit the transition (compare-and-set) or record why not. Every outcome —
//! transition, pending, refusal — is an audit row with its evidence.

use crate::{
    catalogue::Policies,
    config::PromotionConfig,
    lifecycle::{self, Evidence, Missing, Request, StagePolicy},
    store::{
        AuditAction, Job, Lifecycle, NewAudit, NewJob, PromotionRequest, Store, VersionRow, Via,
    },
};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    Done {
        from: Lifecycle,
        to: Lifecycle,
    },
    /// Requirements not met yet (approvals, checks, soak): worth waiting for.
    Pending {
        missing: Vec<Missing>,
    },
    /// Never for this request (not the next stage, no permission, lost a race).
    Refused {
        missing: Vec<Missing>,
    },
}

#[derive(Debug, Clone)]
pub struct Promoter {
    pub store: Store,
    pub config: PromotionConfig,
    /// The modules' configuration entries: a category override applies by the category
    /// pinned there, never by the one an artifact's manifest declares.
    pub policies: Arc<Policies>,
    /// Gitea is configured: every transition enqueues, in its own transaction, the job that
    /// sets the version's `powernode/lifecycle` commit status ([`Job::CommitStatus`]).
    pub commit_statuses: bool,
}

impl Promoter {
    /// The policy for `module` entering `stage` (or being yanked).
    pub fn policy(&self, stage: Lifecycle, module: &str) -> StagePolicy {
        let category = self
            .policies
            .by_name(module)
            .and_then(|m| m.category.as_deref());
        self.config.policy_for(stage, module, category)
    }

    /// Decides and (when allowed) applies `request` to `v`, auditing the outcome. `settles`
    /// is the recorded request this decision is for (a comment's, an API caller's, a pending
    /// one re-evaluated): a transition records it `done` in its own transaction.
    pub async fn request(
        &self,
        v: &VersionRow,
        request: &Request,
        evidence: Evidence,
        via: Via,
        settles: Option<&PromotionRequest>,
    ) -> anyhow::Result<Decision> {
        self.decide_noted(v, request, evidence, via, true, None, settles, Vec::new())
            .await
    }

    /// As [`Promoter::request`], with the caller's reason for a promotion (an API `reason`)
    /// kept in the audit row.
    pub async fn request_with_note(
        &self,
        v: &VersionRow,
        request: &Request,
        evidence: Evidence,
        via: Via,
        note: Option<String>,
        settles: Option<&PromotionRequest>,
    ) -> anyhow::Result<Decision> {
        self.decide_noted(v, request, evidence, via, true, note, settles, Vec::new())
            .await
    }

    /// As [`Promoter::request`]; `audit_pending: false` skips the audit row of a still-pending
    /// outcome (re-evaluations on a timer would otherwise repeat it). `then`: jobs enqueued in
    /// the transition's transaction if there is one (a re-evaluation's reply to the requester).
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        v: &VersionRow,
        request: &Request,
        evidence: Evidence,
        via: Via,
        audit_pending: bool,
        settles: Option<&PromotionRequest>,
        then: Vec<NewJob>,
    ) -> anyhow::Result<Decision> {
        self.decide_noted(
            v,
            request,
            evidence,
            via,
            audit_pending,
            None,
            settles,
            then,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide_noted(
        &self,
        v: &VersionRow,
        request: &Request,
        mut evidence: Evidence,
        via: Via,
        audit_pending: bool,
        note: Option<String>,
        settles: Option<&PromotionRequest>,
        mut then: Vec<NewJob>,
    ) -> anyhow::Result<Decision> {
        let target = request.target();
        let policy = self.policy(target, &v.module);
        evidence.entered_state_at = v.updated_at;
        let now = self.store.now();
        let result = lifecycle::transition(v.lifecycle, request, &evidence, &policy, now);
        let reason = match request {
            Request::Yank { reason } => Some(reason.clone()),
            Request::Promote { .. } => note.filter(|n| !n.trim().is_empty()),
        };
        let record = |action: AuditAction, to: Option<Lifecycle>, missing: &[Missing]| NewAudit {
            version_id: Some(v.id.clone()),
            template_id: None,
            module: Some(v.module.to_string()),
            actor: evidence.requester.encode(),
            via,
            action,
            from_state: Some(v.lifecycle),
            to_state: to,
            reason: reason.clone().or_else(|| {
                (!missing.is_empty()).then(|| {
                    missing
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            }),
            evidence: json!({
                "digest": v.manifest_digest,
                "requested": target.as_str(),
                "approvals": evidence.approvals,
                "checks": evidence.checks,
                "requester_permission": evidence.requester_permission,
                "break_glass": evidence.break_glass,
                "policy": policy,
                "missing": missing,
            }),
        };
        match result {
            Ok(to) => {
                let action = if evidence.break_glass {
                    AuditAction::TransitionBreakGlass
                } else {
                    AuditAction::Transition
                };
                // Entering or leaving `live` changes what templates should run.
                if v.lifecycle == Lifecycle::Live || to == Lifecycle::Live {
                    then.push(crate::fleet::recompute_modules_job([v.module.as_str()]));
                }
                // The commit status follows the version through the same outbox.
                if self.commit_statuses && v.source_commit.is_some() {
                    then.push(
                        Job::CommitStatus {
                            version: v.id.clone(),
                        }
                        .to_new(),
                    );
                }
                if self
                    .store
                    .transition_version(
                        &v.id,
                        v.lifecycle,
                        to,
                        &record(action, Some(to), &[]),
                        &then,
                        settles,
                    )
                    .await?
                {
                    // Committed: the version, its audit row and the request it settles.
                    crate::faults::point("promotion.after_transition").await;
                    Ok(Decision::Done {
                        from: v.lifecycle,
                        to,
                    })
                } else {
                    let missing = vec![Missing::NotAllowed {
                        from: v.lifecycle.to_string(),
                        to: format!("{to} (the version changed concurrently)"),
                    }];
                    self.store
                        .audit(&record(AuditAction::Refused, None, &missing))
                        .await?;
                    Ok(Decision::Refused { missing })
                }
            }
            Err(missing) if missing.iter().all(Missing::can_be_met_later) => {
                if audit_pending {
                    self.store
                        .audit(&record(AuditAction::Pending, None, &missing))
                        .await?;
                }
                Ok(Decision::Pending { missing })
            }
            Err(missing) => {
                self.store
                    .audit(&record(AuditAction::Refused, None, &missing))
                    .await?;
                Ok(Decision::Refused { missing })
            }
        }
    }
}
