//! The error of a job's handler (ingest, promotion): it keeps its cause, and knows whether
//! retrying could help. A transient one (the registry or Gitea is down, the database is busy)
//! is retried with backoff; any other (a 401 from the registry, a 404 from Gitea) is
//! dead-lettered at once with its reason instead of being retried until it is.

use crate::gitea::GiteaError;
use powernode_module::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Gitea(#[from] GiteaError),
    /// The database (the store reports `anyhow` errors with their context).
    #[error("database: {0:#}")]
    Store(#[from] anyhow::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A blocking task of ours panicked or was cancelled.
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// Whether retrying could help.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Registry(e) => e.is_transient(),
            Error::Gitea(e) => e.is_transient(),
            Error::Store(_) | Error::Io { .. } | Error::Task(_) => true,
        }
    }

    /// How long the other side asked us to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Gitea(e) => e.retry_after,
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a service call (a promotion request, an assignment, a validation, …) did not do what
/// was asked. The services answer every edge alike; each edge renders it its own way (REST: a
/// status and `{error, message}`; MCP: a tool error; the console: a page), so no edge
/// decides what a refusal means by reading its text.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// What the call names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// What the call asks for is not configured on this receiver (Gitea).
    #[error("{0}")]
    NotConfigured(String),
    /// The input is malformed (which field, why).
    #[error("{0}")]
    Invalid(String),
    /// The caller's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The input is well formed but clashes with what exists (`code` is stable).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A service we depend on (Gitea) could not answer; trying again may help.
    #[error("{0}")]
    Unavailable(String),
    /// A failure of ours (the database, a bug): logged with its cause by the edge.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    pub fn not_found(message: impl Into<String>) -> ServiceError {
        ServiceError::NotFound(message.into())
    }

    pub fn invalid(message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid(message.into())
    }
}

impl From<Error> for ServiceError {
    fn from(e: Error) -> Self {
        match e {
            Error::Gitea(g) => ServiceError::Unavailable(format!(
                "could not read the evidence from Gitea; try again: {g}"
            )),
            other => ServiceError::Internal(other.into()),
        }
    }
}

/// A caller with at least the role `need`, or [`ServiceError::Forbidden`]: the services check
/// the role themselves, so an edge that forgets cannot act beyond it.
pub fn require_role(
    caller: &crate::config::Caller,
    need: crate::config::Role,
) -> Result<(), ServiceError> {
    if caller.role < need {
        return Err(ServiceError::Forbidden(format!(
            "this needs the {need:?} role; the token has {:?}",
            caller.role
        )));
    }
    Ok(())
}
