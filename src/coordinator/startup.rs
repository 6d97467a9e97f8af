//! Starting on a data dir. The order is what keeps state safe: lock the
//! data dir ([`lock`]; a second coordinator stops here, before anything is
//! read), bind the listeners (the caller: a taken port stops here), then
//! [`open`]: check the database, refuse a lost one, open it, reset what a
//! previous process left (`Store::reset_on_start`), admin token, marker.

use std::path::{Path, PathBuf};

use super::auth::{self, AdminToken};
use super::error::CoordError;
use super::store::{self, CheckError, DB_FILE, Found, Store};
use crate::dirlock::{DirLock, LockError};

/// Held by the running coordinator (see [`crate::dirlock`]).
pub const LOCK_FILE: &str = "coordinator.lock";
/// Written once the data dir has a database: its presence says the data
/// dir was initialised, so a missing database there is a loss, not a
/// first start.
pub const MARKER_FILE: &str = "initialized";
/// Files that show a data dir was used before, marker or not (data dirs
/// from before the marker have an admin token and an address file).
const SIGNS_OF_USE: &[&str] = &[
    MARKER_FILE,
    "admin-token",
    "address",
    "provisionerd.db-wal",
    "provisionerd.db-shm",
];

/// Why `serve` did not start; each has its exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("lock data dir {}: held by {holder}", dir.display())]
    DataDirLocked { dir: PathBuf, holder: String },
    /// Needs an operator's decision: a used data dir lost its database, or
    /// the database is from a newer release.
    #[error("{0}")]
    Refused(String),
    /// The database cannot be used as it is (damaged, or not provisionerd's).
    #[error("{0}")]
    Unusable(String),
    #[error(transparent)]
    Failed(#[from] CoordError),
}

impl StartError {
    /// The process exit code for this error (see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::DataDirLocked { .. } => crate::exit::DATA_DIR_LOCKED,
            StartError::Refused(_) => crate::exit::CONFIG,
            StartError::Unusable(_) => crate::exit::DATABASE_UNUSABLE,
            StartError::Failed(_) => crate::exit::FATAL,
        }
    }
}

impl From<CheckError> for StartError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Damaged(m) => StartError::Unusable(format!(
                "{m}; the coordinator did not start: restore the database from a backup \
                 (see docs/operations.md)"
            )),
            CheckError::Foreign(m) => StartError::Unusable(m),
            CheckError::Newer(m) => StartError::Refused(m),
            CheckError::Other(e) => StartError::Failed(e),
        }
    }
}

/// Creates `dir` if needed and locks it for this process's life.
pub(super) fn lock(dir: &Path) -> Result<DirLock, StartError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CoordError::Internal(format!("create data dir {}: {e}", dir.display())))?;
    DirLock::acquire(dir, LOCK_FILE, "coordinator").map_err(|e| match e {
        LockError::Held { holder } => StartError::DataDirLocked {
            dir: dir.to_path_buf(),
            holder,
        },
        e => CoordError::Internal(format!("lock data dir {}: {e}", dir.display())).into(),
    })
}

/// Checks and opens the database in the locked `dir` (see the module doc).
pub(super) fn open(dir: &Path, allow_new: bool) -> Result<Store, StartError> {
    let db = dir.join(DB_FILE);
    let found = store::inspect(&db)?;
    let lost = match found {
        Found::Missing => Some("is missing"),
        Found::Empty => Some("is empty (0 bytes)"),
        Found::NoTables => Some("holds no tables"),
        Found::Ours { .. } => None,
    };
    let signs: Vec<&str> = SIGNS_OF_USE
        .iter()
        .copied()
        .filter(|f| dir.join(f).symlink_metadata().is_ok())
        .collect();
    match lost {
        Some(what) if !signs.is_empty() => {
            if !allow_new {
                return Err(StartError::Refused(format!(
                    "open data dir {}: database {} {what}, but the data dir was used before \
                     (found {}); a new database would start without the keys, templates, \
                     workspaces and jobs it held. Mount the volume that holds it or restore it \
                     from a backup; to start with an empty database anyway, pass \
                     --allow-new-database (PROVISIONERD_ALLOW_NEW_DATABASE=true)",
                    dir.display(),
                    db.display(),
                    signs.join(", ")
                )));
            }
            tracing::warn!(
                data_dir = %dir.display(),
                found = %signs.join(", "),
                "--allow-new-database: database {} {what}; starting a NEW, EMPTY database in a \
                 data dir that was used before: every key, template, workspace and job it held \
                 is gone",
                db.display()
            );
            set_aside_stale_wal(&db)?;
        }
        Some(_) if allow_new => {
            tracing::info!("--allow-new-database: not needed on a new data dir")
        }
        Some(_) => {}
        None if allow_new => tracing::warn!(
            "--allow-new-database is set but the database is present; unset it, so that a lost \
             database is refused again"
        ),
        None => {}
    }
    let store = Store::open(dir).map_err(|e| damaged_or(e, &db))?;
    if let Found::Ours {
        schema_version,
        checked_in,
    } = found
    {
        log_found(&store, dir, schema_version, checked_in).map_err(|e| damaged_or(e, &db))?;
    } else {
        tracing::info!(data_dir = %dir.display(), "initialised a new data dir");
    }
    store.reset_on_start().map_err(|e| damaged_or(e, &db))?;
    mark_initialised(dir)?;
    Ok(store)
}

