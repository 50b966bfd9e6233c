//! Persistence: SQLite by default (WAL, created on first start) or PostgreSQL, through one
//! set of migrations (`webhook/migrations/`) and plain queries. Callers see typed rows; the
//! SQL stays here.

mod audit;
mod codec;
mod console;
mod group_commit;
mod ids;
mod instances;
mod job;
mod jobs;
mod pins;
mod requests;
mod signing_keys;
mod template_locks;
mod templates;
mod verdicts;
mod versions;

pub use audit::{AuditAction, AuditRow, NewAudit, Via};
pub use console::{DeadLetter, InstanceBrief, Sample, VersionBrief, WebSession};
pub use group_commit::{DeliveryLog, ReportLog};
pub use ids::{InstanceId, JobId, RequestId, TemplateId, VersionId};
pub use instances::{InstanceRow, PackageSighting, Report, StoredReport};
pub use job::{Job, JobKind, signed_digest_of_tag};
pub use jobs::{JobRow, JobState, NewJob};
pub use pins::{ModulePin, Pin, PinDecision, PinState};
pub use requests::{PromotionRequest, RequestState};
pub use template_locks::TemplateLock;
pub use templates::{Assignment, LastComputation, Recorded, Serve, ServedState, TemplateRow};
pub use verdicts::{DriftState, JudgedReport, Rejudged, StoredVerdict, VerdictRow};
pub use versions::{Lifecycle, VersionRow};

use sqlx::{
    AnyPool, Row,
    any::{AnyConnectOptions, AnyPoolOptions},
};
use std::{str::FromStr, time::Duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub backend: Backend,
    /// The receiver's notion of now: every time it records or compares (state entered,
    /// soak, expiry, leases, backoff) comes from here, so tests move time instead of sleeping.
    pub clock: Clock,
    /// Who is recomputing which template in this process ([`TemplateLock`]).
    pub(crate) locks: std::sync::Arc<template_locks::LocalLocks>,
}

/// Milliseconds since the Unix epoch, by the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The system clock, or a manual one that moves only when told (shared by every clone).
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<std::sync::Arc<std::sync::atomic::AtomicI64>>);

