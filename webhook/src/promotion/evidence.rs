//! Evidence for a decision, read from Gitea right before it (reviews can be dismissed without
//! a webhook). Always from the module's own pinned Gitea repository: never from the
//! repository a comment happened to be posted in.

use crate::{
    gitea::{Gitea, GiteaError, latest_approvals},
    store::VersionRow,
};
use powernode_module::lifecycle::{Actor, Approval, Evidence, Permission};

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
