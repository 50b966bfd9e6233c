//! PR-comment commands: `/promote`, `/yank`, `/status`, `/cancel` on the module's own
//! repository, each answered on the PR.

use super::*;

impl Engine {
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
        let to = request.target();
        let record = PromotionRequest {
            id: request_id,
            version_id: v.id.clone(),
            to_state: to,
            digest: v.manifest_digest,
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
        let (module, version) = (&v.module, &v.version.to_string());
        self.record(record, &decision).await?;
        Ok(match decision {
            // The commit status is the transition's own job (Job::CommitStatus).
            Decision::Done { from, to } => replies::done(module, version, from, to),
            Decision::Pending { missing } => replies::pending(module, version, to, &missing),
            Decision::Refused { missing } => replies::refused(module, version, to, &missing),
        })
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
            .map(|v| {
                (
                    v.version.to_string(),
                    v.lifecycle,
                    v.manifest_digest.to_string(),
                )
            })
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
}
