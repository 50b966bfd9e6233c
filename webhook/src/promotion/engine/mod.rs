//! The promotion engine: what every trigger shares (the module and version a command names,
//! refusals, the lifecycle commit status), with one file per trigger: [`comments`] (PR-comment
//! commands), [`api`] (requests from REST, MCP and the console, through
//! `promotion::Promotions`) and [`timer`] (reviews, statuses and the soak timer re-evaluate
//! pending requests; `auto` stages advance). A Gitea outage is a transient error: the job is
//! retried and the request stays pending.
//!
//! A command acts only on a module promoted from the repository it was posted in: a comment
//! in `mallory/playground` naming `other-module@1.0.0` is refused (and audited), and evidence
//! is read from the module's pinned repository only.

mod api;
mod comments;
mod timer;

use super::{
    Decision, PrComment, Promoter,
    commands::{self, Command, Target},
    evidence::{self, split},
    replies,
};
use crate::{
    catalogue::{ModuleTrust, Policies},
    error::Error,
    gitea::Gitea,
    store::{
        AuditAction, Job, Lifecycle, NewAudit, NewJob, PromotionRequest, RequestId, RequestState,
        Store, VersionId, VersionRow, Via,
    },
};
use powernode_module::lifecycle::{Actor, CheckState, Evidence, Permission, Request};
use serde_json::json;
use std::sync::Arc;

/// The commit status context the engine maintains on each version's source commit.
pub const STATUS_CONTEXT: &str = "powernode/lifecycle";

#[derive(Debug, Clone)]
pub struct Engine {
    pub store: Store,
    pub gitea: Gitea,
    pub promoter: Promoter,
    pub policies: Arc<Policies>,
    pub request_ttl_ms: i64,
}

/// Who wrote a comment: the Gitea user every command in it acts as.
fn actor(c: &PrComment) -> Actor {
    Actor::Gitea(c.user.clone())
}

/// Why a command names no version it may act on: the reply, and whether it is a refusal
/// to audit (a command aimed at another repository's module).
struct NotHere {
    reply: String,
    refusal: Option<(String, Option<VersionId>)>,
}

impl NotHere {
    fn reply(reply: String) -> NotHere {
        NotHere {
            reply,
            refusal: None,
        }
    }
}

impl Engine {
    /// The module a command in `repository` acts on: the one it names, which must be promoted
    /// from `repository`, or the one promoted from `repository`.
    fn module_for(&self, repository: &str, named: Option<&str>) -> Result<&ModuleTrust, NotHere> {
        match named {
            Some(name) => match self.policies.by_name(name) {
                Some(m) if m.gitea_repository == repository => Ok(m),
                Some(m) => Err(NotHere {
                    reply: replies::wrong_repository(name, repository, &m.gitea_repository),
                    refusal: Some((m.name.clone(), None)),
                }),
                None => Err(NotHere::reply(replies::no_module_named(name))),
            },
            None => self
                .policies
                .for_gitea_repository(repository)
                .ok_or_else(|| NotHere::reply(replies::no_module_here(repository))),
        }
    }

    /// The published version a command's target names, with its module.
    async fn version_for(
        &self,
        repository: &str,
        t: &Target,
    ) -> Result<Result<(&ModuleTrust, VersionRow), NotHere>, Error> {
        let module = match self.module_for(repository, t.module.as_ref().map(|m| m.as_str())) {
            Ok(m) => m,
            Err(mut e) => {
                if let Some((name, id)) = &mut e.refusal {
                    *id = self
                        .store
                        .version(name, &t.version.to_string())
                        .await?
                        .map(|v| v.id);
                }
                return Ok(Err(e));
            }
        };
        let version = t.version.to_string();
        Ok(match self.store.version(&module.name, &version).await? {
            Some(v) if v.lifecycle.is_published() => Ok((module, v)),
            Some(v) => Err(NotHere::reply(replies::not_published(&v.id, v.lifecycle))),
            None => Err(NotHere::reply(replies::no_version(&module.name, &version))),
        })
    }

    /// Audits a command refused because it named a module of another repository.
    async fn audit_refusal(&self, c: &PrComment, cmd: &str, n: &NotHere) -> Result<(), Error> {
        if let Some((module, version_id)) = &n.refusal {
            self.store
                .audit(&NewAudit {
                    version_id: version_id.clone(),
                    template_id: None,
                    module: Some(module.clone()),
                    actor: actor(c).encode(),
                    via: Via::Comment,
                    action: AuditAction::Refused,
                    from_state: None,
                    to_state: None,
                    reason: Some(n.reply.clone()),
                    evidence: json!({
                        "command": cmd,
                        "repository": c.repository,
                        "pr": c.pr,
                        "comment_id": c.comment_id,
                    }),
                })
                .await?;
        }
        Ok(())
    }

    /// Records a request's first decision, or (on a retried job) moves the pending request
    /// recorded by the earlier attempt, compare-and-set. A transition already recorded its
    /// request `done` in its own transaction, so `Done` writes nothing here.
    async fn record(&self, mut r: PromotionRequest, decision: &Decision) -> Result<(), Error> {
        let (state, missing) = match decision {
            Decision::Done { .. } => return Ok(()),
            Decision::Pending { missing } => (RequestState::Pending, json!(missing)),
            Decision::Refused { missing } => (RequestState::Refused, json!(missing)),
        };
        r.state = state;
        r.missing = missing.clone();
        if self.store.insert_request(&r).await? {
            return Ok(());
        }
        if state == RequestState::Pending {
            self.store.refresh_request(&r.id, &missing).await?;
        } else {
            self.store
                .close_request(&r.id, state, &missing, &[])
                .await?;
        }
        Ok(())
    }

    /// Sets the `powernode/lifecycle` status of `version_id`'s source commit, in its module's
    /// pinned repository, to the stage the version is in now ([`crate::store::Job::CommitStatus`],
    /// enqueued by every transition). Idempotent: a retried or collapsed job sets the same
    /// status again.
    pub async fn commit_status(&self, version_id: &VersionId) -> Result<(), Error> {
        let Some(v) = self.store.version_by_id(version_id).await? else {
            return Ok(());
        };
        let Some(module) = self.policies.by_name(&v.module) else {
            return Ok(());
        };
        let Some(sha) = &v.source_commit else {
            return Ok(());
        };
        let (owner, repo) = split(&module.gitea_repository);
        let state = if v.lifecycle == Lifecycle::Yanked {
            CheckState::Failure
        } else {
            CheckState::Success
        };
        self.gitea
            .set_status(
                owner,
                repo,
                sha,
                state,
                STATUS_CONTEXT,
                &replies::commit_status(&v.module, &v.version.to_string(), v.lifecycle),
            )
            .await?;
        Ok(())
    }
}

/// The reply to `r`'s requester on its PR, as the job that posts it (enqueued in the
/// transaction that decides the request); none for a request made without a PR (API, MCP).
fn reply_to(r: &PromotionRequest, text: &str) -> Vec<NewJob> {
    let (Some(repository), Some(pr), Some(user)) =
        (&r.repository, r.pr_number, r.requester.gitea_user())
    else {
        return Vec::new();
    };
    vec![
        Job::Reply {
            request: r.id.clone(),
            repository: repository.clone(),
            pr,
            user: user.to_owned(),
            text: text.to_owned(),
        }
        .to_new(),
    ]
}
