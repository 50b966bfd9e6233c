//! API authentication: a bearer token, compared in constant time against the configured
//! tokens, gives a named caller with a role (`read` < `operator` < `break-glass`).

use super::{ApiError, AppState};
use crate::config::Role;
use axum::http::{HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

pub use crate::config::Caller;

fn caller(s: &AppState, h: &HeaderMap) -> Option<Caller> {
    let presented = h
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    // Every configured token is compared (no early exit), so the time taken does not tell
    // which position in the list matched.
    let mut found = None;
    for t in &s.config.api.tokens {
        let matches = bool::from(t.token.as_bytes().ct_eq(presented.as_bytes()));
        if matches && found.is_none() {
            found = Some(t);
        }
    }
    found.map(|t| Caller {
        name: t.name.clone(),
        role: t.role,
    })
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