impl Clock {
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that starts at the system's now and moves only by [`Clock::advance`].
    pub fn manual() -> Clock {
        Clock(Some(std::sync::Arc::new(now_ms().into())))
    }

    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            None => now_ms(),
            Some(t) => t.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward (a system clock moves by itself).
    pub fn advance(&self, d: Duration) {
        if let Some(t) = &self.0 {
            t.fetch_add(d.as_millis() as i64, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A delivery as recorded before it is acknowledged: what a hook parser returns.
pub use powernode_inbound::hooks::Delivery as NewDelivery;

impl Store {
    /// Connects (creating a SQLite file and its directory if needed) and runs migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        Store::connect_with_clock(url, Clock::system()).await
    }

    /// As [`Store::connect`], with the clock the receiver goes by.
    pub async fn connect_with_clock(url: &str, clock: Clock) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            anyhow::bail!("database_url {url:?}: use sqlite://PATH or postgres://…");
        };
        let mut synchronous = Synchronous::Full;
        let url = if backend == Backend::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            // `?synchronous=full|normal`: FULL (the default) makes a commit survive a power
            // loss; NORMAL only a process crash, for a quicker commit (RELIABILITY.md).
            synchronous = match path.split_once('?').map(|(_, q)| q) {
                None => Synchronous::Full,
                Some(q) => q
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("synchronous="))
                    .map(|v| match v.to_ascii_lowercase().as_str() {
                        "full" => Ok(Synchronous::Full),
                        "normal" => Ok(Synchronous::Normal),
                        other => Err(anyhow::anyhow!(
                            "database_url: synchronous={other:?}: use full or normal"
                        )),
                    })
                    .transpose()?
                    .unwrap_or(Synchronous::Full),
            };
            let path = path.split('?').next().unwrap_or(path);
            if let Some(dir) = std::path::Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            format!("sqlite://{path}?mode=rwc")
        } else {
            url.to_owned()
        };
        let opts = AnyConnectOptions::from_str(&url)?;
        // SQLite has one writer: one connection queues writers in the pool (FIFO) instead
        // of letting them collide and back off in the busy handler (tens of ms at p99).
        let max_connections = if backend == Backend::Sqlite { 1 } else { 8 };
        let mut pool_opts = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            let pragma = synchronous.pragma();
            pool_opts = pool_opts.after_connect(move |conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode=WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout=10000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(pragma).execute(&mut *conn).await?;
                    Ok(())
                })
            });
        }
        let pool = pool_opts.connect_with(opts).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store {
            pool,
            backend,
            clock,
            locks: std::sync::Arc::new(template_locks::LocalLocks::new(max_connections)),
        })
    }

    /// Now, by the receiver's clock (ms since the Unix epoch).
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Rows of `select` (a query with a `WHERE` clause), narrowed by `AND {column} = $1` when
    /// `value` is given, then ordered by `order` (if any).
    pub(crate) async fn fetch_where(
        &self,
        select: &str,
        column: &str,
        value: Option<&str>,
        order: &str,
    ) -> anyhow::Result<Vec<sqlx::any::AnyRow>> {
        let mut sql = select.to_owned();
        if value.is_some() {
            sql.push_str(&format!(" AND {column} = $1"));
        }
        if !order.is_empty() {
            sql.push_str(&format!(" ORDER BY {order}"));
        }
        let mut q = sqlx::query(&sql);
        if let Some(v) = value {
            q = q.bind(v);
        }
        Ok(q.fetch_all(&self.pool).await?)
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").fetch_one(&self.pool).await.is_ok()
    }

    /// Records deliveries and enqueues their jobs in one transaction. Returns, per delivery,
    /// whether it was new (a repeated id changes nothing). The hooks call this through
    /// [`DeliveryLog`], which puts many requests' deliveries in one transaction.
    ///
    /// Rows are written in one global order (deliveries by id, then jobs by kind and dedupe
    /// key), so two transactions (two batches, two replicas) that touch the same keys wait
    /// for each other instead of deadlocking; of equal ids the first given is the new one.
    pub async fn record_deliveries(
        &self,
        deliveries: &[&(NewDelivery, Vec<NewJob>)],
    ) -> anyhow::Result<Vec<bool>> {
        let now = self.now();
        let mut order: Vec<usize> = (0..deliveries.len()).collect();
        order.sort_by(|&a, &b| deliveries[a].0.id.cmp(&deliveries[b].0.id));
        let mut tx = self.pool.begin().await?;
        let mut fresh = vec![false; deliveries.len()];
        for &i in &order {
            let d = &deliveries[i].0;
            let n = sqlx::query(
                "INSERT INTO deliveries (id, source, event_type, body_sha256, received_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&d.id)
            .bind(&d.source)
            .bind(&d.event_type)
            .bind(&d.body_sha256)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            fresh[i] = n == 1;
        }
        let mut jobs: Vec<&NewJob> = (0..deliveries.len())
            .filter(|&i| fresh[i])
            .flat_map(|i| deliveries[i].1.iter())
            .collect();
        jobs.sort_by(|a, b| {
            (a.kind.as_str(), &a.dedupe_key).cmp(&(b.kind.as_str(), &b.dedupe_key))
        });
        for j in jobs {
            jobs::insert(&mut tx, j, now).await?;
        }
        tx.commit().await?;
        Ok(fresh)
    }
}

/// Proof of holding a singleton lock (released when dropped). On PostgreSQL this is a
/// transaction-scoped advisory lock, so several replicas never run the same singleton at
/// once; SQLite serves one instance, so the lock is trivially held.
#[derive(Debug)]
pub struct Singleton {
    _tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
}

/// Advisory-lock keys of the singletons.
pub const RECONCILER_LOCK: i64 = 0x706e_7263; // "pnrc"

impl Store {
    /// Takes the singleton `key` if no other instance holds it.
    pub async fn singleton(&self, key: i64) -> anyhow::Result<Option<Singleton>> {
        match self.backend {
            Backend::Sqlite => Ok(Some(Singleton { _tx: None })),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                let got: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                Ok(got.then_some(Singleton { _tx: Some(tx) }))
            }
        }
    }
}

/// SQLite's durability (`PRAGMA synchronous` in WAL mode), chosen in `database_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synchronous {
    /// Each commit is on disk before it is answered: survives a power loss.
    Full,
    /// Commits reach the disk at checkpoints: survives a process crash, not a power loss.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "PRAGMA synchronous=FULL",
            Synchronous::Normal => "PRAGMA synchronous=NORMAL",
        }
    }
}

#[cfg(test)]
mod durability {
    use super::Store;

    async fn synchronous(url: &str) -> i64 {
        let s = Store::connect(url).await.unwrap();
        sqlx::query_scalar::<_, i64>("PRAGMA synchronous")
            .fetch_one(&s.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn sqlite_commits_survive_a_power_loss_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db");
        let url = format!("sqlite://{}", db.display());
        assert_eq!(synchronous(&url).await, 2, "FULL by default");
        assert_eq!(synchronous(&format!("{url}?synchronous=normal")).await, 1);
        assert_eq!(synchronous(&format!("{url}?synchronous=FULL")).await, 2);
        let e = Store::connect(&format!("{url}?synchronous=off"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("synchronous=\"off\""), "{e}");
    }
}