/// Connects to PostgreSQL and brings its schema up to date (see
/// `store/postgres.rs`); a schema newer than this build is refused.
pub(super) fn open_postgres(dir: &Path, url: &str, pool: usize) -> Result<Store, StartError> {
    let store = Store::open_postgres(url, pool).map_err(|e| match e {
        CoordError::SchemaTooNew(m) => StartError::Refused(m),
        CoordError::Store(db) if db.is_unavailable() => {
            StartError::Failed(CoordError::Internal(format!("open database: {db}")))
        }
        e => StartError::Failed(e),
    })?;
    let summary = store.summary()?;
    tracing::info!(
        data_dir = %dir.display(),
        jobs = ?summary.jobs,
        daemons = summary.daemons,
        keys = summary.keys,
        templates = summary.templates,
        workspaces = summary.workspaces,
        "opened PostgreSQL database"
    );
    store.reset_on_start()?;
    Ok(store)
}

/// The first-start admin token in `dir` (see [`auth::ensure_admin_token`]).
pub(super) fn ensure_admin_token(store: &Store, dir: &Path) -> Result<(), StartError> {
    match auth::ensure_admin_token(store, dir)? {
        AdminToken::Kept => {}
        AdminToken::Created(path) => tracing::info!(
            path = %path.display(),
            "created admin token (export PROVISIONERD_TOKEN from this file)"
        ),
        AdminToken::Adopted(path) => tracing::warn!(
            path = %path.display(),
            "the database had no admin token: the one in this file is now accepted, so CLIs \
             using it keep working"
        ),
    }
    Ok(())
}

/// A store error that says the file's bytes are bad (a page `quick_check`
/// cannot see, or the file changed under us) is reported like a failed
/// check; anything else is an internal error.
fn damaged_or(e: CoordError, db: &Path) -> StartError {
    match e {
        CoordError::Store(e) => match sqlite_code(&e) {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                CheckError::Damaged(format!("use database {}: damaged: {e}", db.display())).into()
            }
            _ => StartError::Failed(CoordError::Internal(format!(
                "open database {}: {e}",
                db.display()
            ))),
        },
        e => StartError::Failed(e),
    }
}

fn sqlite_code(e: &super::store::db::Error) -> Option<rusqlite::ErrorCode> {
    match e {
        super::store::db::Error::Sqlite(s) => s.sqlite_error_code(),
        _ => None,
    }
}

fn log_found(
    store: &Store,
    dir: &Path,
    schema_version: i32,
    checked_in: std::time::Duration,
) -> Result<(), CoordError> {
    let s = store.summary()?;
    let jobs = |status: &str| s.jobs.get(status).copied().unwrap_or(0);
    tracing::info!(
        data_dir = %dir.display(),
        schema_version,
        quick_check_ms = checked_in.as_millis() as u64,
        jobs_pending = jobs("pending"),
        jobs_running = jobs("running"),
        jobs_canceling = jobs("canceling"),
        jobs_succeeded = jobs("succeeded"),
        jobs_failed = jobs("failed"),
        jobs_canceled = jobs("canceled"),
        daemons = s.daemons,
        keys = s.keys,
        templates = s.templates,
        workspaces = s.workspaces,
        "opened existing data dir"
    );
    Ok(())
}

/// A WAL (and its index) left beside a lost database belongs to that
/// database: SQLite must not replay it into the new one. Renamed, not
/// deleted, so nothing is lost.
fn set_aside_stale_wal(db: &Path) -> Result<(), StartError> {
    let stamp = store::now_ms();
    for suffix in ["-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.symlink_metadata().is_err() {
            continue;
        }
        let to = PathBuf::from(format!("{}.lost-{stamp}", from.display()));
        std::fs::rename(&from, &to).map_err(|e| {
            CoordError::Internal(format!(
                "set aside {} (of the lost database): {e}",
                from.display()
            ))
        })?;
        tracing::warn!(from = %from.display(), to = %to.display(), "set aside a file of the lost database");
    }
    Ok(())
}

/// Writes the marker on the first start of a data dir, and on the first
/// start of one from before the marker existed.
fn mark_initialised(dir: &Path) -> Result<(), StartError> {
    let path = dir.join(MARKER_FILE);
    if path.exists() {
        return Ok(());
    }
    let text = format!(
        "provisionerd data dir, initialised {} (provisionerd {}).\n\
         A coordinator that finds this file but no database ({DB_FILE}) refuses to start;\n\
         see `provisionerd serve --allow-new-database`.\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        crate::VERSION
    );
    std::fs::write(&path, text)
        .and_then(|()| std::fs::File::open(&path)?.sync_all())
        .map_err(|e| CoordError::Internal(format!("write {}: {e}", path.display())).into())
}
