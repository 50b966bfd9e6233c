//! Work that one replica does at a time, under a PostgreSQL advisory lock (SQLite serves one
//! instance): the reconciler, which lists the registry for pushes the hooks missed, and the
//! promotion timer, which lets soak times elapse, requests expire and `auto` stages advance.

use crate::{ingest::Ctx, jobs::reconcile, promotion::Engine, store::RECONCILER_LOCK};
use std::time::Duration;
use tokio::sync::watch;

/// One pass: reconcile (if this replica holds the lock), then re-evaluate promotions.
pub async fn tick(ctx: &Ctx, engine: Option<&Engine>) {
    let lock = ctx.store.singleton(RECONCILER_LOCK).await;
    let result = match &lock {
        Ok(Some(_held)) => reconcile::reconcile(ctx).await,
        Ok(None) => Ok(0),
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    drop(lock);
    match result {
        Ok(n) if n > 0 => tracing::info!(enqueued = n, "reconcile"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "reconcile"),
    }
    if let Some(engine) = engine
        && let Err(e) = engine.reevaluate(None).await
    {
        tracing::warn!(error = %e, "re-evaluating pending promotions");
    }
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
