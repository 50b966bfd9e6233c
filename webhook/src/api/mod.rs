//! `/api/v1`: bearer tokens with roles (`read`, `operator`, `break-glass`), one file per
//! resource, typed answers; errors as `{error, message}` ([`crate::http::ApiError`]).

mod dead_letters;
mod modules;
mod versions;

use crate::http::AppState;
use axum::{
    Router,
    routing::{get, post},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/modules", get(modules::list))
        .route("/modules/{name}/versions", get(versions::of_module))
        .route("/versions/{id}", get(versions::get))
        .route("/versions/{id}/audit", get(versions::audit))
        .route("/versions/{id}/promote", post(versions::promote))
        .route("/versions/{id}/yank", post(versions::yank))
        .route("/dead-letters", get(dead_letters::list))
        .route("/dead-letters/{id}/retry", post(dead_letters::retry))
}
