//! What a coordinator finds in its database file before it uses it, and the
//! marks that make a provisionerd database recognisable: SQLite's
//! `application_id` and `user_version` header fields.
//!
//! [`inspect`] runs before [`Store::open`] writes anything (its `CREATE
//! TABLE`s would otherwise turn any SQLite file into a provisionerd one),
//! and it runs `PRAGMA quick_check`, so a damaged database is refused at
//! start rather than when a job happens to read a bad page.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::Store;
use crate::coordinator::error::{CoordError, Result};

/// The database file in `--data-dir`.
pub const DB_FILE: &str = "provisionerd.db";
/// `PRAGMA application_id` of a provisionerd database ("PVSD").
const APPLICATION_ID: i32 = 0x5056_5344;
/// `PRAGMA user_version`: the layout this build writes (0: a database from
/// before it was recorded). Bump it when a build older than the change
/// could no longer use the database safely: such a build then refuses it.
/// 2: jobs carry their tag set and blobs their size and hash; a build of
/// version 1 would write states without their hash, so it must refuse.
/// 3: template versions have names and may stay inactive, workspaces keep
/// their version on start; a version-2 build would activate every import
/// and move every workspace on start (undoing a rollback), so it refuses.
pub const SCHEMA_VERSION: i32 = 3;
/// Problems `quick_check` reports at most (the first few say enough).
const MAX_PROBLEMS: u32 = 5;

/// What the database file holds, when it can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Missing,
    /// 0 bytes (e.g. truncated).
    Empty,
    /// A SQLite database without a table.
    NoTables,
    /// A provisionerd database that passed `quick_check` (which took
    /// `checked_in`).
    Ours {
        schema_version: i32,
        checked_in: Duration,
    },
}

/// Why the database file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Damaged, or not a SQLite file at all.
    #[error("{0}")]
    Damaged(String),
    /// A SQLite database, but not provisionerd's.
    #[error("{0}")]
    Foreign(String),
    /// Written by a newer provisionerd (its schema version is higher).
    #[error("{0}")]
    Newer(String),
    #[error(transparent)]
    Other(#[from] CoordError),
}

/// Looks at the database at `path` without changing it: no table is
/// created and nothing is written back on close.
pub fn inspect(path: &Path) -> Result<Found, CheckError> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(CoordError::Internal(format!("read database {shown}: {e}")).into()),
        Ok(m) if !m.is_file() => {
            return Err(CheckError::Foreign(format!(
                "open database {shown}: not a regular file"
            )));
        }
        Ok(m) if m.len() == 0 => return Ok(Found::Empty),
        Ok(_) => {}
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
    // Closing the last connection would checkpoint the WAL into the file,
    // which must stay as it was if it is refused.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(|e| classify(path, e))?;
    let started = Instant::now();
    let problems = quick_check(&conn).map_err(|e| classify(path, e))?;
    if problems != ["ok"] {
        // One line per problem, without the header naming the schema.
        let lines: Vec<&str> = problems
            .iter()
            .flat_map(|p| p.lines())
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("***"))
            .collect();
        return Err(CheckError::Damaged(format!(
            "check database {shown}: damaged: SQLite's quick_check found: {}",
            lines.join("; ")
        )));
    }
    let checked_in = started.elapsed();
    let pragma = |name| -> Result<i32, CheckError> {
        conn.pragma_query_value(None, name, |r| r.get(0))
            .map_err(|e| classify(path, e))
    };
    let (app_id, schema_version) = (pragma("application_id")?, pragma("user_version")?);
    let tables = tables(&conn).map_err(|e| classify(path, e))?;
    if app_id != APPLICATION_ID && app_id != 0 {
        return Err(CheckError::Foreign(format!(
            "open database {shown}: not a provisionerd database (its SQLite application id \
             is {app_id:#x}); check --data-dir"
        )));
    }
    if tables.is_empty() {
        return Ok(Found::NoTables);
    }
    // Before the application id was written, a provisionerd database is
    // known by its tables (both date from the first release).
    let ours = app_id == APPLICATION_ID
        || (tables.iter().any(|t| t == "settings") && tables.iter().any(|t| t == "jobs"));
    if !ours {
        return Err(CheckError::Foreign(format!(
            "open database {shown}: not a provisionerd database (tables: {}); check --data-dir",
            tables.join(", ")
        )));
    }
    if schema_version > SCHEMA_VERSION {
        return Err(CheckError::Newer(format!(
            "open database {shown}: schema version {schema_version} was written by a newer \
             provisionerd (this one knows up to {SCHEMA_VERSION}); run that version, or \
             restore a backup taken before the upgrade"
        )));
    }
    Ok(Found::Ours {
        schema_version,
        checked_in,
    })
}

/// A SQLite error that means the file's bytes are bad, as the message an
/// operator sees; any other error stays an internal one.
fn classify(path: &Path, e: rusqlite::Error) -> CheckError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseCorrupt) => {
            CheckError::Damaged(format!("check database {}: damaged: {e}", path.display()))
        }
        Some(ErrorCode::NotADatabase) => CheckError::Damaged(format!(
            "check database {}: not a SQLite database ({e})",
            path.display()
        )),
        // Unreadable (permissions after a restore), locked, …: still name
        // the action and the file.
        _ => CheckError::Other(CoordError::Internal(format!(
            "check database {}: {e}",
            path.display()
        ))),
    }
}

fn quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA quick_check({MAX_PROBLEMS})"))?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

fn tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_schema
         WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
         ORDER BY name",
    )?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// Marks the database as provisionerd's, at this schema version (never
/// lowering a newer one's: [`inspect`] refuses those first).
pub(super) fn stamp(conn: &Connection) -> Result<()> {
    let get = |name| conn.pragma_query_value(None, name, |r| r.get::<_, i32>(0));
    // Read first: an unchanged header needs no write transaction.
    if get("application_id")? != APPLICATION_ID {
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    }
    if get("user_version")? < SCHEMA_VERSION {
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    Ok(())
}

/// What the coordinator logs when it starts on an existing data dir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Job count per status.
    pub jobs: BTreeMap<String, i64>,
    pub daemons: i64,
    pub keys: i64,
    pub templates: i64,
    /// Live (not deleted) workspaces.
    pub workspaces: i64,
}

impl Store {
    /// Counts for the start log; each is one indexed or small-table query.
    pub fn summary(&self) -> Result<Summary> {
        let conn = self.conn()?;
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let jobs = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<super::db::Result<_>>()?;
        Ok(Summary {
            jobs,
            daemons: count("SELECT COUNT(*) FROM daemons")?,
            keys: count("SELECT COUNT(*) FROM keys")?,
            templates: count("SELECT COUNT(*) FROM templates")?,
            workspaces: count("SELECT COUNT(*) FROM workspaces WHERE deleted = 0")?,
        })
    }
}

#[cfg(test)]
mod tests;
