//! The first-use pin tools: list pins and proposals, confirm or reject a proposal, on the
//! same functions as `/api/v1/pins` (audited `via = mcp`).

use super::{Tools, answered};
use crate::{
    catalogue::pins,
    config::Role,
    store::{PinState, Via},
};
use http::request::Parts;
use rmcp::{
    Json,
    handler::server::{tool::Extension, wrapper::Parameters},
    tool, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PinArgs {
    /// The module (`my-redis`) whose proposed first-use pin is decided.
    pub module_name: String,
}

#[tool_router(router = pin_router, vis = "pub(super)")]
impl Tools {
    #[tool(
        description = "First-use pins and proposals, by module: {pins: [{module, identity, identity_pattern, issuer, version_id (first seen), manifest_digest, pinned_at (proposed at), state (proposed, confirmed, rejected), decided_by, decided_via, decided_at}]}. A proposed pin holds the versions signed by it until an operator confirms or rejects it.",
        annotations(
            title = "List first-use pins",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn system_list_pins(
        &self,
        Parameters(_): Parameters<super::NoArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<pins::Pins>, String> {
        self.caller(&p, Role::Read)?;
        answered(pins::list(&self.s.store).await)
    }

    #[tool(
        description = "Confirm a module's proposed first-use pin: its identity pattern becomes the pin, and the versions it held are ingested again (they become drafts). Audited. Needs the operator role.",
        annotations(
            title = "Confirm a first-use pin",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn system_confirm_pin(
        &self,
        Parameters(a): Parameters<PinArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<pins::PinDecided>, String> {
        let caller = self.caller(&p, Role::Operator)?;
        answered(
            pins::decide(
                &self.s.store,
                &caller,
                Via::Mcp,
                a.module_name,
                PinState::Confirmed,
            )
            .await,
        )
    }

    #[tool(
        description = "Reject a module's proposed first-use pin: the versions signed by it are rejected (pin_rejected), and the next release signed by another workflow of the repository proposes again. Audited. Needs the operator role.",
        annotations(
            title = "Reject a first-use pin",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn system_reject_pin(
        &self,
        Parameters(a): Parameters<PinArgs>,
        Extension(p): Extension<Parts>,
    ) -> Result<Json<pins::PinDecided>, String> {
        let caller = self.caller(&p, Role::Operator)?;
        answered(
            pins::decide(
                &self.s.store,
                &caller,
                Via::Mcp,
                a.module_name,
                PinState::Rejected,
            )
            .await,
        )
    }
}
