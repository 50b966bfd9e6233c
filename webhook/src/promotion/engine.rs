//! The promotion engine's handlers: PR-comment commands, and re-evaluation of pending
//! requests on reviews, statuses and a timer. A Gitea outage is a transient error: the job is
//! retried and the request stays pending.
//!
//! A command acts only on a module promoted from the repository it was posted in: a comment
//! in `mallory/playground` naming `other-module@1.0.0` is refused (and audited), and evidence
//! is read from the module's pinned repository only.

use super::{
    Decision, PrComment, Promoter,
    commands::{self, Command, Target},
    evidence::{self, split},
    replies,
};
use crate::{
    error::Error,
    gitea::Gitea,
    ingest::trust::{ModuleTrust, Policies},
    jobs::Job,
    store::{
        AuditAction, Lifecycle, NewAudit, NewJob, PromotionRequest, RequestId, RequestState, Store,
        VersionId, VersionRow, Via,
    },
};
use powernode_module::lifecycle::{Actor, Evidence, Permission, Request};
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

fn target_state(request: &Request) -> Lifecycle {
    match request {
        Request::Promote { to } => *to,
        Request::Yank { .. } => Lifecycle::Yanked,
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

    /// Sets the `powernode/lifecycle` status of `version_id`'s source commit, in its module's
    /// pinned repository, to the stage the version is in now ([`crate::jobs::Job::CommitStatus`],
    /// enqueued by every transition). Idempotent: a retried or collapsed job sets the same
    /// status again.
    pub async fn commit_status(&self, version_id: &str) -> Result<(), Error> {
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
            "failure"
        } else {
            "success"
        };
        self.gitea
            .set_status(
                owner,
                repo,
                sha,
                state,
                STATUS_CONTEXT,
                &replies::commit_status(&v.module, &v.version, v.lifecycle),
            )
            .await?;
        Ok(())
    }

    /// Handles a new PR comment: every command in it gets a reply.
    pub async fn on_comment(&self, c: &PrComment) -> Result<(), Error> {
        let (owner, repo) = split(&c.repository);
        for (i, cmd) in commands::parse(&c.body).into_iter().enumerate() {
            let reply = match cmd {
                Command::Help => replies::help(),
                Command::Unknown { command } => replies::unknown(&command),
                Command::Invalid { command, message } => replies::invalid(&command, &message),
                Command::Status { target } => self.status(c, target.as_ref()).await?,
                Command::Cancel { target } => self.cancel(c, target.as_ref()).await?,
                Command::Promote { target, to } => {
                    self.request(c, i, &target, Request::Promote { to }).await?
                }
                Command::Yank { target, reason } => {
                    self.request(c, i, &target, Request::Yank { reason })
                        .await?
                }
            };
            self.gitea
                .comment(owner, repo, c.pr, &format!("@{} {reply}", c.user))
                .await?;
        }
        Ok(())
    }

    async fn request(
        &self,
        c: &PrComment,
        index: usize,
        target: &Target,
        request: Request,
    ) -> Result<String, Error> {
        let request_id = RequestId::for_comment(&c.repository, c.comment_id, index);
        // A retried job must not decide twice: the first decision stands, and a request it
        // left pending keeps the time it was made (approvals count from then).
        let existing = self.store.request_by_id(&request_id).await?;
        if let Some(done) = &existing
            && done.state != RequestState::Pending
        {
            return Ok(replies::already_decided(&request_id, done.state.as_str()));
        }
        let (module, v) = match self.version_for(&c.repository, target).await? {
            Ok(found) => found,
            Err(n) => {
                self.audit_refusal(c, &format!("{target:?}"), &n).await?;
                return Ok(n.reply);
            }
        };
        let created_at = existing
            .as_ref()
            .map_or_else(|| self.store.now(), |r| r.created_at);
        let evidence = evidence::gather(
            &self.gitea,
            &module.gitea_repository,
            Some(c.pr),
            &actor(c),
            &v,
            created_at,
        )
        .await?;
        let to = target_state(&request);
        let record = PromotionRequest {
            id: request_id,
            version_id: v.id.clone(),
            to_state: to,
            digest: v.manifest_digest.clone(),
            requester: actor(c),
            via: Via::Comment,
            repository: Some(module.gitea_repository.clone()),
            pr_number: Some(c.pr),
            state: RequestState::Pending,
            missing: json!([]),
            reason: match &request {
                Request::Yank { reason } => Some(reason.clone()),
                Request::Promote { .. } => None,
            },
            created_at,
            expires_at: created_at + self.request_ttl_ms,
        };
        let decision = self
            .promoter
            .request(&v, &request, evidence, Via::Comment, Some(&record))
            .await?;
        let (module, version) = (&v.module, &v.version);
        self.record(record, &decision).await?;
        Ok(match decision {
            // The commit status is the transition's own job (Job::CommitStatus).
            Decision::Done { from, to } => replies::done(module, version, from, to),
            Decision::Pending { missing } => replies::pending(module, version, to, &missing),
            Decision::Refused { missing } => replies::refused(module, version, to, &missing),
        })
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

    async fn status(&self, c: &PrComment, target: Option<&Target>) -> Result<String, Error> {
        let versions = match target {
            Some(t) => match self.version_for(&c.repository, t).await? {
                Ok((_, v)) => vec![v],
                Err(n) => {
                    self.audit_refusal(c, "status", &n).await?;
                    return Ok(n.reply);
                }
            },
            None => match self.policies.for_gitea_repository(&c.repository) {
                Some(p) => self.store.versions_of(&p.name, None).await?,
                None => return Ok(replies::no_module_here(&c.repository)),
            },
        };
        let rows: Vec<_> = versions
            .into_iter()
            .map(|v| (v.version, v.lifecycle, v.manifest_digest))
            .collect();
        Ok(replies::status_table(&rows))
    }

    /// Withdraws the commenter's pending requests on this PR (for one version, or all).
    async fn cancel(&self, c: &PrComment, target: Option<&Target>) -> Result<String, Error> {
        let only = match target {
            Some(t) => match self.version_for(&c.repository, t).await? {
                Ok((_, v)) => Some(v.id),
                Err(n) => {
                    self.audit_refusal(c, "cancel", &n).await?;
                    return Ok(n.reply);
                }
            },
            None => None,
        };
        let mut n = 0;
        for r in self.store.pending_requests(Some(&c.repository)).await? {
            if r.requester == actor(c)
                && r.pr_number == Some(c.pr)
                && only.as_ref().is_none_or(|id| *id == r.version_id)
                && self
                    .store
                    .close_request(&r.id, RequestState::Cancelled, &r.missing, &[])
                    .await?
            {
                n += 1;
            }
        }
        Ok(replies::cancelled(n))
    }

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
        let to = target_state(request);
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
            digest: v.manifest_digest.clone(),
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

    /// Promotes versions into stages whose policy says `auto`, as soon as the requirements
    /// (checks, soak) hold. Approvals cannot be gathered without a PR, so an `auto` stage that
    /// needs approvals waits for a comment.
    pub async fn auto_promote(&self, repository: Option<&str>) -> Result<usize, Error> {
        let mut n = 0;
        for m in self.policies.all() {
            if repository.is_some_and(|r| r != m.gitea_repository) {
                continue;
            }
            for v in self.store.versions_of(&m.name, None).await? {
                let Some(to) = v.lifecycle.next() else {
                    continue;
                };
                if !self.promoter.policy(to, &v.module).auto {
                    continue;
                }
                let evidence = evidence::gather(
                    &self.gitea,
                    &m.gitea_repository,
                    None,
                    &Actor::Auto,
                    &v,
                    self.store.now(),
                )
                .await?;
                if let Decision::Done { .. } = self
                    .promoter
                    .decide(
                        &v,
                        &Request::Promote { to },
                        evidence,
                        Via::Auto,
                        false,
                        None,
                        Vec::new(),
                    )
                    .await?
                {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Re-evaluates pending requests (of one repository, or all): reviews, statuses, the
    /// timer (soak) and expiry. Replies on the PR when a request completes or expires.
    /// Then runs `auto` promotions.
    pub async fn reevaluate(&self, repository: Option<&str>) -> Result<usize, Error> {
        let mut done = self.reevaluate_requests(repository).await?;
        done += self.auto_promote(repository).await?;
        Ok(done)
    }

    /// Posts `@user text` on PR `pr` of `repository` ([`Job::Reply`]).
    pub async fn post_reply(
        &self,
        repository: &str,
        pr: i64,
        user: &str,
        text: &str,
    ) -> Result<(), Error> {
        let (owner, repo) = split(repository);
        self.gitea
            .comment(owner, repo, pr, &format!("@{user} {text}"))
            .await?;
        Ok(())
    }

    async fn reevaluate_requests(&self, repository: Option<&str>) -> Result<usize, Error> {
        let mut done = 0;
        for r in self.store.pending_requests(repository).await? {
            if self.store.now() > r.expires_at {
                // The requester is told by a job enqueued with the closing (at least once).
                let tell = reply_to(&r, &replies::expired(&r.version_id, r.to_state));
                self.store
                    .close_request(&r.id, RequestState::Expired, &r.missing, &tell)
                    .await?;
                continue;
            }
            let Some(v) = self.store.version_by_id(&r.version_id).await? else {
                continue;
            };
            // Evidence only from the module's own repository, whatever the request recorded.
            let Some(module) = self.policies.by_name(&v.module) else {
                continue;
            };
            // A request made without a PR (API, MCP) finds its PR anew each time: the PR
            // may be opened after the request.
            let pr = match (r.pr_number, &r.requester, &v.source_commit) {
                (None, Actor::Api(_), Some(sha)) => {
                    let (owner, repo) = split(&module.gitea_repository);
                    self.gitea.open_pull_for_commit(owner, repo, sha).await?
                }
                (pr, ..) => pr,
            };
            let mut evidence = evidence::gather(
                &self.gitea,
                &module.gitea_repository,
                pr,
                &r.requester,
                &v,
                r.created_at,
            )
            .await?;
            // Approvals are bound to the digest the request named.
            if v.manifest_digest != r.digest {
                evidence.approvals.clear();
            }
            let request = match r.to_state {
                Lifecycle::Yanked => Request::Yank {
                    reason: r.reason.clone().unwrap_or_default(),
                },
                to => Request::Promote { to },
            };
            // Told to the requester by a job the transition enqueues with itself, so a crash
            // or a failing Gitea right after the commit cannot lose it.
            let then = reply_to(
                &r,
                &replies::done_later(&v.module, &v.version, v.lifecycle, r.to_state),
            );
            match self
                .promoter
                .decide(&v, &request, evidence, Via::Auto, false, Some(&r), then)
                .await?
            {
                // The transition closed the request in its own transaction; of two replicas
                // re-evaluating it at once, only one transitions (the other is refused by the
                // compare-and-set and leaves the request as it is).
                Decision::Done { .. } => done += 1,
                Decision::Pending { missing } => {
                    self.store.refresh_request(&r.id, &json!(missing)).await?;
                }
                Decision::Refused { missing } => {
                    self.store
                        .close_request(&r.id, RequestState::Refused, &json!(missing), &[])
                        .await?;
                }
            }
        }
        Ok(done)
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
            request: r.id.to_string(),
            repository: repository.clone(),
            pr,
            user: user.to_owned(),
            text: text.to_owned(),
        }
        .to_new(),
    ]
}
