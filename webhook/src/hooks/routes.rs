//! The hooks' HTTP handlers: authenticate (constant time), read the body up to the limit,
//! parse, record the deliveries and their jobs in one transaction, answer. Rejected requests
//! get a 4xx JSON reason and change nothing.

use super::{HookError, Parsed, auth};
use crate::http::{AppState, error};
use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::json;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hooks/distribution", post(distribution))
        .route("/hooks/gitea", post(gitea))
        .route("/hooks/harbor", post(harbor))
}

/// Reads the body up to the configured limit (413 past it).
async fn body(s: &AppState, req: Request) -> Result<(HeaderMap, Bytes), Response> {
    let (parts, body) = req.into_parts();
    let limit = s.config.hooks.body_limit;
    match axum::body::to_bytes(Body::new(body), limit).await {
        Ok(b) => Ok((parts.headers, b)),
        Err(_) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than the {limit} bytes accepted"),
        )),
    }
}

fn hdr<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Records a parsed request and answers.
async fn finish(s: &AppState, source: &str, parsed: Result<Parsed, HookError>) -> Response {
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            let (status, code) = match &e {
                HookError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
                HookError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                HookError::UnsupportedMediaType(_) => {
                    (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                }
            };
            s.metrics.delivery(source, code);
            return error(status, code, e.to_string());
        }
    };
    if parsed.ignored {
        s.metrics.delivery(source, "ignored");
        return StatusCode::NO_CONTENT.into_response();
    }
    let jobs: usize = parsed.deliveries.iter().map(|(_, j)| j.len()).sum();
    match s.deliveries.record(super::rows(parsed)).await {
        Ok(fresh) => {
            // Durable from here on: a crash before the answer leaves the sender to resend,
            // and the delivery id makes the resend a duplicate (tests/kill.rs stalls here).
            crate::faults::point("hooks.after_commit").await;
            let new = fresh.iter().filter(|f| **f).count();
            let dup = fresh.len() - new;
            s.metrics
                .delivery(source, if new > 0 { "accepted" } else { "duplicate" });
            let status = if new > 0 {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            (status, Json(json!({"accepted": new, "duplicates": dup, "jobs": if new > 0 { jobs } else { 0 }}))).into_response()
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "recording a delivery");
            s.metrics.delivery(source, "error");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "could not record the delivery; retry",
            )
        }
    }
}

async fn distribution(State(s): State<AppState>, req: Request) -> Response {
    let (h, b) = match body(&s, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let parsed = (|| {
        let Some(token) = &s.config.hooks.distribution_token else {
            return Err(HookError::Unauthorized(
                "the distribution hook has no token configured".into(),
            ));
        };
        if !auth::header_matches(hdr(&h, "authorization"), &format!("Bearer {token}")) {
            return Err(HookError::Unauthorized(
                "missing or wrong Authorization header".into(),
            ));
        }
        let ct = hdr(&h, "content-type").unwrap_or_default();
        if !(ct.starts_with("application/vnd.docker.distribution.events.")
            || ct.starts_with("application/json"))
        {
            return Err(HookError::UnsupportedMediaType(format!(
                "Content-Type {ct:?}; expected application/vnd.docker.distribution.events.v1+json"
            )));
        }
        super::distribution::parse(&b, &s.repos)
    })();
    finish(&s, "distribution", parsed).await
}

async fn gitea(State(s): State<AppState>, req: Request) -> Response {
    let (h, b) = match body(&s, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let parsed = (|| {
        if s.config.hooks.gitea_secrets.is_empty() {
            return Err(HookError::Unauthorized(
                "the gitea hook has no secret configured".into(),
            ));
        }
        let sig = hdr(&h, "x-gitea-signature").unwrap_or_default();
        if !auth::hmac_matches(&s.config.hooks.gitea_secrets, &b, sig) {
            return Err(HookError::Unauthorized(
                "X-Gitea-Signature does not match the body".into(),
            ));
        }
        let event = hdr(&h, "x-gitea-event-type")
            .or_else(|| hdr(&h, "x-gitea-event"))
            .ok_or_else(|| HookError::BadRequest("missing X-Gitea-Event-Type".into()))?;
        let delivery = hdr(&h, "x-gitea-delivery").unwrap_or_default();
        super::gitea::parse(event, delivery, &b, &s.repos)
    })();
    finish(&s, "gitea", parsed).await
}

async fn harbor(State(s): State<AppState>, req: Request) -> Response {
    let (h, b) = match body(&s, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let parsed = (|| {
        let Some(expected) = &s.config.hooks.harbor_auth else {
            return Err(HookError::Unauthorized(
                "the harbor hook has no auth header configured".into(),
            ));
        };
        if !auth::header_matches(hdr(&h, "authorization"), expected) {
            return Err(HookError::Unauthorized(
                "missing or wrong Authorization header".into(),
            ));
        }
        let ct = hdr(&h, "content-type").unwrap_or("application/json");
        super::harbor::parse(ct, &b, &s.repos)
    })();
    finish(&s, "harbor", parsed).await
}
