//! `/api/v1`: bearer tokens with roles (`read`, `operator`, `break-glass`), one file per
//! resource, typed answers; errors as `{error, message}` ([`crate::http::ApiError`]).

pub mod dead_letters;
pub mod instances;
pub mod modules;
pub mod openapi;
pub mod packages;
pub mod pins;
pub mod signing_keys;
pub mod templates;
pub mod validate;
pub mod versions;
pub mod workflow_runs;

use crate::http::AppState;

pub(crate) use crate::catalogue::PACKAGE_PATTERN;
use axum::{Router, routing::MethodRouter};

/// `/api/v1`, mounted from the route table (`openapi/operations.rs`) that also builds the
/// OpenAPI document: a path's methods are merged into one method router.
pub fn router() -> Router<AppState> {
    let mut paths: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for o in openapi::routes() {
        match paths.iter_mut().find(|(p, _)| *p == o.path) {
            Some((_, mr)) => *mr = std::mem::take(mr).merge(o.route),
            None => paths.push((o.path, o.route)),
        }
    }
    paths
        .into_iter()
        .fold(Router::new(), |r, (path, mr)| r.route(path, mr))
}

/// `GET /api/v1/signing-key`: the receiver's public key (PEM), which nodes pin to verify
/// desired states. Public by design: it is what a node needs before it has anything else.
pub(crate) async fn signing_key(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        s.fleet.keys.current.public_pem.clone(),
    )
}
