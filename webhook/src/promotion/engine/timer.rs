//! Re-evaluation: reviews and statuses arriving, the soak timer and request expiry (the
//! promotion timer, one replica at a time), and `auto` stages advancing.

use super::*;

impl Engine {
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
                &replies::done_later(&v.module, &v.version.to_string(), v.lifecycle, r.to_state),
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
