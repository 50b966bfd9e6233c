//! What every HTTP route shares: the application state, `{error, message}` answers and the
//! bearer-token check. The routes themselves live with their concern (`hooks::routes`,
//! `api`, [`ops`]); `app::router` puts them together.

pub mod auth;
pub mod extract;
pub mod ops;

use crate::{
    catalogue::Policies,
    config::{Config, Repositories},
    metrics::Metrics,
    store::Store,
};
use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    /// Where hook deliveries are recorded (group commit; see `store::DeliveryLog`).
    pub deliveries: crate::store::DeliveryLog,
    pub policies: Arc<Policies>,
    pub config: Arc<Config>,
    pub repos: Repositories,
    pub metrics: Arc<Metrics>,
    pub fleet: crate::fleet::Fleet,
    /// The promotion engine, when Gitea is configured: API and MCP requests gather their
    /// evidence (checks, approvals) through it.
    pub engine: Option<crate::promotion::Engine>,
    /// Promotion and yank requests from every edge (REST, MCP, the console).
    pub promotions: crate::promotion::Promotions,
}

/// An answer other than success: a status, a stable code and a message a person can act on.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A failure of ours: logged with its cause, answered without it.
    pub fn internal(e: anyhow::Error) -> ApiError {
        tracing::error!(error = %format!("{e:#}"), "api");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed; see the server log",
        )
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<crate::error::ServiceError> for ApiError {
    fn from(e: crate::error::ServiceError) -> Self {
        use crate::error::ServiceError as E;
        match e {
            E::NotFound(m) => ApiError::not_found(m),
            E::NotConfigured(m) => ApiError::new(StatusCode::NOT_FOUND, "gitea_not_configured", m),
            E::Invalid(m) => ApiError::bad_request(m),
            E::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            E::Conflict { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            E::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "gitea_unavailable", m)
            }
            E::Internal(e) => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

/// `{error, message}` with a status.
pub fn error(status: StatusCode, error: &'static str, message: impl Into<String>) -> Response {
    ApiError::new(status, error, message).into_response()
}
