//! The store's database errors, of either engine.

/// A database call that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", pg_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The database cannot be reached (connect failed, connection lost, or
    /// no connection free in time): the caller may retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("query returned no rows")]
    NoRows,
    #[error("read column {column}: {msg}")]
    Conversion { column: usize, msg: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// PostgreSQL's own message (with its detail), not just "db error".
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{}: {d}", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

impl Error {
    /// A UNIQUE (or primary key) constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::ConstraintViolation
            }
            Error::Postgres(e) => {
                e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }

    /// The database could not be reached; see [`Error::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Unavailable(_) => true,
            Error::Postgres(e) => pg_unavailable(e),
            _ => false,
        }
    }
}

/// A PostgreSQL error that says the connection, not the query, failed:
/// the server went away or is shutting down.
pub(super) fn pg_unavailable(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(c) => {
            *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
                || c.code().starts_with("08")
        }
        // No server error: the socket failed (an I/O error under it), or
        // something of ours did (a bind, a conversion), which is no outage.
        None => {
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                if s.is::<std::io::Error>() {
                    return true;
                }
                source = s.source();
            }
            false
        }
    }
}

/// `query_row` that finds nothing gives `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
