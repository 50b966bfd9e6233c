//! Revoking what an instance holds (operator role, audited): `DELETE /instances/{id}` (the
//! instance, its token and its last report are gone) and `POST /instances/{id}/token` (a new
//! token, shown once; the old one stops working). Both increment the store's instance-auth
//! epoch in the same transaction, so every replica refuses the old token within a second;
//! this replica at once.

use super::{Registered, find, new_token, token_hash};
use crate::{
    config::Role,
    http::{
        ApiError, AppState,
        auth::{Caller, require},
    },
    lifecycle::Actor,
    store::{AuditAction, NewAudit, Via},
};
use axum::{
    Json,
    extract::{Path, State},
    http::HeaderMap,
};
use serde::Serialize;

/// The answer to a deletion.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Deleted {
    pub instance_id: String,
    pub template_id: String,
    pub message: String,
}

fn audit(
    caller: &Caller,
    via: Via,
    template_id: &str,
    action: AuditAction,
    instance_id: &str,
) -> NewAudit {
    NewAudit {
        version_id: None,
        template_id: Some(template_id.to_owned()),
        module: None,
        actor: Actor::Api(caller.name.clone()).encode(),
        via,
        action,
        from_state: None,
        to_state: None,
        reason: None,
        evidence: serde_json::json!({"instance_id": instance_id}),
    }
}

/// Drops what this replica cached of instance `id` and re-reads the epoch the change moved
/// on, so nothing read before the change is used here again.
async fn forget(s: &AppState, id: &str) -> Result<(), ApiError> {
    s.fleet.cache.forget_instance(id);
    let began = std::time::Instant::now();
    let e = s.store.instance_auth_epoch().await?;
    s.fleet.cache.set_epoch(e, began);
    Ok(())
}

/// `DELETE /instances/{id}`.
pub async fn delete(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    delete_via(&s, &caller, Via::Api, id).await.map(Json)
}

/// Deletes instance `id` for `caller` (an operator, authenticated by the edge it came `via`).
pub async fn delete_via(
    s: &AppState,
    caller: &Caller,
    via: Via,
    id: String,
) -> Result<Deleted, ApiError> {
    let row = find(s, &id).await?;
    let a = audit(
        caller,
        via,
        &row.template_id,
        AuditAction::InstanceDeleted,
        &id,
    );
    if !s.store.delete_instance(&id, &a).await? {
        return Err(ApiError::not_found(format!("no instance {id}")));
    }
    forget(s, &id).await?;
    Ok(Deleted {
        message: format!(
            "instance {id} is deleted: its token no longer works and its reports are refused"
        ),
        instance_id: id,
        template_id: row.template_id,
    })
}

/// `POST /instances/{id}/token`.
pub async fn rotate_token(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Registered>, ApiError> {
    let caller = require(&s, &h, Role::Operator)?;
    rotate_via(&s, &caller, Via::Api, id).await.map(Json)
}

/// Gives instance `id` a new token for `caller`; the old one stops working.
pub async fn rotate_via(
    s: &AppState,
    caller: &Caller,
    via: Via,
    id: String,
) -> Result<Registered, ApiError> {
    let row = find(s, &id).await?;
    let token = new_token();
    let a = audit(
        caller,
        via,
        &row.template_id,
        AuditAction::InstanceTokenRotated,
        &id,
    );
    if !s
        .store
        .rotate_instance_token(&id, &token_hash(&token), &a)
        .await?
    {
        return Err(ApiError::not_found(format!("no instance {id}")));
    }
    forget(s, &id).await?;
    Ok(Registered {
        instance: find(s, &id).await?,
        token,
    })
}
