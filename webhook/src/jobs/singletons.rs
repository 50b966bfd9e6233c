//! Work that one replica does at a time, under a PostgreSQL advisory lock (SQLite serves one
//! instance): the reconciler, which lists the registry for pushes the hooks missed, and the
//! promotion timer, which lets soak times elapse, requests expire and `auto` stages advance.

use crate::{ingest::Ctx, jobs::reconcile, promotion::Engine, store::RECONCILER_LOCK};
use std::time::Duration;
use tokio::sync::watch;

/// One pass, on the replica that holds the lock (the others skip it): reconcile, then
/// re-evaluate pending promotions. The lock is held until both are done, so no two replicas
/// re-evaluate (and call Gitea for) the same requests at once; each transition is a
/// compare-and-set besides, so even a lock lost mid-pass cannot apply one twice.
pub async fn tick(ctx: &Ctx, engine: Option<&Engine>) {
    let lock = match ctx.store.singleton(RECONCILER_LOCK).await {
        Ok(Some(held)) => held,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "taking the singleton lock");
            return;
        }
    };
    match reconcile::reconcile(ctx).await {
        Ok(n) if n > 0 => tracing::info!(enqueued = n, "reconcile"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "reconcile"),
    }
    if let Some(engine) = engine
        && let Err(e) = engine.reevaluate(None).await
    {
        tracing::warn!(error = %e, "re-evaluating pending promotions");
    }
    drop(lock);
}

/// Ticks every `interval` until `stop` is set.
pub async fn run_until(
    ctx: Ctx,
    engine: Option<Engine>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tick(&ctx, engine.as_ref()).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}
