//! Dead letters as operators handle them (REST, MCP, the console): the jobs that failed for
//! good with their last error, and a fresh attempt budget for one, audited.

use crate::{
    config::{Caller, Role},
    error::{ServiceError, require_role},
    lifecycle::Actor,
    store::{AuditAction, JobId, JobRow, NewAudit, Store, Via},
};

/// Every dead-lettered job, with its last error.
pub async fn list(store: &Store) -> Result<Vec<JobRow>, ServiceError> {
    Ok(store.dead_letters().await?)
}

/// Puts dead-lettered job `id` back in the queue for `caller` (an operator, authenticated by
/// the edge it came `via`); the retry and its audit row are one transaction.
pub async fn retry(
    store: &Store,
    caller: &Caller,
    via: Via,
    id: &JobId,
) -> Result<(), ServiceError> {
    require_role(caller, Role::Operator)?;
    let audit = NewAudit {
        version_id: None,
        template_id: None,
        module: None,
        actor: Actor::Api(caller.name.clone()).encode(),
        via,
        action: AuditAction::DeadLetterRetried,
        from_state: None,
        to_state: None,
        reason: None,
        evidence: serde_json::json!({"job_id": id}),
    };
    if store.retry_dead(id, &audit).await? {
        Ok(())
    } else {
        Err(ServiceError::not_found(format!(
            "no dead-lettered job {id}"
        )))
    }
}
