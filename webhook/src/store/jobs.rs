//! The durable job queue: jobs are claimed with a lease, retried with exponential backoff,
//! and dead-lettered with their last error after too many attempts. A crash leaves a job
//! `running` with a lease that expires, after which any worker takes it over.
//!
//! Leases are fenced: claiming a job hands out a fresh lease token, the worker renews the
//! lease (heartbeat) while it runs, and completing or failing a job only counts while the
//! token is still the job's. A worker that lost its lease (it stalled past the lease, and
//! another worker took the job over) changes nothing.

use super::{Backend, JobId, JobKind, Store, codec::text_enum};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction, any::AnyRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Dead,
}

impl PartialEq<&str> for JobState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
        }
    }
}

/// A job to enqueue. `dedupe_key` collapses identical queued jobs (a burst of hints for the
/// same tag runs once).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: super::job::JobKind,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct JobRow {
    pub id: JobId,
    pub kind: JobKind,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub attempts: i64,
    pub run_at: i64,
    pub last_error: Option<String>,
    pub updated_at: i64,
    /// The token of the lease this worker holds (set by [`Store::claim`]).
    #[serde(skip)]
    pub lease_token: Option<String>,
}

fn job_row(r: &AnyRow) -> anyhow::Result<JobRow> {
    Ok(JobRow {
        id: r.try_get("id")?,
        kind: text_enum(r, "kind")?,
        payload: serde_json::from_str(&r.try_get::<String, _>("payload")?)?,
        state: text_enum(r, "state")?,
        attempts: r.try_get("attempts")?,
        run_at: r.try_get("run_at")?,
        last_error: r.try_get("last_error")?,
        updated_at: r.try_get("updated_at")?,
        lease_token: r.try_get("lease_token")?,
    })
}

pub(crate) async fn insert(
    tx: &mut Transaction<'_, Any>,
    j: &NewJob,
    now: i64,
) -> anyhow::Result<bool> {
    let n = sqlx::query(
        "INSERT INTO jobs (id, kind, dedupe_key, payload, state, attempts, run_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'queued', 0, $5, $5, $5) ON CONFLICT DO NOTHING",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(j.kind.as_str())
    .bind(&j.dedupe_key)
    .bind(j.payload.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

const COLUMNS: &str =
    "id, kind, payload, state, attempts, run_at, last_error, updated_at, lease_token";

impl Store {
    /// Enqueues a job (unless an identical one is already queued).
    pub async fn enqueue(&self, j: &NewJob) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let fresh = insert(&mut tx, j, self.now()).await?;
        tx.commit().await?;
        Ok(fresh)
    }

    /// Claims the next due job (queued and due, or running with an expired lease).
    pub async fn claim(&self, lease_ms: i64) -> anyhow::Result<Option<JobRow>> {
        let now = self.now();
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $1, updated_at = $2, lease_token = $3
             WHERE id = (SELECT id FROM jobs
                         WHERE (state = 'queued' AND run_at <= $2) OR (state = 'running' AND lease_until < $2)
                         ORDER BY run_at LIMIT 1{lock})
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(now + lease_ms)
            .bind(now)
            .bind(uuid::Uuid::new_v4().to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_row).transpose()
    }

    /// Extends the lease of a running job this worker still holds. Returns `false` when the
    /// lease was lost (another worker took the job over): the caller must stop.
    pub async fn renew_lease(&self, job: &JobRow, lease_ms: i64) -> anyhow::Result<bool> {
        let now = self.now();
        let n = sqlx::query(
            "UPDATE jobs SET lease_until = $3, updated_at = $4 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(job.id.as_str())
        .bind(&job.lease_token)
        .bind(now + lease_ms)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Marks the job done, if this worker still holds its lease (returns whether it did).
    pub async fn complete(&self, job: &JobRow) -> anyhow::Result<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = $3 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
        )
        .bind(job.id.as_str())
        .bind(&job.lease_token)
        .bind(self.now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Schedules another attempt at `run_at`, or dead-letters the job after `max_attempts`,
    /// if this worker still holds its lease (`None` when it lost it).
    pub async fn fail(
        &self,
        job: &JobRow,
        error: &str,
        run_at: i64,
        max_attempts: i64,
    ) -> anyhow::Result<Option<JobState>> {
        let state = if job.attempts >= max_attempts {
            JobState::Dead
        } else {
            JobState::Queued
        };
        let n = sqlx::query(
            "UPDATE jobs SET state = $2, run_at = $3, last_error = $4, lease_until = NULL, updated_at = $5 WHERE id = $1 AND lease_token = $6 AND state = 'running'",
        )
        .bind(job.id.as_str())
        .bind(state.as_str())
        .bind(run_at)
        .bind(error)
        .bind(self.now())
        .bind(&job.lease_token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((n == 1).then_some(state))
    }

    /// On a single-instance start-up: jobs this instance was running when it stopped are
    /// queued again at once instead of waiting for their leases to expire.
    pub async fn requeue_running(&self) -> anyhow::Result<u64> {
        Ok(sqlx::query("UPDATE jobs SET state = 'queued', lease_until = NULL, run_at = $1 WHERE state = 'running'")
            .bind(self.now())
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn dead_letters(&self) -> anyhow::Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'dead' ORDER BY updated_at"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    /// Puts a dead-lettered job back in the queue with a fresh attempt budget.
    pub async fn retry_dead(&self, id: &JobId, audit: &super::NewAudit) -> anyhow::Result<bool> {
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, updated_at = $2 WHERE id = $1 AND state = 'dead'",
        )
        .bind(id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        super::audit::append_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Jobs by state (for metrics).
    pub async fn job_counts(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("state")?, r.try_get::<i64, _>("n")?)))
            .collect()
    }
}
