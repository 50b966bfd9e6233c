//! Every call from a console page into the receiver's domain, in one place: the pages only
//! authenticate, parse, call one of these and render. Each is the service function the REST
//! API and MCP call too (`promotion::Promotions::request`, `fleet::Fleet::{assign, unassign,
//! drift_of}`, `jobs::dead_letters::retry`), so the role checks, the policy, the engine, the
//! audit trail (`via = web`) and the messages are theirs. The fleet page's drift states come
//! from `fleet::judge`, the walk of the fleet the API's drift summary makes too.

use super::view::WebError;
use crate::{
    config::Caller,
    fleet::{drift::Drift, templates::NewAssignment},
    http::AppState,
    lifecycle::Request,
    promotion::Decision,
    store::{InstanceRow, Lifecycle, VersionId, Via},
};

/// Promotes version `id` to `to`: done, pending with what is missing, or refused.
pub async fn promote(
    s: &AppState,
    caller: &Caller,
    id: &VersionId,
    to: Lifecycle,
    note: Option<String>,
) -> Result<Decision, WebError> {
    let request = Request::Promote { to };
    let d = s
        .promotions
        .request(caller, Via::Web, id, request, note)
        .await?;
    Ok(d.decision)
}

/// Yanks version `id` with `reason`.
pub async fn yank(
    s: &AppState,
    caller: &Caller,
    id: &VersionId,
    reason: String,
) -> Result<Decision, WebError> {
    let request = Request::Yank { reason };
    let d = s
        .promotions
        .request(caller, Via::Web, id, request, None)
        .await?;
    Ok(d.decision)
}

/// Assigns `module` (at versions matching `requirement`, if any) to `template`; the
/// sentence says what the template's instances will get.
pub async fn assign(
    s: &AppState,
    caller: &Caller,
    template: &crate::store::TemplateId,
    module: &str,
    requirement: Option<String>,
) -> Result<String, WebError> {
    let b = NewAssignment {
        module_name: module.to_owned(),
        requirement,
    };
    Ok(s.fleet.assign(caller, Via::Web, template, b).await?.message)
}

/// Removes `module` from `template`.
pub async fn unassign(
    s: &AppState,
    caller: &Caller,
    template: &crate::store::TemplateId,
    module: &str,
) -> Result<String, WebError> {
    let a = s.fleet.unassign(caller, Via::Web, template, module).await?;
    Ok(a.message)
}

/// Puts dead-lettered job `id` back in the queue with a fresh attempt budget (audited).
pub async fn retry_dead_letter(
    s: &AppState,
    caller: &Caller,
    id: &crate::store::JobId,
) -> Result<(), WebError> {
    Ok(crate::jobs::dead_letters::retry(&s.store, caller, Via::Web, id).await?)
}

pub use crate::fleet::judge::{DriftState, Placed};

/// The drift of one instance against its template's served state.
pub async fn instance_drift(s: &AppState, row: &InstanceRow) -> Result<Drift, WebError> {
    Ok(s.fleet.drift_of(row).await?)
}

/// Every instance with its drift state, a judgement at most two seconds old (the fleet page
/// says so): `Fleet::drift_states_recent`.
pub async fn fleet_states_recent(s: &AppState) -> Result<std::sync::Arc<Vec<Placed>>, WebError> {
    Ok(s.fleet.drift_states_recent().await?)
}
