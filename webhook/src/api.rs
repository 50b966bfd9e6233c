//! `/api/v1`: bearer tokens with roles (`read`, `operator`, `break-glass`); JSON errors as
//! `{error, message}`.

use crate::{
    config::Role,
    server::{AppState, error},
    store::Lifecycle,
};
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/modules", get(modules))
        .route("/modules/{name}/versions", get(versions))
        .route("/versions/{id}", get(version))
        .route("/versions/{id}/audit", get(audit))
        .route("/versions/{id}/promote", post(promote))
        .route("/versions/{id}/yank", post(yank))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/{id}/retry", post(retry))
}

/// The role of the presented bearer token, compared in constant time.
fn role(s: &AppState, h: &HeaderMap) -> Option<Role> {
    let presented = h
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    s.tokens()
        .iter()
        .find(|t| bool::from(t.token.as_bytes().ct_eq(presented.as_bytes())))
        .map(|t| t.role)
}

#[allow(clippy::result_large_err)] // an axum response is the natural error of a handler helper
fn require(s: &AppState, h: &HeaderMap, need: Role) -> Result<Role, Response> {
    match role(s, h) {
        None => Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "give a valid API token as `Authorization: Bearer …`",
        )),
        Some(r) if r < need => Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {need:?} role; the token has {r:?}"),
        )),
        Some(r) => Ok(r),
    }
}

/// The version `id`, or the 404/500 response to answer instead.
#[allow(clippy::result_large_err)] // an axum response is the natural error of a handler helper
async fn find_version(s: &AppState, id: &str) -> Result<crate::store::VersionRow, Response> {
    match s.store.version_by_id(id).await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no version {id}"),
        )),
        Err(e) => Err(internal(e)),
    }
}

fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "api");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request failed; see the server log",
    )
}

async fn modules(State(s): State<AppState>, h: HeaderMap) -> Response {
    if let Err(r) = require(&s, &h, Role::Read) {
        return r;
    }
    match s.store.modules().await {
        Ok(m) => Json(json!({"modules": m.iter().map(|(n, r, c)| json!({"name": n, "repository": r, "versions": c})).collect::<Vec<_>>()})).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct StateFilter {
    state: Option<String>,
}

async fn versions(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<StateFilter>,
) -> Response {
    if let Err(r) = require(&s, &h, Role::Read) {
        return r;
    }
    let state = match q.state.as_deref().map(str::parse::<Lifecycle>).transpose() {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    match s.store.versions_of(&name, state).await {
        Ok(v) => Json(json!({"module": name, "versions": v})).into_response(),
        Err(e) => internal(e),
    }
}

async fn version(State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = require(&s, &h, Role::Read) {
        return r;
    }
    match find_version(&s, &id).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn audit(State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = require(&s, &h, Role::Read) {
        return r;
    }
    if let Err(r) = find_version(&s, &id).await {
        return r;
    }
    match s.store.audit_of(&id).await {
        Ok(a) => Json(json!({"version": id, "audit": a})).into_response(),
        Err(e) => internal(e),
    }
}

async fn dead_letters(State(s): State<AppState>, h: HeaderMap) -> Response {
    if let Err(r) = require(&s, &h, Role::Read) {
        return r;
    }
    match s.store.dead_letters().await {
        Ok(j) => Json(json!({"dead_letters": j})).into_response(),
        Err(e) => internal(e),
    }
}

async fn retry(State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = require(&s, &h, Role::Operator) {
        return r;
    }
    match s.store.retry_dead(&id).await {
        Ok(true) => (StatusCode::ACCEPTED, Json(json!({"requeued": id}))).into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dead-lettered job {id}"),
        ),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct PromoteBody {
    to: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
struct YankBody {
    reason: String,
}

/// The name of the presented token (the actor in the audit trail).
fn token_name(s: &AppState, h: &HeaderMap) -> String {
    let presented = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    s.tokens()
        .iter()
        .find(|t| bool::from(t.token.as_bytes().ct_eq(presented.as_bytes())))
        .map(|t| t.name.clone())
        .unwrap_or_default()
}

/// API requests go through the same policy as comments. API callers have no PR, so
/// approvals cannot be gathered: only the break-glass role waives them (audited as such).
async fn decide(
    s: &AppState,
    h: &HeaderMap,
    id: &str,
    request: crate::lifecycle::Request,
) -> Response {
    let role = match require(s, h, Role::Operator) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let v = match find_version(s, id).await {
        Ok(v) => v,
        Err(r) => return r,
    };

    let evidence = crate::lifecycle::Evidence {
        requester: crate::lifecycle::Actor::Api(token_name(s, h)),
        requester_permission: Some(crate::lifecycle::Permission::Owner),
        source_commit: v.source_commit.clone(),
        break_glass: role == Role::BreakGlass,
        ..Default::default()
    };
    let promoter = crate::promotion::Promoter {
        store: s.store.clone(),
        config: s.config.promotion.clone(),
        policies: s.policies.clone(),
    };
    match promoter.request(&v, &request, evidence, "api").await {
        Ok(d @ crate::promotion::Decision::Done { .. }) => Json(json!({"version": id, "decision": d})).into_response(),
        Ok(d) => (
            StatusCode::CONFLICT,
            Json(json!({"error": "requirements_not_met", "message": "the policy does not allow this transition now", "version": id, "decision": d})),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn promote(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<PromoteBody>,
) -> Response {
    let to = match b.to.parse::<Lifecycle>() {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    let _ = b.reason;
    decide(&s, &h, &id, crate::lifecycle::Request::Promote { to }).await
}

async fn yank(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<YankBody>,
) -> Response {
    decide(
        &s,
        &h,
        &id,
        crate::lifecycle::Request::Yank { reason: b.reason },
    )
    .await
}
