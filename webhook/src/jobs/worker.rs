//! Workers: claim a job, run it, and record the outcome. Transient failures are retried with
//! exponential backoff (capped); after `max_attempts` the job is dead-lettered with its last
//! error. Tests drive [`Worker::run_once`] directly instead of sleeping.
//!
//! While a job runs, its lease is renewed every third of the lease time, so a long ingest is
//! never taken over by another worker; if the lease is lost anyway (this worker stalled past
//! it), the job is abandoned here and its outcome recorded by whoever holds it now.

use crate::{
    config::IngestConfig,
    error::Error,
    ingest::{Ctx, Outcome},
    store::{Job, JobRow, JobState},
};
use std::time::{Duration, Instant};
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct Worker {
    pub ctx: Ctx,
    pub cfg: IngestConfig,
    /// The promotion engine, when Gitea is configured.
    pub engine: Option<crate::promotion::Engine>,
    /// Recomputes desired states.
    pub fleet: crate::fleet::Fleet,
}

/// Delay before attempt `attempts + 1`: base · 2^(attempts−1), capped.
pub fn backoff_ms(cfg: &IngestConfig, attempts: i64) -> i64 {
    let exp = (attempts.max(1) - 1).min(30) as u32;
    cfg.backoff_base_ms
        .saturating_mul(1i64 << exp)
        .min(cfg.backoff_cap_ms)
}

/// The longest `Retry-After` honoured: a server asking for more is retried after this, so a
/// typo on its side cannot park a job for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// The delay before the next attempt: the backoff, but never sooner than the server asked
/// (`Retry-After`, up to [`MAX_RETRY_AFTER`]).
pub fn retry_delay_ms(cfg: &IngestConfig, attempts: i64, retry_after: Option<Duration>) -> i64 {
    let asked = retry_after.map_or(0, |d| d.min(MAX_RETRY_AFTER).as_millis() as i64);
    backoff_ms(cfg, attempts).max(asked)
}

impl Worker {
    /// Claims and runs one due job. Returns whether there was one.
    pub async fn run_once(&self) -> anyhow::Result<bool> {
        let Some(job) = self.ctx.store.claim(self.cfg.lease_secs * 1000).await? else {
            return Ok(false);
        };
        let span =
            tracing::info_span!("job", id = %job.id, kind = %job.kind, attempt = job.attempts);
        self.run(job).instrument(span).await?;
        Ok(true)
    }

    async fn run(&self, job: JobRow) -> anyhow::Result<()> {
        let lease_ms = self.cfg.lease_secs.max(1) * 1000;
        let heartbeat = async {
            let every = Duration::from_millis((lease_ms / 3).max(1) as u64);
            loop {
                tokio::time::sleep(every).await;
                match self.ctx.store.renew_lease(&job, lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "renewing a job lease"),
                }
            }
        };
        tokio::select! {
            r = self.execute(&job) => r,
            () = heartbeat => {
                tracing::error!("lost the job's lease to another worker; abandoning it here");
                Ok(())
            }
        }
    }

    /// Runs the job's handler. `Ok` outcomes are logged; an unknown or malformed job is
    /// dead-lettered, as is any failure retrying cannot mend.
    async fn handle(&self, job: &Job) -> Result<Vec<Outcome>, Error> {
        Ok(match job {
            Job::Ingest { repository, tag } => vec![self.ctx.ingest(repository, tag).await?],
            Job::Signature { repository, digest } => {
                self.ctx.recheck_signature(repository, digest).await?
            }
            Job::Command(_)
            | Job::Reevaluate { .. }
            | Job::CommitStatus { .. }
            | Job::Reply { .. }
                if self.engine.is_none() =>
            {
                vec![Outcome::Ignored(
                    "no [gitea] configured: promotion commands are not handled".into(),
                )]
            }
            Job::Command(c) => {
                if let Some(engine) = &self.engine {
                    engine.on_comment(c).await?;
                }
                Vec::new()
            }
            Job::Reevaluate { repository } => {
                if let Some(engine) = &self.engine {
                    engine.reevaluate(Some(repository)).await?;
                }
                Vec::new()
            }
            Job::CommitStatus { version } => {
                if let Some(engine) = &self.engine {
                    engine.commit_status(version).await?;
                }
                Vec::new()
            }
            Job::Reply {
                repository,
                pr,
                user,
                text,
                ..
            } => {
                if let Some(engine) = &self.engine {
                    engine.post_reply(repository, *pr, user, text).await?;
                }
                Vec::new()
            }
            Job::DesiredStates { modules, template } => {
                let recomputed = self
                    .fleet
                    .recompute_changed(modules.as_deref(), template.as_ref())
                    .await?;
                for r in recomputed {
                    tracing::info!(template = %r.template_id, changed = r.changed, blocked = r.blocked, "desired state recomputed");
                }
                Vec::new()
            }
        })
    }

    async fn execute(&self, row: &JobRow) -> anyhow::Result<()> {
        let started = Instant::now();
        let result = match Job::decode(row.kind.as_str(), &row.payload) {
            Ok(job) => self.handle(&job).await.map_err(|e| {
                let transient = e.is_transient();
                (format!("{e:#}"), transient, e.retry_after())
            }),
            Err(why) => Err((why, false, None)),
        };
        self.ctx
            .metrics
            .ingest_duration(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) => {
                for o in &outcomes {
                    tracing::info!(outcome = ?o, "job done");
                }
                if !self.ctx.store.complete(row).await? {
                    tracing::warn!("job finished after its lease passed to another worker");
                }
                Ok(())
            }
            Err((e, transient, retry_after)) => {
                let at =
                    self.ctx.store.now() + retry_delay_ms(&self.cfg, row.attempts, retry_after);
                // A failure retrying cannot mend is dead-lettered now, with its reason.
                let budget = if transient {
                    self.cfg.max_attempts
                } else {
                    row.attempts
                };
                let state = self.ctx.store.fail(row, &e, at, budget).await?;
                match state {
                    None => {
                        tracing::warn!(error = %e, "job failed after its lease passed to another worker")
                    }
                    Some(JobState::Dead) => {
                        tracing::error!(error = %e, attempts = row.attempts, transient, "job dead-lettered")
                    }
                    Some(_) => {
                        tracing::warn!(error = %e, attempts = row.attempts, "job failed; will retry")
                    }
                }
                Ok(())
            }
        }
    }

    /// Runs jobs until `stop` is set, polling when idle. An in-flight job is finished before
    /// returning; queued jobs stay queued.
    pub async fn run_until(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            match self.run_once().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::error!(error = %format!("{e:#}"), "worker"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let cfg = IngestConfig {
            backoff_base_ms: 100,
            backoff_cap_ms: 1000,
            ..Default::default()
        };
        let d: Vec<i64> = (1..=6).map(|a| backoff_ms(&cfg, a)).collect();
        assert_eq!(d, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn retry_after_is_a_floor_with_a_ceiling() {
        let cfg = IngestConfig {
            backoff_base_ms: 100,
            backoff_cap_ms: 1000,
            ..Default::default()
        };
        assert_eq!(retry_delay_ms(&cfg, 1, None), 100);
        assert_eq!(
            retry_delay_ms(&cfg, 1, Some(Duration::from_secs(30))),
            30_000
        );
        assert_eq!(
            retry_delay_ms(&cfg, 4, Some(Duration::from_millis(10))),
            800
        );
        assert_eq!(
            retry_delay_ms(&cfg, 1, Some(Duration::from_secs(86_400))),
            3_600_000
        );
    }
}
