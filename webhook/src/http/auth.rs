//! API authentication: a bearer token, compared in constant time against the configured
//! tokens, gives a named caller with a role (`read` < `operator` < `break-glass`).

use super::{ApiError, AppState};
use crate::{config::Role, fleet::instances::token_hash};
use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

pub use crate::config::Caller;

/// The token a request presents as `Authorization: Bearer …`.
pub fn bearer(h: &HeaderMap) -> Option<&str> {
    h.get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// The configured token `matches` picks, as a caller. Every configured token is compared
/// (no early exit), so the time taken does not tell which position in the list matched;
/// `matches` compares in constant time.
fn configured(s: &AppState, matches: impl Fn(&crate::config::ApiToken) -> bool) -> Option<Caller> {
    let mut found = None;
    for t in &s.config.api.tokens {
        if matches(t) && found.is_none() {
            found = Some(t);
        }
    }
    found.map(|t| Caller {
        name: t.name.clone(),
        role: t.role,
    })
}

/// The configured token equal to `presented`, as a caller.
pub fn caller_by_token(s: &AppState, presented: &str) -> Option<Caller> {
    configured(s, |t| t.token.as_bytes().ct_eq(presented.as_bytes()).into())
}

/// The configured token whose SHA-256 (hex) is `token_sha256`, as a caller: how a console
/// session, which keeps only the hash, finds who it acts for (and stops when the token is
/// removed from the configuration).
pub fn caller_by_token_sha256(s: &AppState, token_sha256: &str) -> Option<Caller> {
    configured(s, |t| {
        token_hash(&t.token)
            .as_bytes()
            .ct_eq(token_sha256.as_bytes())
            .into()
    })
}

fn caller(s: &AppState, h: &HeaderMap) -> Option<Caller> {
    caller_by_token(s, bearer(h)?)
}

/// The caller, if its token has at least the role `need`.
pub fn require(s: &AppState, h: &HeaderMap, need: Role) -> Result<Caller, ApiError> {
    match caller(s, h) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "give a valid API token as `Authorization: Bearer …`",
        )),
        Some(c) if c.role < need => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs the {need:?} role; the token has {:?}", c.role),
        )),
        Some(c) => Ok(c),
    }
}
