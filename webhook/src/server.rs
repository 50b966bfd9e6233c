//! The HTTP server: what keeps slow, idle or too many clients from holding the receiver
//! (`[server]`, `config/server.rs`).
//!
//! - At most `max_connections` connections are open: the accept loop takes a permit before
//!   it accepts, so file descriptors stay bounded and further clients wait in the kernel's
//!   queue instead of failing `accept` (EMFILE) and everything after it.
//! - hyper's header-read timer closes a connection that has not sent a whole request head
//!   within `header_read_timeout_secs`, whether half-sent or idle between requests.
//! - A request body that pauses longer than `body_timeout_secs` fails; a request whose
//!   answer has not started after `request_timeout_secs` gets `408`.
//! - At most `max_concurrent_requests` requests are handled at once, except the probes
//!   (`/healthz`, `/readyz`, `/metrics`), which are never held back.
//!
//! axum's own `serve` cannot set a header-read timeout (it has no timer), hence this loop,
//! the same hyper connection builder with the timer set.

use crate::config::ServerConfig;
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    middleware::{self, Next},
    response::Response,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::{future::Future, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::Semaphore};
use tower_http::timeout::{TimeoutBody, TimeoutLayer};

/// The request and body timeouts, around every route of `r`.
pub fn timeouts(r: Router, cfg: &ServerConfig) -> Router {
    let body = Duration::from_secs(cfg.body_timeout_secs);
    r.layer(middleware::from_fn_with_state(body, body_timeout))
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_secs),
        ))
}

/// The concurrency limit, around every route of `r` (one limit shared by all of them).
pub fn concurrency_limit(r: Router, cfg: &ServerConfig) -> Router {
    let permits = Arc::new(Semaphore::new(cfg.max_concurrent_requests));
    r.layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(
        permits,
    ))
}

async fn body_timeout(State(d): State<Duration>, req: Request, next: Next) -> Response {
    next.run(req.map(|b| Body::new(TimeoutBody::new(d, b))))
        .await
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets
/// in-flight requests finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cfg: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(cfg.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_read_timeout_secs));
    let service = hyper_util::service::TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a little
                    // rather than spin; the permit goes back.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = builder.serve_connection(TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
