//! Group commit: many requests' writes, one transaction, each still committed before its
//! answer. Hook deliveries ([`DeliveryLog`]) and instance reports ([`ReportLog`]) go through
//! it.
//!
//! A hook's 202 and a report's 200 promise the write is durable. One transaction per request
//! makes the commit (and, on SQLite, the single writer connection) the cost of every request.
//! Here requests hand their writes to one committer task and wait; the committer takes
//! whatever has queued up while the previous commit ran, writes it all in one transaction
//! and answers each request only after that commit. Under load a batch grows by itself;
//! alone, a request commits at once (no timer, no added latency). SQLite has one writer, so
//! it gets one committer; PostgreSQL gets [`PG_COMMITTERS`], so that while one batch waits
//! for its commit to reach the disk the next is already being written.
//!
//! A batch that fails is retried one request at a time, so one request's failure cannot
//! fail the others; a request whose own transaction fails gets the error (the route
//! answers 503 and the sender retries). Nothing is written partially: a request's writes
//! commit together or not at all.

use super::{JudgedReport, NewDelivery, NewJob, Store};
use prometheus_client::metrics::counter::Counter;
use std::{future::Future, sync::Arc};
use tokio::sync::{Mutex, mpsc, oneshot};

/// At most this many requests share one transaction (bounds its size and latency).
const MAX_BATCH: usize = 256;
/// Requests waiting for the committer beyond this wait for room (backpressure).
const QUEUE: usize = 4096;
/// Committers on PostgreSQL (each holds one of the pool's connections while it commits).
const PG_COMMITTERS: usize = 4;

/// What one kind of write commits in one transaction.
pub trait Batch: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    /// Per item, what its request is told (a delivery: whether it was new; a report: whether
    /// the instance exists).
    type Out: Send + 'static;
    /// Writes every item in one transaction; one answer per item, in order.
    fn commit(
        store: &Store,
        items: &[&Self::Item],
    ) -> impl Future<Output = anyhow::Result<Vec<Self::Out>>> + Send;
}

/// Hook deliveries and the jobs they enqueue.
#[derive(Debug)]
pub struct Deliveries;

impl Batch for Deliveries {
    type Item = (NewDelivery, Vec<NewJob>);
    type Out = bool;
    async fn commit(store: &Store, items: &[&Self::Item]) -> anyhow::Result<Vec<bool>> {
        store.record_deliveries(items).await
    }
}

/// Instance reports, each with its drift verdict.
#[derive(Debug)]
pub struct Reports;

impl Batch for Reports {
    type Item = JudgedReport;
    type Out = bool;
    async fn commit(store: &Store, items: &[&Self::Item]) -> anyhow::Result<Vec<bool>> {
        store.record_reports(items).await
    }
}

/// The handle hook requests record deliveries through.
pub type DeliveryLog = GroupCommit<Deliveries>;
/// The handle instance reports are recorded through.
pub type ReportLog = GroupCommit<Reports>;

struct Pending<B: Batch> {
    items: Vec<B::Item>,
    answer: oneshot::Sender<Result<Vec<B::Out>, String>>,
}

/// The handle requests write through; cheap to clone.
pub struct GroupCommit<B: Batch> {
    queue: mpsc::Sender<Pending<B>>,
}

impl<B: Batch> Clone for GroupCommit<B> {
    fn clone(&self) -> Self {
        GroupCommit {
            queue: self.queue.clone(),
        }
    }
}

impl<B: Batch> std::fmt::Debug for GroupCommit<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupCommit<{}>", std::any::type_name::<B>())
    }
}

impl<B: Batch> GroupCommit<B> {
    /// Starts the committer tasks on the current runtime; they count their transactions in
    /// `commits`. They end when every handle is gone.
    pub fn start(store: Store, commits: Counter) -> GroupCommit<B> {
        let (queue, rx) = mpsc::channel(QUEUE);
        let committers = match store.backend {
            super::Backend::Sqlite => 1,
            super::Backend::Postgres => PG_COMMITTERS,
        };
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..committers {
            tokio::spawn(run::<B>(store.clone(), rx.clone(), commits.clone()));
        }
        GroupCommit { queue }
    }

    /// Writes `items`; returns, per item, its answer. Returns only once they are committed.
    pub async fn record(&self, items: Vec<B::Item>) -> anyhow::Result<Vec<B::Out>> {
        let (answer, wait) = oneshot::channel();
        self.queue
            .send(Pending { items, answer })
            .await
            .map_err(|_| anyhow::anyhow!("the group committer has stopped"))?;
        wait.await
            .map_err(|_| anyhow::anyhow!("the group committer stopped before answering"))?
            .map_err(anyhow::Error::msg)
    }
}

/// One committer: takes what has queued up (the others wait for the queue meanwhile), then
/// commits it while another committer may take the next batch.
async fn run<B: Batch>(store: Store, rx: Arc<Mutex<mpsc::Receiver<Pending<B>>>>, commits: Counter) {
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if rx.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        commit::<B>(&store, batch, &commits).await;
    }
}

/// Commits `batch` in one transaction and answers each request; on failure, each alone.
async fn commit<B: Batch>(store: &Store, batch: Vec<Pending<B>>, commits: &Counter) {
    let all: Vec<&B::Item> = batch.iter().flat_map(|p| p.items.iter()).collect();
    match B::commit(store, &all).await {
        Ok(out) => {
            commits.inc();
            let mut out = out.into_iter();
            for p in batch {
                let mine: Vec<B::Out> = out.by_ref().take(p.items.len()).collect();
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
                let one: Vec<&B::Item> = p.items.iter().collect();
                let r = B::commit(store, &one).await.map_err(|e| format!("{e:#}"));
                if r.is_ok() {
                    commits.inc();
                }
                let _ = p.answer.send(r);
            }
        }
    }
}
