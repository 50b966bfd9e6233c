//! The promotion engine's handlers: PR-comment commands, and re-evaluation of pending
//! requests on reviews, statuses and a timer. Evidence (permission, reviews, statuses) is
//! read from Gitea right before every decision — reviews can be dismissed without a webhook.
//! A Gitea outage is a transient error: the job is retried and the request stays pending.

use crate::{
    commands::{self, Command, Target},
    gitea::{Gitea, GiteaError, latest_approvals},
    ingest::Transient,
    lifecycle::{Approval, Evidence, Missing, Permission, Request},
    policy::Policies,
    promotion::{Decision, Promoter},
    store::{Lifecycle, PromotionRequest, Store, VersionRow, now_ms},
};
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

impl From<GiteaError> for Transient {
    fn from(e: GiteaError) -> Self {
        Transient(e.to_string())
    }
}

fn split(full: &str) -> (&str, &str) {
    full.split_once('/').unwrap_or((full, ""))
}

fn describe(missing: &[Missing]) -> String {
    missing.iter().map(|m| format!("\n- {m}")).collect()
}

/// A comment to handle (the job payload).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CommentJob {
    pub repository: String,
    pub pr: i64,
    pub comment_id: i64,
    pub user: String,
    pub body: String,
}

impl Engine {
    async fn version_for(
        &self,
        repository: &str,
        t: &Target,
    ) -> Result<Result<VersionRow, String>, Transient> {
        let module = match &t.module {
            Some(m) => self.policies.by_name(m.as_str()).map(|p| p.name.clone()),
            None => self
                .policies
                .for_gitea_repository(repository)
                .map(|p| p.name.clone()),
        };
        let Some(module) = module else {
            return Ok(Err(format!(
                "no module is promoted from {repository}; name it as `<module>@<version>`"
            )));
        };
        Ok(match self.store.version(&module, &t.version).await? {
            Some(v) if v.lifecycle.is_published() => Ok(v),
            Some(v) => Err(format!(
                "{} is {}, not a published version",
                v.id, v.lifecycle
            )),
            None => Err(format!("{module} has no version {}", t.version)),
        })
    }

    /// Reads the evidence for a request on PR `pr` of `repository` by `requester`.
    async fn evidence(
        &self,
        repository: &str,
        pr: Option<i64>,
        requester: &str,
        v: &VersionRow,
    ) -> Result<Evidence, Transient> {
        let (owner, repo) = split(repository);
        let permission = if requester.starts_with("api:") || requester == "auto" {
            Permission::Owner
        } else {
            self.gitea.permission(owner, repo, requester).await?
        };
        let mut approvals = Vec::new();
        if let Some(pr) = pr {
            let reviews = self.gitea.reviews(owner, repo, pr).await?;
            for (user, review_id) in latest_approvals(&reviews, v.source_commit.as_deref()) {
                if self.gitea.permission(owner, repo, &user).await? >= Permission::Write {
                    approvals.push(Approval { user, review_id });
                }
            }
        }
        let checks = match &v.source_commit {
            Some(sha) => self.gitea.statuses(owner, repo, sha).await?,
            None => Default::default(),
        };
        Ok(Evidence {
            requester: requester.to_owned(),
            requester_permission: Some(permission),
            approvals,
            checks,
            entered_state_at: v.updated_at,
            break_glass: false,
        })
    }

    async fn set_status(
        &self,
        repository: &str,
        v: &VersionRow,
        stage: Lifecycle,
    ) -> Result<(), Transient> {
        if let Some(sha) = &v.source_commit {
            let (owner, repo) = split(repository);
            let state = if stage == Lifecycle::Yanked {
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
                    &format!("{} {}: {stage}", v.module, v.version),
                )
                .await?;
        }
        Ok(())
    }

