//! What a recomputation answers: the state now served, and why a template serves less than
//! its assignments ask for when it does.

use powernode_module::diagnostics::Finding;
use serde::{Deserialize, Serialize};

/// The outcome of recomputing one template.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Recomputed {
    pub template_id: crate::store::TemplateId,
    /// The state now served (unchanged when blocked).
    pub state_id: Option<String>,
    /// The served state changed.
    pub changed: bool,
    /// Conflicts kept the state the assignments ask for from being served.
    pub blocked: bool,
    pub conflicts: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// The modules of the computed state, in composition order.
    pub modules: Vec<String>,
    /// Set when the served state is not the one the assignments ask for because a version
    /// it named left `live` and the full state cannot be composed.
    pub degraded: Option<Degraded>,
}

/// Why a template serves less than its assignments ask for. A served state never names a
/// version that is not `live`: when a yank (or any move out of `live`) leaves the full
/// state uncomposable, the receiver serves the assignments that still compose on their own
/// (`degraded`), or, if even those conflict, a signed hold state (`held`): nodes keep what
/// they run and apply nothing until the template composes again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Degraded {
    pub mode: DegradedMode,
    /// One sentence, for people.
    pub reason: String,
    /// Assignments left out of the served state (with what depends on them).
    pub dropped: Vec<String>,
    /// The conflicts of the full composition.
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DegradedMode {
    Degraded,
    Held,
}
