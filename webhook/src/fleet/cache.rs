//! What the hot read path (`GET …/desired-state` with `If-None-Match`, polled by every
//! instance) and the report path need without touching the database: each template's served
//! state id, each instance's token hash and template, the states known to have been served,
//! and each instance's report budget.
//!
//! A state id is trusted for [`STATE_TTL`]: this replica updates it when it recomputes, and
//! another replica's recomputation is seen within that time. Instance tokens change only by
//! rotation or deletion, which increment the store's instance-auth epoch: a cached token is
//! used only while the epoch it was read under is the current one, and the epoch is re-read
//! at most every [`STATE_TTL`], so a revoked token stops working on every replica within a
//! quarter second. What reports are judged against (the served state, the yanked versions)
//! is kept as long.
//!
//! Every age here is read off the store's injected [`Clock`] (tests move it instead of
//! sleeping). An entry counts only while `0 ≤ now − at < TTL`: a wall clock stepped back
//! makes entries stale, never fresh for longer.

use super::reports::{Against, Yanked};
use crate::store::Clock;
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

/// How long a cached state id answers `If-None-Match`, and a cached instance-auth epoch is
/// trusted, before the database is asked again: how late another replica's new state (or a
/// token's revocation) may be seen here. A quarter second costs one small query per
/// template polled and per epoch four times a second.
pub const STATE_TTL: Duration = Duration::from_millis(250);

/// At most this many entries in the remembered-state sets before they start over (they
/// only save database round trips).
const MAX_KNOWN_STATES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceAuth {
    pub token_sha256: String,
    pub template_id: crate::store::TemplateId,
}

/// A token bucket: `tokens` left at `at` (ms, by the cache's clock).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: i64,
}

/// Whether something kept at `at` (ms) is younger than `ttl` at `now`; never when `now` is
/// before `at` (the clock went back).
fn fresh(at: i64, now: i64, ttl: Duration) -> bool {
    (0..ttl.as_millis() as i64).contains(&(now - at))
}

#[derive(Debug, Default)]
pub struct Cache {
    /// What every age is measured by: the store's clock.
    clock: Clock,
    states: RwLock<HashMap<String, (String, i64)>>,
    /// Instance → its auth, and the epoch it was read under.
    instances: RwLock<HashMap<String, (InstanceAuth, i64)>>,
    /// The instance-auth epoch, and when the read that returned it began.
    epoch: Mutex<Option<(i64, i64)>>,
    /// `(template, state)` pairs recorded in the store as served.
    served: RwLock<HashSet<(String, String)>>,
    /// `(template, state)` pairs known to have been served → the most modules a state of
    /// that template held when it was looked up.
    known: RwLock<HashMap<(String, String), i64>>,
    reports: Mutex<HashMap<String, Bucket>>,
    /// The last judgement of the whole fleet (`Fleet::drift_states_recent`).
    judged: Mutex<Option<super::judge::Judged>>,
    /// Per template, what its reports are judged against (`Fleet::against`).
    against: RwLock<HashMap<String, (Arc<Against>, i64)>>,
    /// The yanked versions (`Fleet::yanked`).
    yanked: Mutex<Option<(Arc<Yanked>, i64)>>,
}

impl Cache {
    /// An empty cache whose entries age by `clock`.
    pub fn new(clock: Clock) -> Cache {
        Cache {
            clock,
            ..Cache::default()
        }
    }

    /// Now, by the cache's clock (ms).
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The last judgement of the whole fleet, however old.
    pub fn judged(&self) -> Option<super::judge::Judged> {
        self.judged.lock().ok().and_then(|j| j.clone())
    }

    pub fn set_judged(&self, j: super::judge::Judged) {
        if let Ok(mut slot) = self.judged.lock() {
            *slot = Some(j);
        }
    }

    /// The served state id of `template`, if cached and fresh.
    pub fn state(&self, template: &str) -> Option<String> {
        let g = self.states.read().ok()?;
        let (id, at) = g.get(template)?;
        fresh(*at, self.now(), STATE_TTL).then(|| id.clone())
    }

    /// Keeps `state_id` as what `template` serves; reports are judged against it from now
    /// on (on this replica; others within [`STATE_TTL`]).
    pub fn set_state(&self, template: &str, state_id: &str) {
        if let Ok(mut g) = self.states.write() {
            g.insert(template.to_owned(), (state_id.to_owned(), self.now()));
        }
        if let Ok(mut g) = self.against.write()
            && g.get(template).is_some_and(|(a, _)| {
                a.desired.as_ref().map(|d| d.state_id.as_str()) != Some(state_id)
            })
        {
            g.remove(template);
        }
    }

    /// Forgets `template`'s state id: the next poll reads the served state in full.
    pub fn forget_state(&self, template: &str) {
        if let Ok(mut g) = self.states.write() {
            g.remove(template);
        }
    }

    /// What `template`'s reports are judged against, if read less than [`STATE_TTL`] ago.
    pub fn against(&self, template: &str) -> Option<Arc<Against>> {
        let g = self.against.read().ok()?;
        let (a, at) = g.get(template)?;
        fresh(*at, self.now(), STATE_TTL).then(|| a.clone())
    }

    pub fn set_against(&self, template: &str, a: Arc<Against>) {
        if let Ok(mut g) = self.against.write() {
            if g.len() >= MAX_KNOWN_STATES {
                g.clear();
            }
            g.insert(template.to_owned(), (a, self.now()));
        }
    }

    /// The yanked versions, if read less than [`STATE_TTL`] ago.
    pub fn yanked(&self) -> Option<Arc<Yanked>> {
        let g = self.yanked.lock().ok()?;
        let (y, at) = g.as_ref()?;
        fresh(*at, self.now(), STATE_TTL).then(|| y.clone())
    }

