//! One recomputation of a template at a time, across replicas (ARCHITECTURE.md §8).
//!
//! A [`TemplateLock`] is the right to read a template's inputs and write its served state: on
//! PostgreSQL a transaction-scoped advisory lock keyed by the template (taken before the
//! inputs are read, released when the transaction that writes the state commits, or when
//! the holder's connection dies), in this process a mutex per template (SQLite's replicas are
//! one process). Whoever holds it reads the inputs after the previous holder committed, so
//! the states a template serves follow the inputs in commit order and the sequence only
//! moves forward; the compare-and-set on the sequence stays as the last guard.

use super::{Backend, Store};
use sqlx::Row;
use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// The advisory-lock class of template recomputations (`pg_advisory_xact_lock(class,
/// hashtext(template_id))`): "pnds".
const LOCK_CLASS: i32 = 0x706e_6473;

/// How long a recomputation waits for another replica's before it fails (and its job is
/// retried).
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '60s'";

/// Templates probed per transaction when choosing which to recompute (each probe holds an
/// advisory lock until that transaction ends).
const PROBE_CHUNK: i64 = 256;

/// This process's per-template mutexes, and a bound on the lock transactions it holds at
/// once (each keeps a pooled connection while the inputs are read through others).
#[derive(Debug)]
pub(crate) struct LocalLocks {
    by_template: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    connections: Arc<Semaphore>,
}

impl LocalLocks {
    pub(crate) fn new(max_connections: u32) -> LocalLocks {
        LocalLocks {
            by_template: Mutex::default(),
            connections: Arc::new(Semaphore::new((max_connections as usize / 2).max(1))),
        }
    }

    fn of(&self, template: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.by_template.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 1024 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(template.to_owned()).or_default().clone()
    }

    /// Whether a recomputation of `template` is in flight in this process.
    fn busy(&self, template: &str) -> bool {
        self.of(template).try_lock().is_err()
    }
}

/// Held while one template is recomputed; consumed by [`Store::record_computation`], whose
/// transaction it is on PostgreSQL. Dropped without recording, it releases everything.
pub struct TemplateLock {
    pub(super) tx: Option<sqlx::Transaction<'static, sqlx::Any>>,
    _permit: Option<OwnedSemaphorePermit>,
    _local: OwnedMutexGuard<()>,
}

impl std::fmt::Debug for TemplateLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateLock").finish_non_exhaustive()
    }
}

impl Store {
    /// Waits for the right to recompute `template` (see the module docs).
    pub async fn lock_template(
        &self,
        template: &super::TemplateId,
    ) -> anyhow::Result<TemplateLock> {
        let local = self.locks.of(template).lock_owned().await;
        let (tx, permit) = match self.backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let permit = self.locks.connections.clone().acquire_owned().await?;
                let mut tx = self.pool.begin().await?;
                sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
                sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1, hashtext($2))) l")
                    .bind(LOCK_CLASS)
                    .bind(template)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "waiting for another replica's recomputation of template {template}: {e}"
                        )
                    })?;
                (Some(tx), Some(permit))
            }
        };
        Ok(TemplateLock {
            tx,
            _permit: permit,
            _local: local,
        })
    }

    /// The templates whose desired state a change to the `live` versions of `modules` may
    /// change: those whose latest computation's closure names one of them, that assign one
    /// directly, that have no recorded closure, or whose recomputation is in flight (it may
    /// have read its inputs before the change committed; it is recomputed after it).
    pub async fn templates_reaching(
        &self,
        modules: &BTreeSet<String>,
    ) -> anyhow::Result<BTreeSet<super::TemplateId>> {
        let mut out = BTreeSet::new();
        for m in modules {
            for r in sqlx::query("SELECT template_id FROM assignments WHERE module = $1")
                .bind(m)
                .fetch_all(&self.pool)
                .await?
            {
                out.insert(r.try_get("template_id")?);
            }
        }
        let mut after = String::new();
        loop {
            // Probe first, read closures after: a recomputation not in flight at its probe
            // either committed its closure before the read or reads its inputs after the
            // change.
            let mut tx = self.pool.begin().await?;
            let probed = match self.backend {
                Backend::Postgres => sqlx::query(
                    "SELECT id, pg_try_advisory_xact_lock($1, hashtext(id)) AS free
                     FROM (SELECT id FROM templates WHERE id > $2 ORDER BY id LIMIT $3) q",
                )
                .bind(LOCK_CLASS)
                .bind(&after)
                .bind(PROBE_CHUNK)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get::<super::TemplateId, _>("id")?,
                        r.try_get::<bool, _>("free")?,
                    ))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
                Backend::Sqlite => {
                    sqlx::query("SELECT id FROM templates WHERE id > $1 ORDER BY id LIMIT $2")
                        .bind(&after)
                        .bind(PROBE_CHUNK)
                        .fetch_all(&mut *tx)
                        .await?
                        .iter()
                        .map(|r| Ok((r.try_get::<super::TemplateId, _>("id")?, true)))
                        .collect::<anyhow::Result<Vec<_>>>()?
                }
            };
            let Some(last) = probed.last().map(|(id, _)| id.clone()) else {
                break;
            };
            let mut closures = HashMap::new();
            for (id, free) in &probed {
                if !free || self.locks.busy(id) {
                    out.insert(id.clone());
                }
            }
            for r in sqlx::query(
                "SELECT template_id, closure FROM template_findings WHERE template_id > $1 AND template_id <= $2",
            )
            .bind(&after)
            .bind(&last)
            .fetch_all(&mut *tx)
            .await?
            {
                closures.insert(
                    r.try_get::<String, _>("template_id")?,
                    r.try_get::<Option<String>, _>("closure")?,
                );
            }
            tx.commit().await?;
            for (id, _) in &probed {
                let reaches = match closures.get(id.as_str()).cloned().flatten() {
                    Some(text) => serde_json::from_str::<Vec<String>>(&text)
                        .map_or(true, |c| c.iter().any(|m| modules.contains(m))),
                    None => true,
                };
                if reaches {
                    out.insert(id.clone());
                }
            }
            after = last.to_string();
        }
        Ok(out)
    }
}
