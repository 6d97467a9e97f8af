//! The coordinator's store: embedded SQLite under `--data-dir`.
//!
//! Everything the coordinator knows lives here, so a restart loses nothing.
//! All SQL is in this module (and its children) so that a PostgreSQL backend
//! can be added behind the same methods later. Calls are short synchronous
//! transactions behind one mutex; callers never hold it across `.await`.
//! Each public method takes the connection once and does all its work in
//! one transaction ([`Store::write`], [`Store::read`]; helpers below it
//! take the `&Connection` of that transaction), so nothing another caller
//! does can land between a method's read and its write.

mod blobs;
mod cancel;
mod catalog;
mod check;
mod claim;
mod daemons;
pub mod db;
mod enqueue;
mod finished;
mod jobs;
mod logs;
mod offers;
mod ops;
mod postgres;
pub mod replicas;
mod status;
mod tagsets;
#[doc(hidden)]
pub mod testdb;
#[cfg(test)]
mod tests;
mod versions;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::{SystemTime, UNIX_EPOCH};

use db::{Connection, TxKind, params};

use crate::coordinator::error::{CoordError, Result};
use crate::tags::Tags;

pub use cancel::Canceled;
pub use catalog::Pushed;
pub use catalog::{DeclaredVar, NewBuild, NewImport, TemplateRow, VersionRow, WorkspaceRow};
pub use check::{CheckError, DB_FILE, Found, SCHEMA_VERSION, Summary, inspect};
pub use claim::{ClaimCandidate, ClaimWanted, Claimed};
pub use daemons::{DaemonRow, KeyRow, Report};
pub use enqueue::{JobKind, NewJob, PREBUILDS_OWNER};
pub use finished::JobReport;
pub use jobs::{JobFilter, JobRow};
pub use logs::LogRow;
pub use offers::{Blob, Offer, OfferBuild, OfferVariable};
pub use ops::{Histo, JobGauge, PrebuildCount, PrebuildWorkspace};
pub use status::JobStatus;
pub use versions::{
    AutomaticUpdates, NewVersion, VersionCount, VersionInfo, check_version_name, unusable,
};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
  name        TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  tags        TEXT NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS daemons (
  id           TEXT PRIMARY KEY,
  name         TEXT NOT NULL UNIQUE,
  key_name     TEXT NOT NULL,
  tags         TEXT NOT NULL,
  version      TEXT NOT NULL,
  connected    INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  -- What the daemon last reported (Hello, StateUpdate); NULL: unreported.
  state          TEXT,
  current_job_id TEXT
);
CREATE TABLE IF NOT EXISTS templates (
  name              TEXT PRIMARY KEY,
  active_version_id TEXT,
  created_at        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS template_versions (
  id         TEXT PRIMARY KEY,
  template   TEXT NOT NULL REFERENCES templates(name),
  archive    BLOB NOT NULL,
  tags       TEXT NOT NULL,
  var_values TEXT NOT NULL,
  declared   TEXT,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS workspaces (
  id                  TEXT PRIMARY KEY,
  name                TEXT NOT NULL,
  owner               TEXT NOT NULL,
  template            TEXT NOT NULL,
  template_version_id TEXT NOT NULL,
  var_values          TEXT NOT NULL,
  state               BLOB,
  deleted             INTEGER NOT NULL DEFAULT 0,
  created_at          INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS workspaces_live_name
  ON workspaces(name) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS jobs (
  id                  TEXT PRIMARY KEY,
  type                TEXT NOT NULL,
  status              TEXT NOT NULL,
  initiator           TEXT NOT NULL,
  is_prebuild         INTEGER NOT NULL,
  tags                TEXT NOT NULL,
  template_version_id TEXT NOT NULL,
  workspace_id        TEXT,
  transition          TEXT,
  created_at          INTEGER NOT NULL,
  offered_to          TEXT,
  daemon_id           TEXT,
  daemon_name         TEXT,
  key_name            TEXT,
  started_at          INTEGER,
  updated_at          INTEGER,
  finished_at         INTEGER,
  error               TEXT,
  log_count           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_workspace
  ON jobs(workspace_id, created_at);
CREATE INDEX IF NOT EXISTS jobs_queue
  ON jobs(status, is_prebuild, created_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE INDEX IF NOT EXISTS jobs_version ON jobs(template_version_id);
CREATE INDEX IF NOT EXISTS jobs_started ON jobs(started_at);
-- The distinct job tag sets (see tagsets.rs); key: the set's JSON.
CREATE TABLE IF NOT EXISTS tag_sets (
  id  INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE
);
-- Coordinator processes sharing a PostgreSQL database (see replicas.rs);
-- empty on SQLite, kept so both engines have the same tables.
CREATE TABLE IF NOT EXISTS replicas (
  id           TEXT PRIMARY KEY,
  heartbeat_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS job_logs (
  job_id     TEXT NOT NULL,
  seq        INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  level      INTEGER NOT NULL,
  source     INTEGER NOT NULL,
  stage      TEXT NOT NULL,
  output     TEXT NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"#;

/// Made once the columns it covers exist (see `add_missing_columns`):
/// the queue, per tag set, in claim order (people before prebuilds, then
/// oldest; rowid breaks ties). Only claimable rows are in it, so a deep
/// queue of offered or running jobs costs nothing.
const CLAIM_INDEX: &str = "CREATE INDEX IF NOT EXISTS jobs_claim
  ON jobs(tag_set, is_prebuild, created_at) WHERE status = 'pending' AND offered_to IS NULL;
-- A daemon's standing offer (asked at each Acquire) and the offers a
-- session's end returns: without it, a scan of the pending jobs.
CREATE INDEX IF NOT EXISTS jobs_offered ON jobs(offered_to) WHERE offered_to IS NOT NULL";

/// Blob work smaller than this runs on the async worker (see
/// [`Store::call_sized`]): copying 256 KiB takes microseconds.
pub const INLINE_BYTES: u64 = 256 * 1024;

pub struct Store {
    engine: EngineConn,
    /// Lock order: a connection, then `sets`.
    sets: Mutex<tagsets::TagSetIndex>,
    /// This process's replica id (PostgreSQL; see `replicas.rs`).
    replica: Option<String>,
}

/// Where the store's connections come from.
enum EngineConn {
    /// One connection; SQLite has one writer anyway.
    Sqlite(Mutex<Connection>),
    /// A pool shared by this replica's callers.
    Postgres(Arc<db::Pool>),
}

/// A connection lent to one store method.
enum Lent<'a> {
    Sqlite(MutexGuard<'a, Connection>),
    Postgres(db::PoolConn),
}

impl std::ops::Deref for Lent<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Lent::Sqlite(c) => c,
            Lent::Postgres(c) => c,
        }
    }
}

impl Store {
    /// Opens (creating if needed) `DIR/provisionerd.db`. The coordinator
    /// calls [`inspect`] first: this adds provisionerd's tables to
    /// whatever database it finds.
    pub fn open(dir: &Path) -> Result<Store> {
        let path = dir.join(DB_FILE);
        let conn = rusqlite::Connection::open(&path)?;
        // WAL keeps readers (log followers) from blocking the writer, and a
        // busy timeout covers the CLI reading while the server writes.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // The hot paths cache their statements (`prepare_cached`); room for
        // all of them, so none is parsed again per call.
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(SCHEMA)?;
        add_missing_columns(&conn)?;
        // Rows written by a schema-1 build lack their tag set and digests;
        // a schema-2 database has them all, so its start scans nothing.
        let schema: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let conn = Connection::Sqlite(conn);
        if schema < 2 {
            tagsets::backfill(&conn)?;
            blobs::backfill(&conn)?;
        }
        // Cheap once done: a look for rows without a name.
        versions::backfill(&conn)?;
        let Connection::Sqlite(conn) = conn else {
            unreachable!("opened as SQLite")
        };
        conn.execute_batch(CLAIM_INDEX)?;
        conn.execute_batch(versions::INDEXES)?;
        check::stamp(&conn)?;
        Ok(Store {
            engine: EngineConn::Sqlite(Mutex::new(Connection::Sqlite(conn))),
            sets: Mutex::new(Default::default()),
            replica: None,
        })
    }

    /// Connects to the PostgreSQL database at `url` and brings its schema
    /// up to date (see `postgres.rs`): `pool` connections at most.
    pub fn open_postgres(url: &str, pool: usize) -> Result<Store> {
        let pool = db::Pool::new(url, pool)?;
        postgres::migrate(&*pool.get()?)?;
        Ok(Store {
            engine: EngineConn::Postgres(pool),
            sets: Mutex::new(Default::default()),
            replica: Some(new_id()),
        })
    }

    pub fn engine(&self) -> db::Engine {
        match self.engine {
            EngineConn::Sqlite(_) => db::Engine::Sqlite,
            EngineConn::Postgres(_) => db::Engine::Postgres,
        }
    }

    fn conn(&self) -> Result<Lent<'_>> {
        Ok(match &self.engine {
            // A panic while holding the lock leaves SQLite consistent (every
            // write is a transaction), so a poisoned lock is safe to reuse.
            EngineConn::Sqlite(c) => Lent::Sqlite(c.lock().unwrap_or_else(|p| p.into_inner())),
            EngineConn::Postgres(p) => Lent::Postgres(p.get()?),
        })
    }

    /// Runs `f` (calls into the store) on tokio's blocking pool: SQLite's
    /// work, and waiting for the store's lock behind a large blob, never
    /// hold an async worker thread (a service handler awaits this).
    pub async fn call<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = Arc::clone(self);
        blocking(move || f(&store)).await
    }

    /// [`Store::call`] for work that moves about `bytes` of blobs: below
    /// [`INLINE_BYTES`] it runs right here, where the hop to the blocking
    /// pool (two thread switches) would cost more than the work. Not for
    /// PostgreSQL, whose round trips would hold the async worker.
    pub async fn call_sized<T: Send + 'static>(
        self: &Arc<Self>,
        bytes: u64,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if bytes < INLINE_BYTES && self.engine() == db::Engine::Sqlite {
            return f(self);
        }
        self.call(f).await
    }

    /// Runs `f` as one write transaction, committed if it returns `Ok`
    /// (rolled back otherwise). Writers are one at a time (see
    /// [`TxKind::Write`]), so a read inside `f` is never stale by the time
    /// `f` writes.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.transaction(TxKind::Write, f)
    }

    /// Runs `f` as one transaction of `kind`, committed if it returns `Ok`.
    fn transaction<T>(&self, kind: TxKind, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        let tx = conn.begin(kind)?;
        let out = f(&conn)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f`'s reads as one transaction: they all see the same state.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn()?;
        let tx = conn.begin(TxKind::Read)?;
        let out = f(&conn)?;
        tx.commit()?;
        Ok(out)
    }

    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        use db::OptionalExtension;
        Ok(self
            .conn()?
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO settings(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// Called once at start: no daemon is connected yet, and offers made by
    /// a previous process were never acknowledged, so they go back to the
    /// queue. On PostgreSQL this registers the replica, and resets only
    /// when no other replica is serving (a whole cluster restarted).
    pub fn reset_on_start(&self) -> Result<()> {
        let me = self.replica.clone();
        self.write(|tx| {
            let now = now_ms();
            if let Some(me) = &me {
                // Other replicas serving: what they hold is theirs. Dead
                // ones are cleared by the heartbeats (`replicas.rs`).
                let others: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM replicas WHERE heartbeat_at >= ?1",
                    [replicas::cutoff()],
                    |r| r.get(0),
                )?;
                tx.execute(
                    "INSERT INTO replicas(id, heartbeat_at) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                    params![me, now],
                )?;
                if others > 0 {
                    return Ok(());
                }
                tx.execute("DELETE FROM replicas WHERE id <> ?1", [me])?;
            }
            tx.execute("UPDATE daemons SET connected = 0, replica = NULL", [])?;
            tx.execute(
                "UPDATE jobs SET offered_to = NULL, secret_hash = NULL WHERE status = 'pending'",
                [],
            )?;
            // Daemons could not reach us while we were down: the lease of a
            // running job counts from now, not from before the restart.
            tx.execute(
                "UPDATE jobs SET updated_at = ?1 WHERE status IN ('running', 'canceling')",
                [now],
            )?;
            Ok(())
        })
    }
}

/// Columns added after the first release: `CREATE TABLE IF NOT EXISTS`
/// leaves an existing table as it was, so a database written by an older
/// version gets them here (nullable, so old rows stay valid).
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("daemons", "state", "TEXT"),
    ("daemons", "current_job_id", "TEXT"),
    // 1: failed by the lease reaper, its daemon's late result still
    // welcome; 2: that late result was taken. See `finished.rs`.
    ("jobs", "lost", "INTEGER NOT NULL DEFAULT 0"),
    // A lost job's late state that could not be applied (a newer build of
    // the workspace exists), kept for an operator.
    ("jobs", "late_state", "BLOB"),
    // Template metadata read at push (parameters, workspace tags, presets,
    // README) as JSON; NULL for versions pushed before it existed.
    ("template_versions", "meta", "TEXT"),
    // Parameter values (JSON objects): a workspace's current ones, and each
    // build's own and the ones it replaced (CODER_PARAMETER_PREVIOUS_*).
    ("workspaces", "parameters", "TEXT"),
    ("jobs", "parameters", "TEXT"),
    ("jobs", "previous_parameters", "TEXT"),
    // The preset a workspace was created from (prebuild pools are per
    // preset); NULL: none, or created before it was recorded.
    ("workspaces", "preset", "TEXT"),
    // 1: created by the prebuild reconciler, the only workspaces it
    // judges, destroys or counts; hand-made `--owner prebuilds` ones and
    // rows from before this column are 0 and left alone.
    ("workspaces", "reconciled", "INTEGER NOT NULL DEFAULT 0"),
    // The report (JSON) a daemon ended the job with, so a repeated
    // FinishJob is judged against it; NULL before one, or from before
    // this column. See `finished.rs`.
    ("jobs", "report", "TEXT"),
    // A claimed prebuild: its name as a prebuild and when it was claimed
    // (ms); NULL: built for its owner.
    ("workspaces", "claimed_from", "TEXT"),
    ("workspaces", "claimed_at", "INTEGER"),
    // 1: the build that follows a claim (CODER_WORKSPACE_IS_PREBUILD_CLAIM);
    // counted for coderd_prebuilt_workspaces_claimed_total.
    ("jobs", "prebuild_claim", "INTEGER NOT NULL DEFAULT 0"),
    // A claim build's replaced resources (JSON array of strings), as its
    // daemon reported them; NULL: none. Counted for
    // coderd_prebuilt_workspaces_resource_replacements_total.
    ("jobs", "replacements", "TEXT"),
    // The job's tag set (tag_sets.id): the queue's routing key.
    ("jobs", "tag_set", "INTEGER"),
    // Written with the blob (see blobs.rs), so an offer reads no blob.
    ("template_versions", "archive_size", "INTEGER"),
    ("template_versions", "archive_sha256", "TEXT"),
    ("workspaces", "state_size", "INTEGER"),
    ("workspaces", "state_sha256", "TEXT"),
    // The replica holding the daemon's session (PostgreSQL; see
    // replicas.rs); NULL on SQLite.
    ("daemons", "replica", "TEXT"),
    // sha256 (hex) of the job secret handed out with the job's latest
    // offer (see offers.rs); NULL: offered before secrets existed, such a
    // job keeps the name-and-key check alone (see `jobs::owned_in`).
    ("jobs", "secret_hash", "TEXT"),
    // Template versions as operators manage them (see versions.rs): a name
    // unique in the template (filled in for older rows by
    // `versions::backfill`), the push's message and pusher, archived, and
    // whether the push asked to become active once imported.
    ("template_versions", "name", "TEXT"),
    ("template_versions", "message", "TEXT NOT NULL DEFAULT ''"),
    (
        "template_versions",
        "created_by",
        "TEXT NOT NULL DEFAULT 'admin'",
    ),
    (
        "template_versions",
        "archived",
        "INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "template_versions",
        "activate",
        "INTEGER NOT NULL DEFAULT 1",
    ),
    ("template_versions", "import_job_id", "TEXT"),
    // The newest version (its rowid) pushed when the active version last
    // changed: an import activates its version only if it was pushed
    // after that (see versions.rs). Push order, not a clock: replicas'
    // clocks differ.
    ("templates", "activated_through", "INTEGER"),
    // never | always: whether a start moves the workspace to the active
    // version.
    (
        "workspaces",
        "automatic_updates",
        "TEXT NOT NULL DEFAULT 'never'",
    ),
];

fn add_missing_columns(conn: &rusqlite::Connection) -> Result<()> {
    for (table, column, decl) in ADDED_COLUMNS {
        let present: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            [table, column],
            |r| r.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

/// Runs `f`, which does store work, on tokio's blocking pool and waits for
/// it (see [`Store::call`]).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CoordError::Internal(format!("store call: {e}")))?
}

/// A row limit where -1 means all: PostgreSQL refuses SQLite's LIMIT -1.
fn all_if_negative(limit: i64) -> i64 {
    if limit < 0 { i64::MAX } else { limit }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn tags_to_json(tags: &Tags) -> Result<String> {
    Ok(serde_json::to_string(tags)?)
}

pub(crate) fn tags_from_json(s: &str) -> Tags {
    // Only this module writes the column, always from a valid Tags.
    serde_json::from_str(s).unwrap_or_default()
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn not_found(what: &str, name: &str) -> CoordError {
    CoordError::NotFound(format!("{what} {name:?} not found"))
}
