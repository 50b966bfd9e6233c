//! Templates as the edges change and read them (REST, MCP, the console): create one, assign
//! and unassign modules, and the view of a template with its served state. Every change is
//! audited and enqueues its recomputation in one transaction; the recomputation also runs at
//! once, so the answer shows its outcome.

use super::{Degraded, Fleet, Recomputed, recompute_template_job};
use crate::{
    catalogue::NAME_PATTERN,
    config::{Caller, Role},
    error::{ServiceError, require_role},
    lifecycle::Actor,
    store::{
        Assignment, AuditAction, AuditRow, LastComputation, NewAudit, ServedState, TemplateId,
        TemplateRow, Via,
    },
};
use powernode_module::manifest::{ModuleName, NAME_RULE};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub id: String,
    /// What the template's instances run on (free text, not blank).
    #[schemars(regex(pattern = r"\S"))]
    pub platform: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAssignment {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub module_name: String,
    /// A SemVer requirement (`^1`, `>=1.2, <2`); any version when absent.
    #[serde(default)]
    pub requirement: Option<String>,
}

/// A template with its assignments, served desired state and latest computation.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct TemplateView {
    #[serde(flatten)]
    pub template: TemplateRow,
    pub assignments: Vec<Assignment>,
    pub desired_state: Option<StateSummary>,
    pub last_computation: Option<LastComputation>,
    /// Set when the served state is less than the assignments ask for: `degraded` (a version
    /// left `live` and the template is served without what needs it) or `held` (nothing
    /// composes; nodes keep what they run). With the reason and the conflicts. `null` when
    /// the template serves what it should.
    pub degraded: Option<Degraded>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StateSummary {
    pub state_id: String,
    pub computed_at: i64,
    /// The signed sequence number: every state the template serves takes the next one.
    pub sequence: i64,
    /// Unix seconds after which nodes refuse it (re-issued before).
    pub expires_at: i64,
    pub document: serde_json::Value,
}

/// The answer to an assignment change: what the template's instances will now get.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Assigned {
    pub template_id: TemplateId,
    pub module_name: String,
    pub requirement: Option<String>,
    pub message: String,
    pub desired_state: Recomputed,
}

/// A new template's id, checked once: template ids follow the module-name rule (they appear
/// in URLs and audit rows).
fn parse_id(id: &str) -> Result<TemplateId, ServiceError> {
    ModuleName::parse(id)
        .map(|_| TemplateId::from(id))
        .ok_or_else(|| ServiceError::invalid(format!("template id {id:?} {NAME_RULE}")))
}

fn audit(
    via: Via,
    template: &str,
    actor: &str,
    action: AuditAction,
    evidence: serde_json::Value,
) -> NewAudit {
    NewAudit {
        version_id: None,
        template_id: Some(TemplateId::from(template)),
        module: evidence["module_name"].as_str().map(str::to_owned),
        actor: Actor::Api(actor.to_owned()).encode(),
        via,
        action,
        from_state: None,
        to_state: None,
        reason: None,
        evidence,
    }
}

