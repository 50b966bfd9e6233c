//! Evidence for a decision, read from Gitea right before it (reviews can be dismissed without
//! a webhook). Always from the module's own pinned Gitea repository: never from the
//! repository a comment happened to be posted in.

use crate::{
    gitea::{Gitea, GiteaError, Review, ReviewState},
    store::VersionRow,
};
use powernode_module::lifecycle::{Actor, Approval, Evidence, Permission};
use std::collections::BTreeMap;

/// `owner/name` → (`owner`, `name`).
pub fn split(full: &str) -> (&str, &str) {
    full.split_once('/').unwrap_or((full, ""))
}

/// Reads the evidence for a request by `actor` about `v`, whose module is promoted from
/// `home` (`owner/name`). Approvals come from PR `pr` of `home`, on the version's source
/// commit, submitted at or after `since_ms` (when the request was made).
pub async fn gather(
    gitea: &Gitea,
    home: &str,
    pr: Option<i64>,
    actor: &Actor,
    v: &VersionRow,
    since_ms: i64,
) -> Result<Evidence, GiteaError> {
    let (owner, repo) = split(home);
    let permission = match actor {
        Actor::Gitea(user) => gitea.permission(owner, repo, user).await?,
        // API callers are checked by their token's role before they get here; the receiver
        // acts only as its policy allows.
        Actor::Api(_) | Actor::Auto => Permission::Owner,
    };
    let commit = v.source_commit.as_deref();
    let mut approvals = Vec::new();
    if let Some(pr) = pr {
        let reviews = gitea.reviews(owner, repo, pr).await?;
        for (user, review_id) in latest_approvals(&reviews, commit, since_ms) {
            if gitea.permission(owner, repo, &user).await? >= Permission::Write {
                approvals.push(Approval { user, review_id });
            }
        }
    }
    let checks = match commit {
        Some(sha) => gitea.statuses(owner, repo, sha).await?,
        None => Default::default(),
    };
    Ok(Evidence {
        requester: actor.clone(),
        requester_permission: Some(permission),
        source_commit: v.source_commit.clone(),
        approvals,
        checks,
        entered_state_at: v.updated_at,
        break_glass: false,
    })
}

/// Approvals that count for one request (the promotion's rule, not the adapter's: the Gitea
/// client only maps Gitea's reviews onto [`Review`]): the latest review of each user, `APPROVED`, not
/// dismissed or stale, on the version's source `commit`, and submitted after the request was
/// made (`since_ms`), so the approvals that carried one stage do not carry the next. No
/// commit, no approvals. The caller then keeps reviewers with write permission.
pub fn latest_approvals(
    reviews: &[Review],
    commit: Option<&str>,
    since_ms: i64,
) -> Vec<(String, i64)> {
    let Some(commit) = commit else {
        return Vec::new();
    };
    let mut latest: BTreeMap<&str, &Review> = BTreeMap::new();
    for r in reviews {
        let Some(u) = &r.user else { continue };
        if !matches!(r.state, ReviewState::Approved | ReviewState::RequestChanges) {
            continue;
        }
        match latest.get(u.login.as_str()) {
            Some(prev) if prev.id > r.id => {}
            _ => {
                latest.insert(&u.login, r);
            }
        }
    }
    latest
        .into_iter()
        .filter(|(_, r)| r.state == ReviewState::Approved && !r.dismissed && !r.stale)
        .filter(|(_, r)| r.commit_id == commit)
        // Gitea reports whole seconds: compare at that resolution.
        .filter(|(_, r)| {
            r.submitted_at_ms()
                .is_some_and(|t| t / 1000 >= since_ms / 1000)
        })
        .map(|(u, r)| (u.to_owned(), r.id))
        .collect()
}
