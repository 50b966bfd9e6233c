//! What the hot read path (`GET …/desired-state` with `If-None-Match`, polled by every
//! instance) needs without touching the database: each template's served state id and each
//! instance's token hash and template.
//!
//! Instance rows never change their token or template, so those entries stay valid. A state
//! id is trusted for [`STATE_TTL`]: this replica updates it when it recomputes, and another
//! replica's recomputation is seen within that time.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

/// How long a cached state id answers `If-None-Match` before the database is asked again.
pub const STATE_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceAuth {
    pub token_sha256: String,
    pub template_id: String,
}

#[derive(Debug, Default)]
pub struct Cache {
    states: RwLock<HashMap<String, (String, Instant)>>,
    instances: RwLock<HashMap<String, InstanceAuth>>,
}

impl Cache {
    /// The served state id of `template`, if cached and fresh.
    pub fn state(&self, template: &str) -> Option<String> {
        let g = self.states.read().ok()?;
        let (id, at) = g.get(template)?;
        (at.elapsed() < STATE_TTL).then(|| id.clone())
    }

    pub fn set_state(&self, template: &str, state_id: &str) {
        if let Ok(mut g) = self.states.write() {
            g.insert(template.to_owned(), (state_id.to_owned(), Instant::now()));
        }
    }

    pub fn instance(&self, id: &str) -> Option<InstanceAuth> {
        self.instances.read().ok()?.get(id).cloned()
    }

    pub fn set_instance(&self, id: &str, auth: InstanceAuth) {
        if let Ok(mut g) = self.instances.write() {
            g.insert(id.to_owned(), auth);
        }
    }
}
