//! `/mcp`: the walkthrough's tool calls (`system_list_module_versions`, …) over the Model
//! Context Protocol, streamable HTTP transport, with the official Rust SDK (`rmcp`).
//!
//! MCP is a second edge on the same code as `/api/v1`, not a second implementation: every
//! tool ([`tools`]) calls the REST handler function (or the function the handler calls) with
//! the caller's own headers, so roles, the promotion policy, audit (`via = mcp`, the token's
//! name) and error texts are the API's. What MCP adds is the shape: typed arguments and
//! answers with JSON Schemas, and business failures as tool errors (`isError`) rather than
//! HTTP statuses.
//!
//! Two checks run before the protocol sees a request: the bearer token ([`require_token`],
//! 401 without a valid one, as on `/api/v1`) and `Host`/`Origin` against `[mcp]` (rmcp's own
//! DNS-rebinding guard, 403).

pub mod tools;

use crate::{
    config::Role,
    http::{AppState, auth::require},
};
use axum::{
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The `/mcp` routes, for `app::router` to merge. Cancelling `stop` ends the open event
/// streams, so a graceful shutdown does not wait for clients that keep one open.
pub fn router(state: AppState, stop: CancellationToken) -> axum::Router {
    let cfg = &state.config.mcp;
    let mut transport = StreamableHttpServerConfig::default()
        .with_allowed_hosts(cfg.allowed_hosts.clone())
        .with_allowed_origins(cfg.allowed_origins.clone())
        .enforce_origin_validation();
    transport.cancellation_token = stop;
    let tools_state = state.clone();
    let service = StreamableHttpService::new(
        move || Ok(tools::Tools::new(tools_state.clone())),
        Arc::new(LocalSessionManager::default()),
        transport,
    );
    axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(state, require_token))
}

/// Every MCP request needs an API token with at least the `read` role; a tool that changes
/// state checks for `operator` itself (as does the service it calls), so a read token gets a
/// tool error naming the role instead of a protocol failure.
///
/// The refusal is sent before the request's body is read, so the connection cannot be used
/// again: it says `Connection: close`, or a client that pools connections (httpx) sends its
/// next request on a connection the server is closing and sees it dropped unanswered.
async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match require(&s, req.headers(), Role::Read) {
        Ok(_) => next.run(req).await,
        Err(e) => {
            let mut r = e.into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"module-webhook\""),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}
