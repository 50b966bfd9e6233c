//! Group commit of hook deliveries: many deliveries, one transaction, each still committed
//! before its answer.
//!
//! A hook's 202 promises the delivery is durable. One transaction per request makes the
//! commit (and, on SQLite, the single writer connection) the cost of every request. Here
//! requests hand their deliveries to one committer task and wait; the committer takes
//! whatever has queued up while the previous commit ran, writes it all in one transaction
//! and answers each request only after that commit. Under load a batch grows by itself;
//! alone, a request commits at once (no timer, no added latency). SQLite has one writer, so
//! it gets one committer; PostgreSQL gets [`PG_COMMITTERS`], so that while one batch waits
//! for its commit to reach the disk the next is already being written.
//!
//! A batch that fails is retried one request at a time, so one request's failure cannot
//! fail the others; a request whose own transaction fails gets the error (the route
//! answers 503 and the sender retries). Nothing is written partially: a request's
//! deliveries and jobs commit together or not at all.

use super::{NewDelivery, NewJob, Store};
use prometheus_client::metrics::counter::Counter;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

/// At most this many requests share one transaction (bounds its size and latency).
const MAX_BATCH: usize = 256;
/// Requests waiting for the committer beyond this wait for room (backpressure).
const QUEUE: usize = 4096;
/// Committers on PostgreSQL (each holds one of the pool's connections while it commits).
const PG_COMMITTERS: usize = 4;

type Deliveries = Vec<(NewDelivery, Vec<NewJob>)>;

struct Pending {
    deliveries: Deliveries,
    answer: oneshot::Sender<Result<Vec<bool>, String>>,
}

/// The handle requests record deliveries through; cheap to clone.
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    queue: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pending({} deliveries)", self.deliveries.len())
    }
}

impl DeliveryLog {
    /// Starts the committer task on the current runtime; it counts its transactions in
    /// `commits`. It ends when every handle is gone.
    pub fn start(store: Store, commits: Counter) -> DeliveryLog {
        let (queue, rx) = mpsc::channel(QUEUE);
        let committers = match store.backend {
            super::Backend::Sqlite => 1,
            super::Backend::Postgres => PG_COMMITTERS,
        };
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..committers {
            tokio::spawn(run(store.clone(), rx.clone(), commits.clone()));
        }
        DeliveryLog { queue }
    }

    /// Records `deliveries` and their jobs; returns, per delivery, whether it was new. Returns
    /// only once they are committed.
    pub async fn record(&self, deliveries: Deliveries) -> anyhow::Result<Vec<bool>> {
        let (answer, wait) = oneshot::channel();
        self.queue
            .send(Pending { deliveries, answer })
            .await
            .map_err(|_| anyhow::anyhow!("the delivery committer has stopped"))?;
        wait.await
            .map_err(|_| anyhow::anyhow!("the delivery committer stopped before answering"))?
            .map_err(anyhow::Error::msg)
    }
}

/// One committer: takes what has queued up (the others wait for the queue meanwhile), then
/// commits it while another committer may take the next batch.
async fn run(store: Store, rx: Arc<Mutex<mpsc::Receiver<Pending>>>, commits: Counter) {
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if rx.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        commit(&store, batch, &commits).await;
    }
}

/// Commits `batch` in one transaction and answers each request; on failure, each alone.
async fn commit(store: &Store, batch: Vec<Pending>, commits: &Counter) {
    let all: Vec<&(NewDelivery, Vec<NewJob>)> =
        batch.iter().flat_map(|p| p.deliveries.iter()).collect();
    match store.record_deliveries(&all).await {
        Ok(fresh) => {
            commits.inc();
            let mut fresh = fresh.into_iter();
            for p in batch {
                let mine: Vec<bool> = fresh.by_ref().take(p.deliveries.len()).collect();
                let _ = p.answer.send(Ok(mine));
            }
        }
        Err(e) if batch.len() == 1 => {
            for p in batch {
                let _ = p.answer.send(Err(format!("{e:#}")));
            }
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), requests = batch.len(), "group commit failed; committing one by one");
            for p in batch {
                let one: Vec<&(NewDelivery, Vec<NewJob>)> = p.deliveries.iter().collect();
                let r = store
                    .record_deliveries(&one)
                    .await
                    .map_err(|e| format!("{e:#}"));
                if r.is_ok() {
                    commits.inc();
                }
                let _ = p.answer.send(r);
            }
        }
    }
}
