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

/// JSON Schema `pattern` of module names and the ids that follow the same rule (templates,
/// instances): `ModuleName::parse`'s rule, `NAME_RULE`, for the OpenAPI document.
pub(crate) const NAME_PATTERN: &str = r"^[a-z0-9][a-z0-9-]{0,62}$";
/// JSON Schema `pattern` of Debian package names: `powernode_module::package::valid_name`.
pub(crate) const PACKAGE_PATTERN: &str = r"^[a-z0-9][a-z0-9+.-]+$";
use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{delete, get, post},
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
        .route("/pins", get(pins::list))
        .route("/pins/{module}/confirm", post(pins::confirm))
        .route("/pins/{module}/reject", post(pins::reject))
        .route("/templates", get(templates::list).post(templates::create))
        .route("/templates/{id}", get(templates::get))
        .route("/templates/{id}/assignments", post(templates::assign))
        .route(
            "/templates/{id}/assignments/{module_name}",
            delete(templates::unassign),
        )
        .route(
            "/templates/{id}/desired-state",
            get(templates::desired_state),
        )
        .route("/templates/{id}/audit", get(templates::audit_trail))
        .route("/signing-key", get(signing_key))
        .route("/signing-keys", get(signing_keys::list))
        .route("/instances", post(instances::register))
        .route(
            "/instances/{id}",
            get(instances::get).delete(instances::delete),
        )
        .route("/instances/{id}/token", post(instances::rotate_token))
        .route(
            "/instances/{id}/desired-state",
            get(instances::desired_state),
        )
        .route(
            "/instances/{id}/report",
            post(instances::report).layer(DefaultBodyLimit::max(instances::REPORT_BODY_LIMIT)),
        )
        .route("/instances/{id}/drift", get(instances::drift))
        .route("/drift", get(instances::summary))
        .route("/packages/{name}", get(packages::instances))
        .route("/validate", post(validate::validate))
        .route(
            "/repos/{owner}/{repo}/workflow-runs",
            get(workflow_runs::list),
        )
        .route("/openapi.json", get(openapi::serve))
}

/// `GET /api/v1/signing-key`: the receiver's public key (PEM), which nodes pin to verify
/// desired states. Public by design: it is what a node needs before it has anything else.
async fn signing_key(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        s.fleet.keys.current.public_pem.clone(),
    )
}
