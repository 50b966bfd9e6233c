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
use crate::{
    error::ServiceError,
    store::{ServedState, TemplateId},
};
use tokio::sync::watch;

/// How a poll is answered.
#[derive(Debug)]
pub enum Poll {
    /// The state the poll named is the one served (304 with this ETag).
    Unchanged(String),
    /// The served state, to send whole.
    State(Box<ServedState>),
}

/// How many modules a served state holds.
fn modules_of(st: &ServedState) -> i64 {
    st.document
        .get("modules")
        .and_then(serde_json::Value::as_array)
        .map_or(0, |m| m.len() as i64)
}

impl Fleet {
    /// Whether `template` still serves `presented`, so a poll naming it is answered 304.
    /// `false` means: read the served state in full ([`Fleet::served`]).
    pub async fn still_serves(
        &self,
        template: &TemplateId,
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

    /// Answers a poll of `template`'s desired state that named `presented` in
    /// `If-None-Match` (if any): unchanged, or the served state (re-issued first when it is
    /// past half its validity), which reports may name from then on.
    /// [`ServiceError::NotFound`] while the template serves none.
    pub async fn poll(
        &self,
        template: &TemplateId,
        presented: Option<&str>,
    ) -> Result<Poll, ServiceError> {
        if let Some(p) = presented
            && self.still_serves(template, p).await?
        {
            return Ok(Poll::Unchanged(p.to_owned()));
        }
        let Some(st) = self.served(template).await? else {
            return Err(ServiceError::not_found(format!(
                "template {template} serves no desired state yet"
            )));
        };
        self.cache.set_state(template, &st.state_id);
        self.remember_served(template, &st).await?;
        if presented == Some(st.state_id.as_str()) {
            return Ok(Poll::Unchanged(st.state_id));
        }
        Ok(Poll::State(Box::new(st)))
    }

    /// Records (once per replica) that `template` sends out `st`: reports may name it from
    /// now on. Called wherever a served state leaves the receiver.
    pub async fn remember_served(
        &self,
        template: &TemplateId,
        st: &ServedState,
    ) -> Result<(), ServiceError> {
        if self.cache.recorded_served(template, &st.state_id) {
            return Ok(());
        }
        self.store
            .remember_served_state(template, &st.state_id, modules_of(st))
            .await?;
        self.cache.set_recorded_served(template, &st.state_id);
        Ok(())
    }

    /// If `template` ever served `state` (the one it serves now counts even before an
    /// instance fetched it): the most modules a state it served held. `None`: never served.
    pub async fn served_bound(
        &self,
        template: &TemplateId,
        state: &str,
    ) -> Result<Option<usize>, ServiceError> {
        if let Some(most) = self.cache.known_state(template, state) {
            return Ok(Some(usize::try_from(most).unwrap_or(0)));
        }
        let (mut known, mut most) = self.store.served_state_history(template, state).await?;
        if !known
            && let Some(st) = self.store.served_state(template).await?
            && st.state_id == state
        {
            self.remember_served(template, &st).await?;
            known = true;
            most = Some(most.unwrap_or(0).max(modules_of(&st)));
        }
        if !known {
            return Ok(None);
        }
        let most = most.unwrap_or(0);
        self.cache.set_known_state(template, state, most);
        Ok(Some(usize::try_from(most).unwrap_or(0)))
    }

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
