//! What every page shares: the layout's data ([`Nav`]), the error page, response headers,
//! and the formatting of times, digests and pagination links.

use super::session::Session;
use crate::{config::Role, error::ServiceError};
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};

/// The layout's header: who is logged in, and the token its forms carry.
#[derive(Debug, Clone)]
pub struct Nav {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    /// `modules`, `templates` or `fleet`: the section shown as current.
    pub section: &'static str,
    /// The operator role: forms that act are shown.
    pub can_act: bool,
}

impl Nav {
    pub fn of(s: &Session, section: &'static str) -> Nav {
        Nav {
            user: s.caller.name.clone(),
            role: match s.caller.role {
                Role::Read => "read",
                Role::Operator => "operator",
                Role::BreakGlass => "break-glass",
            },
            csrf: s.csrf.clone(),
            section,
            can_act: s.caller.role >= Role::Operator,
        }
    }
}

/// A page that could not be shown.
#[derive(Debug)]
pub enum WebError {
    /// Not logged in: to the login page, then back to this path.
    Login(String),
    Status(StatusCode, String),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for WebError {
    fn from(e: anyhow::Error) -> Self {
        WebError::Internal(e)
    }
}

impl From<askama::Error> for WebError {
    fn from(e: askama::Error) -> Self {
        WebError::Internal(e.into())
    }
}

impl From<ServiceError> for WebError {
    fn from(e: ServiceError) -> Self {
        let status = match &e {
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::Conflict { .. } | ServiceError::NotConfigured(_) => StatusCode::CONFLICT,
            ServiceError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::Internal(_) => {
                return WebError::Internal(match e {
                    ServiceError::Internal(cause) => cause,
                    _ => unreachable!(),
                });
            }
        };
        WebError::Status(status, e.to_string())
    }
}

impl WebError {
    pub fn not_found(what: impl Into<String>) -> WebError {
        WebError::Status(StatusCode::NOT_FOUND, what.into())
    }

    pub fn bad_request(what: impl Into<String>) -> WebError {
        WebError::Status(StatusCode::BAD_REQUEST, what.into())
    }
}

#[derive(askama::Template)]
#[template(path = "web/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            WebError::Login(next) => {
                let q = serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default();
                return Redirect::to(&format!("/login?{q}")).into_response();
            }
            WebError::Status(s, m) => (s, m),
            WebError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "web console");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be made; see the server log".to_owned(),
                )
            }
        };
        let page = ErrorPage {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or("Error"),
            message: &message,
        };
        match askama::Template::render(&page) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, message).into_response(),
        }
    }
}

/// Renders a page.
pub fn render<T: askama::Template>(t: &T) -> Result<Response, WebError> {
    Ok(Html(t.render()?).into_response())
}

/// The headers of every console answer: no scripts, no framing, no referrer to other sites
/// (paths name modules and instances; `no-referrer` would make browsers send `Origin: null`
/// with the forms, which the origin check refuses), and pages (which carry the session's
/// CSRF token) never cached.
pub async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// `2026-12-06 19:40 UTC` (ms since the epoch).
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// `3 min ago`, `2 h ago`, `5 d ago`.
pub fn ago(now: i64, ms: i64) -> String {
    let s = (now - ms).max(0) / 1000;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// `sha256:0123456789ab…`: enough of a digest to tell it apart (the whole in `title`).
pub fn short(digest: &str) -> String {
    match digest.char_indices().nth(19) {
        Some((i, _)) => format!("{}…", &digest[..i]),
        None => digest.to_owned(),
    }
}

/// A link to the same page with `params` in the query (pagination).
pub fn link(path: &str, params: &[(&str, &str)]) -> String {
    let q = serde_urlencoded::to_string(params).unwrap_or_default();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    }
}

/// A page's size: `limit` if given and sane, else `default`.
pub fn page_size(limit: Option<i64>, default: i64) -> i64 {
    limit.unwrap_or(default).clamp(1, 500)
}
