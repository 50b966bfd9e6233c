//! Instances as operators manage them (REST, MCP, the console): registering one (its token
//! shown once, only its SHA-256 kept), deleting one, and replacing a leaked token. Deletion and
//! rotation bump the store's instance-auth epoch in the same transaction as the change and its
//! audit row, so every replica refuses the old token within a second; this replica at once.

use super::{Fleet, instances::token_hash};
use crate::{
    catalogue::NAME_PATTERN,
    config::{Caller, Role},
    error::{ServiceError, require_role},
    lifecycle::Actor,
    store::{AuditAction, InstanceId, InstanceRow, NewAudit, TemplateId, Via},
};
use powernode_module::manifest::ModuleName;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInstance {
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub id: String,
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub template_id: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Registered {
    pub instance: InstanceRow,
    /// Shown once: only its SHA-256 is stored.
    pub token: String,
}

/// The answer to a deletion.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Deleted {
    pub instance_id: crate::store::InstanceId,
    pub template_id: crate::store::TemplateId,
    pub message: String,
}

/// A new instance token: 244 random bits from the OS generator (two v4 UUIDs), shown once.
fn new_token() -> String {
    format!(
        "pni_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn audit(
    caller: &Caller,
    via: Via,
    template_id: &TemplateId,
    action: AuditAction,
    instance_id: &InstanceId,
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

impl Fleet {
    /// Registers instance `b.id` of template `b.template_id` for `caller` (an operator); the
    /// answer holds its token, the only time it is shown.
    pub async fn register_instance(
        &self,
        caller: &Caller,
        via: Via,
        b: NewInstance,
    ) -> Result<Registered, ServiceError> {
        require_role(caller, Role::Operator)?;
        if ModuleName::parse(&b.id).is_none() {
            return Err(ServiceError::invalid(format!(
                "instance id {:?} must match ^[a-z0-9][a-z0-9-]{{0,62}}$",
                b.id
            )));
        }
        let (id, template_id) = (InstanceId::from(b.id), TemplateId::from(b.template_id));
        self.template(&template_id).await?;
        let token = new_token();
        let a = audit(
            caller,
            via,
            &template_id,
            AuditAction::InstanceRegistered,
            &id,
        );
        if !self
            .store
            .register_instance(&id, &template_id, &token_hash(&token), &a)
            .await?
        {
            return Err(ServiceError::Conflict {
                code: "exists",
                message: format!("instance {id} is registered already"),
            });
        }
        Ok(Registered {
            instance: self.instance(&id).await?,
            token,
        })
    }

    /// Deletes instance `id` for `caller` (an operator, authenticated by the edge it came
    /// `via`): its token, its last report; its audit rows stay.
    pub async fn delete_instance(
        &self,
        caller: &Caller,
        via: Via,
        id: &InstanceId,
    ) -> Result<Deleted, ServiceError> {
        require_role(caller, Role::Operator)?;
        let row = self.instance(id).await?;
        let a = audit(
            caller,
            via,
            &row.template_id,
            AuditAction::InstanceDeleted,
            id,
        );
        if !self.store.delete_instance(id, &a).await? {
            return Err(ServiceError::not_found(format!("no instance {id}")));
        }
        self.forget_instance(id).await?;
        Ok(Deleted {
            message: format!(
                "instance {id} is deleted: its token no longer works and its reports are refused"
            ),
            instance_id: id.to_owned(),
            template_id: row.template_id,
        })
    }

    /// Gives instance `id` a new token for `caller` (an operator); the old one stops working.
    pub async fn rotate_instance_token(
        &self,
        caller: &Caller,
        via: Via,
        id: &InstanceId,
    ) -> Result<Registered, ServiceError> {
        require_role(caller, Role::Operator)?;
        let row = self.instance(id).await?;
        let token = new_token();
        let a = audit(
            caller,
            via,
            &row.template_id,
            AuditAction::InstanceTokenRotated,
            id,
        );
        if !self
            .store
            .rotate_instance_token(id, &token_hash(&token), &a)
            .await?
        {
            return Err(ServiceError::not_found(format!("no instance {id}")));
        }
        self.forget_instance(id).await?;
        Ok(Registered {
            instance: self.instance(id).await?,
            token,
        })
    }

    /// Drops what this replica cached of instance `id` and re-reads the epoch the change moved
    /// on, so nothing read before the change is used here again.
    async fn forget_instance(&self, id: &InstanceId) -> Result<(), ServiceError> {
        self.cache.forget_instance(id);
        let began = self.cache.now();
        let e = self.store.instance_auth_epoch().await?;
        self.cache.set_epoch(e, began);
        Ok(())
    }
}
