//! The operator's web console at `/`: server-rendered pages of modules, versions, templates
//! and the fleet, and forms that act through the same services as the API, MCP and PR
//! comments (`via = web` in the audit trail).
//!
//! - `session.rs`: login with an API token → a session cookie (`HttpOnly`,
//!   `SameSite=Strict`), the CSRF token of every form, the `Origin` check of every POST;
//! - `act.rs`: every call from a page into the receiver's domain (promote, yank, assign,
//!   unassign, retry, drift), in one place;
//! - `pages/`: one file per page family; each handler authenticates, parses, reads (the
//!   store's paginated reads, `store/console.rs`) or calls `act`, and renders;
//! - `chart.rs`: SVG charts drawn on the server (plotters), from `sampler.rs`'s samples;
//! - `view.rs`: what every page shares (layout data, errors, formatting).
//!
//! Templates are in `webhook/templates/web/` (askama: checked at compile time, HTML escaped
//! by default). No JavaScript: every page reads and works without it.

pub mod act;
pub mod chart;
mod pages;
pub mod sampler;
mod session;
mod view;

use crate::http::AppState;
use axum::{
    Router,
    http::header,
    response::IntoResponse,
    routing::{get, post},
};

/// The console's routes (served when `[web] enabled`, the default).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::modules::index))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/modules/{name}", get(pages::modules::module))
        .route(
            "/modules/{name}/adoption.svg",
            get(pages::modules::adoption_chart),
        )
        .route("/versions/{id}", get(pages::versions::version))
        .route("/versions/{id}/promote", post(pages::versions::promote))
        .route("/versions/{id}/yank", post(pages::versions::yank))
        .route("/dead-letters/{id}/retry", post(pages::modules::retry))
        .route("/templates", get(pages::templates::list))
        .route("/templates/{id}", get(pages::templates::template))
        .route("/templates/{id}/assign", post(pages::templates::assign))
        .route("/templates/{id}/unassign", post(pages::templates::unassign))
        .route("/fleet", get(pages::fleet::fleet))
        .route("/fleet/drift.svg", get(pages::fleet::drift_chart))
        .route("/instances/{id}", get(pages::fleet::instance))
        .route("/static/console.css", get(stylesheet))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::same_origin,
        ))
        .layer(axum::middleware::map_response(view::security_headers))
        .with_state(state)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("console.css"),
    )
}
