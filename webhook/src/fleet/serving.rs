//! Answering a poll: whether the state an instance names in `If-None-Match` is still the one
//! its template serves. Every instance polls, so the answer comes from the cache while it is
//! fresh ([`super::cache::STATE_TTL`]), and else from the state's id and expiry alone (one
//! small query), falling back to reading and perhaps re-issuing the whole state only when the
//! state changed, is past half its validity, or was never sent out by this replica.
//!
//! A serving receiver also keeps the cache fresh ahead of the polls ([`refresh_until`]): one
//! query for every template's state id and expiry, twice per [`STATE_TTL`], so polls do not
//! wait on the database at all (on PostgreSQL, under load, that round trip was the poll's
//! p99). A state past half its validity, or never sent out by this replica, is left out of
//! the cache, so the next poll takes the full path that re-issues or records it.

use super::{Fleet, cache::STATE_TTL};
use crate::error::ServiceError;
use tokio::sync::watch;

impl Fleet {
    /// Whether `template` still serves `presented`, so a poll naming it is answered 304.
    /// `false` means: read the served state in full ([`Fleet::served`]).
    pub async fn still_serves(
        &self,
        template: &str,
        presented: &str,
    ) -> Result<bool, ServiceError> {
        if let Some(cached) = self.cache.state(template) {
            return Ok(cached == presented);
        }
        let Some((id, expires_at)) = self.store.served_state_head(template).await? else {
            return Ok(false);
        };
        let now_s = self.store.now().div_euclid(1000);
        // Past half its validity it is re-issued on the full path; a state this replica never
        // sent out is recorded there first (reports may name it from then on).
        if id != presented
            || expires_at - now_s <= self.validity_secs / 2
            || !self.cache.recorded_served(template, &id)
        {
            return Ok(false);
        }
        self.cache.set_state(template, &id);
        Ok(true)
    }
}

impl Fleet {
    /// Refreshes every template's cached state id from one read of the served states.
    pub async fn refresh_states(&self) -> Result<(), ServiceError> {
        let now_s = self.store.now().div_euclid(1000);
        for (template, id, expires_at) in self.store.served_state_heads().await? {
            if expires_at - now_s > self.validity_secs / 2
                && self.cache.recorded_served(&template, &id)
            {
                self.cache.set_state(&template, &id);
            } else {
                self.cache.forget_state(&template);
            }
        }
        Ok(())
    }
}

/// Refreshes the cached state ids twice per [`STATE_TTL`] until `stop` turns true.
pub async fn refresh_until(fleet: Fleet, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = fleet.refresh_states().await {
            tracing::warn!(error = %format!("{e:#}"), "refreshing the served state ids failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(STATE_TTL / 2) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}
