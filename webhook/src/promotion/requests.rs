//! Requests from people's tools: the REST API, MCP and the web console ask for a promotion or
//! a yank through [`Promotions::request`], the one entry point they share. The policy is the
//! comments' own: with Gitea configured, the evidence is the checks of the version's commit
//! and the approvals on the open PR whose head is that commit ([`Engine::api_request`]), and
//! a request waiting for them stays pending like a comment's. Without Gitea the token is the
//! only evidence. The break-glass role waives approvals and checks (audited as such).

use super::{Decision, Engine, Promoter};
use crate::{
    catalogue::Policies,
    config::{Caller, PromotionConfig, Role},
    error::{ServiceError, require_role},
    lifecycle::{Actor, Evidence, Permission, Request},
    store::{Store, VersionId, VersionRow, Via},
};
use serde::Serialize;
use std::sync::Arc;

/// The decision on a request from a tool.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Decided {
    pub version: VersionId,
    pub decision: Decision,
}

/// What promotion requests from the edges need: the store, the policy, and the engine when
/// Gitea is configured (it gathers approvals and checks).
#[derive(Debug, Clone)]
pub struct Promotions {
    pub store: Store,
    pub config: PromotionConfig,
    pub policies: Arc<Policies>,
    pub engine: Option<Engine>,
}

impl Promotions {
    /// The version `id`, or [`ServiceError::NotFound`].
    pub async fn version(&self, id: &VersionId) -> Result<VersionRow, ServiceError> {
        self.store
            .version_by_id(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no version {id}")))
    }

    /// Decides `request` on version `id` for `caller` (an operator, authenticated by the edge
    /// it came `via`): the policy's outcome (`done`, `pending` with what is missing, `refused`
    /// with why). A pending or refused request is an answer, not an error: each edge shows
    /// what is missing its own way.
    pub async fn request(
        &self,
        caller: &Caller,
        via: Via,
        id: &VersionId,
        request: Request,
        note: Option<String>,
    ) -> Result<Decided, ServiceError> {
        require_role(caller, Role::Operator)?;
        let v = self.version(id).await?;
        let break_glass = caller.role == Role::BreakGlass;
        let decision = match &self.engine {
            Some(engine) => {
                engine
                    .api_request(&v, &request, &caller.name, break_glass, via, note)
                    .await?
            }
            None => {
                let evidence = Evidence {
                    requester: Actor::Api(caller.name.clone()),
                    requester_permission: Some(Permission::Owner),
                    source_commit: v.source_commit.clone(),
                    break_glass,
                    ..Default::default()
                };
                let promoter = Promoter {
                    store: self.store.clone(),
                    config: self.config.clone(),
                    policies: self.policies.clone(),
                    // No [gitea]: nowhere to set a commit status.
                    commit_statuses: false,
                };
                promoter
                    .request_with_note(&v, &request, evidence, via, note, None)
                    .await?
            }
        };
        Ok(Decided {
            version: id.clone(),
            decision,
        })
    }
}