    /// Handles a new PR comment: every command in it gets a reply.
    pub async fn on_comment(&self, c: &CommentJob) -> Result<(), Transient> {
        let (owner, repo) = split(&c.repository);
        for (i, cmd) in commands::parse(&c.body).into_iter().enumerate() {
            let reply = match cmd {
                Command::Help => commands::HELP.to_owned(),
                Command::Unknown { command } => {
                    format!("Unknown command `/{command}`.\n\n{}", commands::HELP)
                }
                Command::Invalid { command, message } => {
                    format!("`/{command}`: {message}\n\n{}", commands::HELP)
                }
                Command::Status { target } => self.status(&c.repository, target.as_ref()).await?,
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
        c: &CommentJob,
        index: usize,
        target: &Target,
        request: Request,
    ) -> Result<String, Transient> {
        let request_id = format!("comment:{}:{}:{index}", c.repository, c.comment_id);
        // A retried job must not decide twice: the first decision stands.
        if let Some(done) = self.store.request_by_id(&request_id).await?
            && done.state != "pending"
        {
            return Ok(format!(
                "request {request_id} was already decided: {}",
                done.state
            ));
        }
        let v = match self.version_for(&c.repository, target).await? {
            Ok(v) => v,
            Err(why) => return Ok(why),
        };
        let evidence = self
            .evidence(&c.repository, Some(c.pr), &c.user, &v)
            .await?;
        let decision = self
            .promoter
            .request(&v, &request, evidence, "comment")
            .await?;
        let to = match &request {
            Request::Promote { to } => *to,
            Request::Yank { .. } => Lifecycle::Yanked,
        };
        let mut record = PromotionRequest {
            id: request_id,
            version_id: v.id.clone(),
            to_state: to.as_str().into(),
            digest: v.manifest_digest.clone(),
            requester: c.user.clone(),
            via: "comment".into(),
            repository: Some(c.repository.clone()),
            pr_number: Some(c.pr),
            state: "pending".into(),
            missing: json!([]),
            created_at: now_ms(),
            expires_at: now_ms() + self.request_ttl_ms,
        };
        Ok(match decision {
            Decision::Done { from, to } => {
                record.state = "done".into();
                self.store.upsert_request(&record).await?;
                let v = self.store.version_by_id(&v.id).await?.unwrap_or(v);
                self.set_status(&c.repository, &v, to).await?;
                format!("{} {}: {from} → **{to}**.", v.module, v.version)
            }
            Decision::Pending { missing } => {
                record.missing = json!(missing);
                self.store.upsert_request(&record).await?;
                format!(
                    "{} {} → {to} is pending; it will happen by itself once these hold:{}",
                    v.module,
                    v.version,
                    describe(&missing)
                )
            }
            Decision::Refused { missing } => {
                record.state = "refused".into();
                record.missing = json!(missing);
                self.store.upsert_request(&record).await?;
                format!(
                    "{} {} → {to} refused:{}",
                    v.module,
                    v.version,
                    describe(&missing)
                )
            }
        })
    }

    async fn status(&self, repository: &str, target: Option<&Target>) -> Result<String, Transient> {
        let versions = match target {
            Some(t) => match self.version_for(repository, t).await? {
                Ok(v) => vec![v],
                Err(why) => return Ok(why),
            },
            None => match self.policies.for_gitea_repository(repository) {
                Some(p) => self.store.versions_of(&p.name, None).await?,
                None => return Ok(format!("no module is promoted from {repository}")),
            },
        };
        let mut s = String::from("| version | state | digest |\n|---|---|---|\n");
        for v in versions {
            s.push_str(&format!(
                "| {} | {} | `{}` |\n",
                v.version, v.lifecycle, v.manifest_digest
            ));
        }
        Ok(s)
    }

    async fn cancel(&self, c: &CommentJob, target: Option<&Target>) -> Result<String, Transient> {
        let mut n = 0;
        for r in self.store.pending_requests(Some(&c.repository)).await? {
            let matches_target = match target {
                Some(t) => r.version_id.ends_with(&format!("-{}", t.version)),
                None => true,
            };
            if r.requester == c.user
                && r.pr_number == Some(c.pr)
                && matches_target
                && self
                    .store
                    .close_request(&r.id, "cancelled", &r.missing)
                    .await?
            {
                n += 1;
            }
        }
        Ok(format!("cancelled {n} pending request(s)"))
    }

    /// Promotes versions into stages whose policy says `auto`, as soon as the requirements
    /// (checks, soak) hold. Approvals cannot be gathered without a PR, so an `auto` stage that
    /// needs approvals waits for a comment.
    pub async fn auto_promote(&self, repository: Option<&str>) -> Result<usize, Transient> {
        let mut n = 0;
        for m in self.policies.all() {
            if repository.is_some_and(|r| r != m.gitea_repository) {
                continue;
            }
            for v in self.store.versions_of(&m.name, None).await? {
                let Some(to) = crate::lifecycle::next(v.lifecycle) else {
                    continue;
                };
                let category = crate::promotion::category_of(&v);
                if !self
                    .promoter
                    .config
                    .policy_for(to, &v.module, category.as_deref())
                    .auto
                {
                    continue;
                }
                let evidence = self.evidence(&m.gitea_repository, None, "auto", &v).await?;
                if let Decision::Done { to, .. } = self
                    .promoter
                    .decide(&v, &Request::Promote { to }, evidence, "auto", false)
                    .await?
                {
                    n += 1;
                    let v = self.store.version_by_id(&v.id).await?.unwrap_or(v);
                    self.set_status(&m.gitea_repository, &v, to).await?;
                }
            }
        }
        Ok(n)
    }

    /// Re-evaluates pending requests (of one repository, or all): reviews, statuses, the
    /// timer (soak) and expiry. Replies on the PR when a request completes or expires.
    /// Then runs `auto` promotions.
    pub async fn reevaluate(&self, repository: Option<&str>) -> Result<usize, Transient> {
        let mut done = self.reevaluate_requests(repository).await?;
        done += self.auto_promote(repository).await?;
        Ok(done)
    }

    /// Answers the requester on the request's PR (API requests have none).
    async fn reply(&self, r: &PromotionRequest, text: &str) -> Result<(), Transient> {
        if let (Some(repo_full), Some(pr)) = (&r.repository, r.pr_number) {
            let (owner, repo) = split(repo_full);
            self.gitea
                .comment(owner, repo, pr, &format!("@{} {text}", r.requester))
                .await?;
        }
        Ok(())
    }

    async fn reevaluate_requests(&self, repository: Option<&str>) -> Result<usize, Transient> {
        let mut done = 0;
        for r in self.store.pending_requests(repository).await? {
            let repo_full = r.repository.clone().unwrap_or_default();
            if now_ms() > r.expires_at {
                if self
                    .store
                    .close_request(&r.id, "expired", &r.missing)
                    .await?
                {
                    self.reply(
                        &r,
                        &format!(
                            "the request to move {} to {} expired.",
                            r.version_id, r.to_state
                        ),
                    )
                    .await?;
                }
                continue;
            }
            let Some(v) = self.store.version_by_id(&r.version_id).await? else {
                continue;
            };
            let to: Lifecycle = r.to_state.parse().map_err(Transient)?;
            let mut evidence = self
                .evidence(&repo_full, r.pr_number, &r.requester, &v)
                .await?;
            // Approvals are bound to the digest the request named.
            if v.manifest_digest != r.digest {
                evidence.approvals.clear();
            }
            let request = if to == Lifecycle::Yanked {
                Request::Yank {
                    reason: "pending yank".into(),
                }
            } else {
                Request::Promote { to }
            };
            match self
                .promoter
                .decide(&v, &request, evidence, "auto", false)
                .await?
            {
                Decision::Done { from, to } => {
                    if self.store.close_request(&r.id, "done", &json!([])).await? {
                        done += 1;
                        let v = self.store.version_by_id(&v.id).await?.unwrap_or(v);
                        self.set_status(&repo_full, &v, to).await?;
                        self.reply(
                            &r,
                            &format!(
                                "{} {}: {from} → **{to}** (requirements now met).",
                                v.module, v.version
                            ),
                        )
                        .await?;
                    }
                }
                Decision::Pending { missing } => {
                    let mut updated = r.clone();
                    updated.missing = json!(missing);
                    self.store.upsert_request(&updated).await?;
                }
                Decision::Refused { missing } => {
                    self.store
                        .close_request(&r.id, "refused", &json!(missing))
                        .await?;
                }
            }
        }
        Ok(done)
    }
}