impl Fleet {
    /// The template `id`, or [`ServiceError::NotFound`].
    pub async fn template(&self, id: &TemplateId) -> Result<TemplateRow, ServiceError> {
        self.store
            .template(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no template {id}")))
    }

    /// A template as people look at it: assignments, served state, last computation.
    pub async fn template_view(&self, t: TemplateRow) -> Result<TemplateView, ServiceError> {
        let assignments = self.store.assignments(&t.id).await?;
        let served = self.store.served_state(&t.id).await?;
        let degraded = served
            .as_ref()
            .and_then(|st| st.degraded.clone())
            .map(serde_json::from_value)
            .transpose()
            .map_err(anyhow::Error::from)?;
        let desired_state = served.map(
            |ServedState {
                 state_id,
                 document,
                 computed_at,
                 sequence,
                 expires_at,
                 ..
             }| StateSummary {
                state_id,
                computed_at,
                sequence,
                expires_at,
                document,
            },
        );
        let last_computation = self.store.last_computation(&t.id).await?;
        Ok(TemplateView {
            template: t,
            assignments,
            desired_state,
            last_computation,
            degraded,
        })
    }

    /// Every template's view, by id.
    pub async fn template_views(&self) -> Result<Vec<TemplateView>, ServiceError> {
        let mut views = Vec::new();
        for t in self.store.templates().await? {
            views.push(self.template_view(t).await?);
        }
        Ok(views)
    }

    /// The audit trail of template `id`, oldest first.
    pub async fn template_audit(&self, id: &TemplateId) -> Result<Vec<AuditRow>, ServiceError> {
        self.template(id).await?;
        Ok(self.store.audit_of_template(id).await?)
    }

    async fn recompute_now(
        &self,
        via: Via,
        id: &TemplateId,
        actor: &str,
    ) -> Result<Recomputed, ServiceError> {
        self.recompute(id, &Actor::Api(actor.to_owned()), via)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no template {id}")))
    }

    /// Creates a template for `caller` (an operator) and computes its first state.
    pub async fn create_template(
        &self,
        caller: &Caller,
        via: Via,
        b: NewTemplate,
    ) -> Result<TemplateView, ServiceError> {
        require_role(caller, Role::Operator)?;
        let id = parse_id(&b.id)?;
        if b.platform.trim().is_empty() {
            return Err(ServiceError::invalid("platform must not be empty"));
        }
        let row = TemplateRow {
            id: id.clone(),
            platform: b.platform.clone(),
            description: b.description.clone(),
            created_at: 0,
            updated_at: 0,
        };
        let a = audit(
            via,
            &b.id,
            &caller.name,
            AuditAction::TemplateCreated,
            serde_json::json!({"platform": b.platform, "description": b.description}),
        );
        if !self
            .store
            .create_template(&row, &a, &[recompute_template_job(&id)])
            .await?
        {
            return Err(ServiceError::Conflict {
                code: "exists",
                message: format!("template {} exists already", b.id),
            });
        }
        self.recompute_now(via, &id, &caller.name).await?;
        let t = self.template(&id).await?;
        self.template_view(t).await
    }

    /// Assigns a module to template `id` for `caller` (an operator, authenticated by the edge
    /// it came `via`).
    pub async fn assign(
        &self,
        caller: &Caller,
        via: Via,
        id: &TemplateId,
        b: NewAssignment,
    ) -> Result<Assigned, ServiceError> {
        require_role(caller, Role::Operator)?;
        self.template(id).await?;
        if self.policies.by_name(&b.module_name).is_none() {
            return Err(ServiceError::not_found(format!(
                "no module {} is configured on this receiver ([[modules]])",
                b.module_name
            )));
        }
        let requirement = match b.requirement.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(r) => {
                r.parse::<semver::VersionReq>().map_err(|e| {
                    ServiceError::invalid(format!(
                        "requirement {r:?} is not a SemVer requirement (like ^1 or >=1.2, <2): {e}"
                    ))
                })?;
                Some(r.to_owned())
            }
        };
        let a = audit(
            via,
            id,
            &caller.name,
            AuditAction::ModuleAssigned,
            serde_json::json!({"module_name": b.module_name, "requirement": requirement}),
        );
        self.store
            .assign(
                id,
                &b.module_name,
                requirement.as_deref(),
                &a,
                &[recompute_template_job(id)],
            )
            .await?;
        let r = self.recompute_now(via, id, &caller.name).await?;
        let message = if r.blocked {
            format!(
                "{} is assigned, but the new desired state has conflicts and is not served: {}",
                b.module_name,
                r.conflicts
                    .iter()
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        } else if r.modules.contains(&b.module_name) {
            format!(
                "Instances built from this template will get {} on next reconcile",
                b.module_name
            )
        } else {
            format!(
                "{} is assigned; no live version matches yet, so instances get it once one is promoted to live",
                b.module_name
            )
        };
        Ok(Assigned {
            template_id: id.clone(),
            module_name: b.module_name,
            requirement,
            message,
            desired_state: r,
        })
    }

    /// Removes `module` from template `id` for `caller` (an operator).
    pub async fn unassign(
        &self,
        caller: &Caller,
        via: Via,
        id: &TemplateId,
        module: &str,
    ) -> Result<Assigned, ServiceError> {
        require_role(caller, Role::Operator)?;
        self.template(id).await?;
        let a = audit(
            via,
            id,
            &caller.name,
            AuditAction::ModuleUnassigned,
            serde_json::json!({"module_name": module}),
        );
        if !self
            .store
            .unassign(id, module, &a, &[recompute_template_job(id)])
            .await?
        {
            return Err(ServiceError::not_found(format!(
                "{module} is not assigned to template {id}"
            )));
        }
        let r = self.recompute_now(via, id, &caller.name).await?;
        Ok(Assigned {
            template_id: id.clone(),
            message: format!("{module} is no longer assigned"),
            module_name: module.to_owned(),
            requirement: None,
            desired_state: r,
        })
    }
}
