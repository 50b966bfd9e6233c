//! Answering a poll: whether the state an instance names in `If-None-Match` is still the one
//! its template serves. Every instance polls, so the answer comes from the cache while it is
//! fresh ([`super::cache::STATE_TTL`]), and else from the state's id and expiry alone (one
//! small query), falling back to reading and perhaps re-issuing the whole state only when the
//! state changed, is past half its validity, or was never sent out by this replica.

use super::Fleet;
use crate::error::ServiceError;

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
