//! Requests from the REST API, MCP and the console (`promotion::Promotions::request`): the
//! comments' policy, with the evidence gathered from the PR whose head is the version's
//! commit.

use super::*;

impl Engine {
    /// A request made through the API or MCP by the token `caller`: evidence from the
    /// module's pinned repository (checks on the version's commit; approvals on the newest
    /// open PR whose head is that commit, submitted after the request), decided by the same
    /// policy as a comment. A pending outcome is recorded as a request, re-evaluated on
    /// reviews, statuses and the timer like a comment's; asking again while it is pending
    /// re-evaluates that request rather than opening a second one.
    pub async fn api_request(
        &self,
        v: &VersionRow,
        request: &Request,
        caller: &str,
        break_glass: bool,
        via: Via,
        note: Option<String>,
    ) -> Result<Decision, Error> {
        let actor = Actor::Api(caller.to_owned());
        let to = request.target();
        let Some(module) = self.policies.by_name(&v.module) else {
            // Not configured here (cannot happen for an ingested version): decide on the
            // token alone.
            let evidence = Evidence {
                requester: actor,
                requester_permission: Some(Permission::Owner),
                source_commit: v.source_commit.clone(),
                break_glass,
                ..Default::default()
            };
            return Ok(self
                .promoter
                .request_with_note(v, request, evidence, via, note, None)
                .await?);
        };
        let home = module.gitea_repository.clone();
        let existing = self
            .store
            .pending_requests(Some(&home))
            .await?
            .into_iter()
            .find(|r| r.version_id == v.id && r.to_state == to && r.requester == actor);
        let created_at = existing
            .as_ref()
            .map_or_else(|| self.store.now(), |r| r.created_at);
        let pr = match &v.source_commit {
            Some(sha) => {
                let (owner, repo) = split(&home);
                self.gitea.open_pull_for_commit(owner, repo, sha).await?
            }
            None => None,
        };
        let mut evidence = evidence::gather(&self.gitea, &home, pr, &actor, v, created_at).await?;
        evidence.break_glass = break_glass;
        let record = PromotionRequest {
            id: existing.map_or_else(
                || RequestId::for_api(via, &uuid::Uuid::new_v4().to_string()),
                |r| r.id,
            ),
            version_id: v.id.clone(),
            to_state: to,
            digest: v.manifest_digest,
            requester: actor,
            via,
            repository: Some(home.clone()),
            pr_number: pr,
            state: RequestState::Pending,
            missing: json!([]),
            reason: match request {
                Request::Yank { reason } => Some(reason.clone()),
                Request::Promote { .. } => None,
            },
            created_at,
            expires_at: created_at + self.request_ttl_ms,
        };
        let decision = self
            .promoter
            .request_with_note(v, request, evidence, via, note, Some(&record))
            .await?;
        // The same bookkeeping as a comment's request.
        self.record(record, &decision).await?;
        Ok(decision)
    }
}
