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
