//! Who is looking: login with an API token, a session kept in the database (only the
//! SHA-256 of its id), the cookie that names it, and the checks every form post passes (an
//! `Origin` that is the receiver's own, the session's CSRF token, the operator role).
//!
//! The token is read once, from the login form's body, checked in constant time by the
//! API's own check ([`crate::http::auth::caller_by_token`]), and never written anywhere: the
//! session keeps its SHA-256, so a session ends when its token leaves the configuration.

use super::view::{WebError, render};
use crate::{
    config::Role,
    fleet::instances::token_hash,
    http::{
        AppState,
        auth::{Caller, caller_by_token, caller_by_token_sha256},
    },
};
use axum::{
    Form,
    extract::{FromRequestParts, Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "pn_console";

/// A logged-in person: who, with which role, and the CSRF token of their forms.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    id_sha256: String,
}

/// 256 bits from the operating system's generator, URL-safe base64.
fn random_id() -> Result<String, WebError> {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)
        .map_err(|e| WebError::Internal(anyhow::anyhow!("no randomness: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Session, WebError> {
        let back = || {
            WebError::Login(
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "/".into()),
            )
        };
        let id = cookie(&parts.headers, COOKIE).ok_or_else(back)?;
        let id_sha256 = token_hash(id);
        let row = s.store.web_session(&id_sha256).await?.ok_or_else(back)?;
        let caller = caller_by_token_sha256(s, &row.token_sha256).ok_or_else(back)?;
        Ok(Session {
            caller,
            csrf: row.csrf,
            id_sha256,
        })
    }
}

impl Session {
    /// The caller, if the form's `csrf` is this session's and the caller is an operator.
    pub fn acting(&self, csrf: &str) -> Result<Caller, WebError> {
        self.checked(csrf)?;
        if self.caller.role < Role::Operator {
            return Err(WebError::Status(
                StatusCode::FORBIDDEN,
                format!(
                    "{} has the read role: looking is allowed, acting needs an operator token",
                    self.caller.name
                ),
            ));
        }
        Ok(self.caller.clone())
    }

    fn checked(&self, csrf: &str) -> Result<(), WebError> {
        if bool::from(csrf.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(WebError::Status(
                StatusCode::FORBIDDEN,
                "the form is not one this session was given (its CSRF token does not match); reload the page and try again".into(),
            ))
        }
    }
}

/// Refuses (403) a POST from another origin: one whose `Origin` is present and neither the
/// receiver's own (the request's scheme and `Host`) nor one of `[web] origins`, or that the
/// browser marks `Sec-Fetch-Site: cross-site`.
pub async fn same_origin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let h = req.headers();
    let cross_site = h
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let foreign = match h.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("")) {
        None => false,
        Some(origin) => {
            let own = h
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(|host| format!("{}://{host}", if https(h) { "https" } else { "http" }));
            own.as_deref() != Some(origin) && !s.config.web.origins.iter().any(|o| o == origin)
        }
    };
    if cross_site || foreign {
        return WebError::Status(
            StatusCode::FORBIDDEN,
            "this form was posted from another site; use the console's own pages".into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether the request came over HTTPS (the receiver speaks HTTP; a proxy says so).
fn https(h: &HeaderMap) -> bool {
    h.get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// Where to go after login: a path of this site, else `/`.
fn local(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "web/login.html")]
struct Login {
    next: String,
    error: Option<String>,
}

pub async fn login_page(Query(q): Query<NextQuery>) -> Result<Response, WebError> {
    render(&Login {
        next: local(q.next.as_deref()),
        error: None,
    })
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

pub async fn login(
    State(s): State<AppState>,
    h: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, WebError> {
    let next = local(f.next.as_deref());
    // The API's own constant-time check of a token (every configured role may read).
    if caller_by_token(&s, f.token.trim()).is_none() {
        let mut r = render(&Login {
            next,
            error: Some("That token is not one this receiver knows.".into()),
        })?;
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(r);
    }
    let id = random_id()?;
    let ttl = s.config.web.session_ttl_secs;
    s.store
        .open_web_session(
            &token_hash(&id),
            &crate::store::WebSession {
                token_sha256: token_hash(f.token.trim()),
                csrf: random_id()?,
                expires_at: s.store.now() + ttl * 1000,
            },
        )
        .await?;
    let secure = s.config.web.secure_cookie.unwrap_or_else(|| https(&h));
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={ttl}{}",
        if secure { "; Secure" } else { "" }
    );
    let mut r = Redirect::to(&next).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| WebError::Internal(e.into()))?,
    );
    Ok(r)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Ends the session on the server (the cookie is cleared too, but it no longer opens
/// anything either way).
pub async fn logout(
    State(s): State<AppState>,
    session: Session,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    session.checked(&f.csrf)?;
    s.store.close_web_session(&session.id_sha256).await?;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pn_console=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok(r)
}