    pub fn set_yanked(&self, y: Arc<Yanked>) {
        if let Ok(mut g) = self.yanked.lock() {
            *g = Some((y, self.now()));
        }
    }

    /// The instance-auth epoch, if it was read less than [`STATE_TTL`] ago.
    pub fn epoch(&self) -> Option<i64> {
        let g = self.epoch.lock().ok()?;
        let (e, at) = (*g)?;
        fresh(at, self.now(), STATE_TTL).then_some(e)
    }

    /// Keeps the epoch `e`, read by a query that began at `began` ([`Cache::now`]; the
    /// newest read wins).
    pub fn set_epoch(&self, e: i64, began: i64) {
        if let Ok(mut g) = self.epoch.lock() {
            *g = Some(match *g {
                Some((ce, cat)) => (ce.max(e), cat.max(began)),
                None => (e, began),
            });
        }
    }

    /// The instance's auth, if it was cached under `epoch`.
    pub fn instance(&self, id: &str, epoch: i64) -> Option<InstanceAuth> {
        let g = self.instances.read().ok()?;
        let (a, e) = g.get(id)?;
        (*e == epoch).then(|| a.clone())
    }

    /// Caches an instance's auth, read from the store after `epoch` was.
    pub fn set_instance(&self, id: &str, auth: InstanceAuth, epoch: i64) {
        if let Ok(mut g) = self.instances.write() {
            g.insert(id.to_owned(), (auth, epoch));
        }
    }

    /// Forgets an instance at once on this replica (after its rotation or deletion).
    pub fn forget_instance(&self, id: &str) {
        if let Ok(mut g) = self.instances.write() {
            g.remove(id);
        }
        if let Ok(mut g) = self.reports.lock() {
            g.remove(id);
        }
    }

    /// Whether this replica recorded `state` of `template` as served already.
    pub fn recorded_served(&self, template: &str, state: &str) -> bool {
        self.served
            .read()
            .is_ok_and(|g| g.contains(&(template.to_owned(), state.to_owned())))
    }

    pub fn set_recorded_served(&self, template: &str, state: &str) {
        if let Ok(mut g) = self.served.write() {
            if g.len() >= MAX_KNOWN_STATES {
                g.clear();
            }
            g.insert((template.to_owned(), state.to_owned()));
        }
    }

    /// For a state `template` is known to have served: the most modules its states held.
    pub fn known_state(&self, template: &str, state: &str) -> Option<i64> {
        self.known
            .read()
            .ok()?
            .get(&(template.to_owned(), state.to_owned()))
            .copied()
    }

    pub fn set_known_state(&self, template: &str, state: &str, most_modules: i64) {
        if let Ok(mut g) = self.known.write() {
            if g.len() >= MAX_KNOWN_STATES {
                g.clear();
            }
            g.insert((template.to_owned(), state.to_owned()), most_modules);
        }
    }

    /// Takes one report from `instance`'s budget of `max` per `window` (a token bucket that
    /// refills evenly), or says how long until the next one is allowed.
    pub fn admit_report(&self, instance: &str, max: u32, window: Duration) -> Result<(), Duration> {
        let Ok(mut g) = self.reports.lock() else {
            return Ok(());
        };
        let cap = f64::from(max.max(1));
        let per_sec = cap / window.as_secs_f64().max(0.001);
        let now = self.now();
        let b = g.entry(instance.to_owned()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        // A clock stepped back refills nothing.
        let elapsed_secs = (now - b.at).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed_secs * per_sec).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_budget_refills_evenly_and_is_per_instance() {
        let c = Cache::default();
        let w = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(c.admit_report("a", 3, w).is_ok());
        }
        let wait = c.admit_report("a", 3, w).unwrap_err();
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(
            c.admit_report("b", 3, w).is_ok(),
            "another instance has its own budget"
        );
    }

    #[test]
    fn a_cached_token_counts_only_under_its_epoch() {
        let c = Cache::default();
        let a = InstanceAuth {
            token_sha256: "h".into(),
            template_id: "t".into(),
        };
        c.set_instance("i", a.clone(), 3);
        assert_eq!(c.instance("i", 3), Some(a));
        assert_eq!(c.instance("i", 4), None);
        let t0 = c.now();
        c.set_epoch(5, t0);
        c.set_epoch(4, t0);
        assert_eq!(c.epoch(), Some(5), "an older read never wins");
    }

    #[test]
    fn entries_age_by_the_injected_clock_and_a_clock_stepped_back_makes_them_stale() {
        let clock = Clock::manual();
        let c = Cache::new(clock.clone());
        c.set_state("edge", "s1");
        c.set_epoch(7, c.now());
        clock.advance(STATE_TTL - Duration::from_millis(1));
        assert_eq!(c.state("edge").as_deref(), Some("s1"), "still fresh");
        assert_eq!(c.epoch(), Some(7));
        clock.advance(Duration::from_millis(1));
        assert_eq!(c.state("edge"), None, "a TTL later, asked again");
        assert_eq!(c.epoch(), None);

        assert!(fresh(1_000, 1_000, STATE_TTL));
        assert!(!fresh(1_000, 999, STATE_TTL), "a clock that went back");
    }

    #[test]
    fn a_report_budget_refills_by_the_clock() {
        let clock = Clock::manual();
        let c = Cache::new(clock.clone());
        let w = Duration::from_secs(60);
        assert!(c.admit_report("a", 1, w).is_ok());
        assert!(c.admit_report("a", 1, w).is_err());
        clock.advance(w);
        assert!(c.admit_report("a", 1, w).is_ok(), "a window later");
    }
}
