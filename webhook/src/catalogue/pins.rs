//! First-use pins of the modules' signers: every pin and proposal, and the decision on a
//! proposal made under `trust_on_first_use = "confirm"` (REST `/api/v1/pins`, MCP, console). A decision, its audit row (`pin_confirmed` /
//! `pin_rejected`, with `via`) and the re-ingest jobs of the versions that waited for it are
//! written in one transaction: after a crash the queue still re-ingests them (confirmed: they
//! become drafts; rejected: they are rejected as `pin_rejected`).

use crate::{
    config::{Caller, Role},
    error::{ServiceError, require_role},
    lifecycle::Actor,
    store::{
        AuditAction, Job, Lifecycle, ModulePin, NewAudit, NewJob, PinDecision, PinState, Store, Via,
    },
};
use serde::Serialize;

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Pins {
    /// Every module's pin or proposal (`state`: proposed, confirmed, rejected), by module.
    pub pins: Vec<ModulePin>,
}

/// The answer to a decision.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PinDecided {
    pub pin: ModulePin,
    /// The versions that waited for the decision, queued for ingest again.
    pub requeued: Vec<String>,
}

/// Every module's pin or proposal.
pub async fn list(store: &Store) -> Result<Pins, ServiceError> {
    Ok(Pins {
        pins: store.pins().await?,
    })
}

/// Confirms (`to = Confirmed`) or rejects the proposal of `module` for `caller` (an operator,
/// authenticated by the edge it came `via`).
pub async fn decide(
    store: &Store,
    caller: &Caller,
    via: Via,
    module: String,
    to: PinState,
) -> Result<PinDecided, ServiceError> {
    require_role(caller, Role::Operator)?;
    let Some(current) = store.pin(&module).await? else {
        return Err(ServiceError::not_found(format!(
            "module {module} has no first-use pin or proposal"
        )));
    };
    if current.state != PinState::Proposed {
        return Err(ServiceError::Conflict {
            code: "not_proposed",
            message: format!(
                "the first-use pin of {module} is {}, not proposed: only a proposal can be confirmed or rejected",
                current.state.as_str()
            ),
        });
    }
    let waiting = store
        .versions_of(&module, Some(Lifecycle::PendingSignature))
        .await?;
    let jobs: Vec<NewJob> = waiting
        .iter()
        .map(|v| {
            Job::Ingest {
                repository: v.repository.clone(),
                tag: v.tag.clone(),
            }
            .to_new()
        })
        .collect();
    let requeued: Vec<String> = waiting.iter().map(|v| v.id.to_string()).collect();
    let (action, verb) = match to {
        PinState::Confirmed => (AuditAction::PinConfirmed, "confirmed"),
        _ => (AuditAction::PinRejected, "rejected"),
    };
    let actor = Actor::Api(caller.name.clone()).encode();
    let audit = NewAudit {
        version_id: Some(current.version_id.as_str().into()),
        template_id: None,
        module: Some(module.clone()),
        actor: actor.clone(),
        via,
        action,
        from_state: None,
        to_state: None,
        reason: Some(format!(
            "{verb} the first-use pin of {module}: identity pattern {} (issuer {})",
            current.identity_pattern, current.issuer
        )),
        evidence: serde_json::json!({
            "identity": current.identity,
            "pattern": current.identity_pattern,
            "issuer": current.issuer,
            "first_version": current.version_id,
            "manifest_digest": current.manifest_digest,
            "requeued": requeued,
        }),
    };
    let decided = store
        .decide_pin(&PinDecision {
            module: &module,
            to,
            by: &actor,
            via,
            audit: &audit,
            jobs: &jobs,
        })
        .await?;
    let Some(pin) = decided else {
        return Err(ServiceError::Conflict {
            code: "not_proposed",
            message: format!("the first-use proposal of {module} was decided meanwhile"),
        });
    };
    tracing::info!(module = %module, state = pin.state.as_str(), by = %actor, via = via.as_str(), "first-use pin decided");
    Ok(PinDecided {
        pin: ModulePin { module, pin },
        requeued,
    })
}
