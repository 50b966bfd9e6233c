//! What the node has accepted so far (`pin.json` in the state directory): its template and
//! the highest sequence it applied. A correctly signed state is acted on only if it is for
//! this template, newer than that, and not expired, so a saved state replayed later (a
//! downgrade back to a yanked version) or another template's state is refused.

use crate::files::write_atomic;
use powernode_module::desired_state::DesiredState;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The pin: the template, and the highest sequence applied with that state's id.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub template: String,
    pub sequence: u64,
    pub state_id: String,
}

impl Pin {
    /// The pin kept in `state`, if the node accepted a state yet.
    pub fn read(state: &Path) -> Option<Pin> {
        std::fs::read(state.join("pin.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }
}

/// Raises the pin to the state just accepted (never lowers it), written atomically.
pub fn raise(state: &Path, doc: &DesiredState, state_id: &str) -> anyhow::Result<()> {
    if Pin::read(state).is_some_and(|p| p.sequence > doc.sequence) {
        return Ok(());
    }
    let pin = Pin {
        template: doc.template_id.clone(),
        sequence: doc.sequence,
        state_id: state_id.to_owned(),
    };
    write_atomic(&state.join("pin.json"), &serde_json::to_vec(&pin)?)
}

/// Whether the node may act on a verified state: for `template` (configured, else the
/// pinned one), newer than what it applied, not expired. `Err` is why it is refused.
pub fn admit(
    state: &Path,
    template: Option<&str>,
    doc: &DesiredState,
    state_id: &str,
) -> Result<(), String> {
    let pin = Pin::read(state);
    let template = template.or(pin.as_ref().map(|p| p.template.as_str()));
    let applied = pin.as_ref().map(|p| (p.sequence, p.state_id.as_str()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    doc.admit(state_id, template, applied, now)
        .map_err(|e| format!("desired state {state_id} refused: {e}"))
}
