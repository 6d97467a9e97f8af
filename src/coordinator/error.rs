//! The coordinator's error type and its one mapping to `tonic::Status`.

use tonic::{Code, Status};

use crate::grpc::limits::{MAX_STATUS_BYTES, truncate};

#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    /// The request is valid but the system is not in a state to accept it.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// A request stream broke before it was complete; nothing was stored,
    /// and the whole stream may be sent again.
    #[error("{0}")]
    Aborted(String),
    /// Something the caller had to send did not arrive in time.
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("store: {0}")]
    Store(#[from] super::store::db::Error),
    /// The database was written by a newer provisionerd.
    #[error("{0}")]
    SchemaTooNew(String),
    #[error("store: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<rusqlite::Error> for CoordError {
    fn from(e: rusqlite::Error) -> CoordError {
        CoordError::Store(e.into())
    }
}

pub type Result<T, E = CoordError> = std::result::Result<T, E>;

impl From<CoordError> for Status {
    fn from(e: CoordError) -> Status {
        let code = match &e {
            CoordError::NotFound(_) => Code::NotFound,
            CoordError::AlreadyExists(_) => Code::AlreadyExists,
            CoordError::Invalid(_) => Code::InvalidArgument,
            CoordError::FailedPrecondition(_) => Code::FailedPrecondition,
            CoordError::PermissionDenied(_) => Code::PermissionDenied,
            CoordError::Unauthenticated(_) => Code::Unauthenticated,
            CoordError::Aborted(_) => Code::Aborted,
            CoordError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            // The database is down or out of reach: the caller retries
            // (daemons back off and reconnect), as with a coordinator down.
            CoordError::Store(db) if db.is_unavailable() => Code::Unavailable,
            CoordError::Store(_)
            | CoordError::SchemaTooNew(_)
            | CoordError::Encoding(_)
            | CoordError::Internal(_) => {
                // Internals are logged here, once, with their detail.
                tracing::error!(error = %e, "internal error");
                Code::Internal
            }
        };
        // A message travels in a header: one echoing a hostile megabyte
        // would break the answer itself.
        Status::new(code, truncate(e.to_string(), MAX_STATUS_BYTES))
    }
}
