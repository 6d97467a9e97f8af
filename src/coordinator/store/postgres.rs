//! The PostgreSQL schema, as versioned migrations applied at start.
//!
//! Replicas starting together are safe: migrations run under a session
//! advisory lock, so one applies them while the others wait and then find
//! nothing to do. Each migration commits with its version row. A database
//! whose version is newer than this build knows was written by a newer
//! provisionerd: this build refuses it (exit 64) rather than guess.
//!
//! Layout follows SQLite's (`SCHEMA` and `ADDED_COLUMNS` in `mod.rs`) with
//! PostgreSQL types: integers and 0/1 flags are BIGINT, blobs BYTEA, and
//! `rowid` — which SQLite gives every table — is a real column where the
//! store orders by it.

use super::db::{Connection, OptionalExtension};
use crate::coordinator::error::{CoordError, Result};

/// The session advisory lock migrations run under (per schema, as the
/// write lock in `db/pg.rs`).
const MIGRATE_LOCK: &str = "hashtext(current_schema()), 2";

/// Migrations in order; the database's version is how many it has.
const MIGRATIONS: &[&str] = &[
    // 1: the layout of SQLite's schema version 2.
    r#"
CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE keys (
  name        TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  tags        TEXT NOT NULL,
  created_at  BIGINT NOT NULL
);
CREATE TABLE daemons (
  id             TEXT PRIMARY KEY,
  name           TEXT NOT NULL UNIQUE,
  key_name       TEXT NOT NULL,
  tags           TEXT NOT NULL,
  version        TEXT NOT NULL,
  connected      BIGINT NOT NULL,
  last_seen_at   BIGINT NOT NULL,
  state          TEXT,
  current_job_id TEXT,
  replica        TEXT
);
CREATE TABLE replicas (
  id           TEXT PRIMARY KEY,
  heartbeat_at BIGINT NOT NULL
);
CREATE TABLE templates (
  name              TEXT PRIMARY KEY,
  active_version_id TEXT,
  created_at        BIGINT NOT NULL
);
CREATE TABLE template_versions (
  id             TEXT PRIMARY KEY,
  template       TEXT NOT NULL REFERENCES templates(name),
  archive        BYTEA NOT NULL,
  tags           TEXT NOT NULL,
  var_values     TEXT NOT NULL,
  declared       TEXT,
  created_at     BIGINT NOT NULL,
  meta           TEXT,
  archive_size   BIGINT,
  archive_sha256 TEXT,
  rowid          BIGSERIAL
);
CREATE TABLE workspaces (
  id                  TEXT PRIMARY KEY,
  name                TEXT NOT NULL,
  owner               TEXT NOT NULL,
  template            TEXT NOT NULL,
  template_version_id TEXT NOT NULL,
  var_values          TEXT NOT NULL,
  state               BYTEA,
  deleted             BIGINT NOT NULL DEFAULT 0,
  created_at          BIGINT NOT NULL,
  parameters          TEXT,
  preset              TEXT,
  reconciled          BIGINT NOT NULL DEFAULT 0,
  claimed_from        TEXT,
  claimed_at          BIGINT,
  state_size          BIGINT,
  state_sha256        TEXT,
  rowid               BIGSERIAL
);
CREATE UNIQUE INDEX workspaces_live_name ON workspaces(name) WHERE deleted = 0;
CREATE TABLE tag_sets (
  id  BIGSERIAL PRIMARY KEY,
  key TEXT NOT NULL UNIQUE
);
CREATE TABLE jobs (
  id                  TEXT PRIMARY KEY,
  type                TEXT NOT NULL,
  status              TEXT NOT NULL,
  initiator           TEXT NOT NULL,
  is_prebuild         BIGINT NOT NULL,
  tags                TEXT NOT NULL,
  template_version_id TEXT NOT NULL,
  workspace_id        TEXT,
  transition          TEXT,
  created_at          BIGINT NOT NULL,
  offered_to          TEXT,
  daemon_id           TEXT,
  daemon_name         TEXT,
  key_name            TEXT,
  started_at          BIGINT,
  updated_at          BIGINT,
  finished_at         BIGINT,
  error               TEXT,
  log_count           BIGINT NOT NULL DEFAULT 0,
  lost                BIGINT NOT NULL DEFAULT 0,
  late_state          BYTEA,
  parameters          TEXT,
  previous_parameters TEXT,
  report              TEXT,
  prebuild_claim      BIGINT NOT NULL DEFAULT 0,
  replacements        TEXT,
  tag_set             BIGINT,
  rowid               BIGSERIAL
);
CREATE INDEX jobs_workspace ON jobs(workspace_id, created_at);
CREATE INDEX jobs_queue ON jobs(status, is_prebuild, created_at);
CREATE INDEX jobs_status ON jobs(status);
CREATE INDEX jobs_version ON jobs(template_version_id);
CREATE INDEX jobs_started ON jobs(started_at);
CREATE INDEX jobs_listed ON jobs(created_at, rowid);
CREATE INDEX jobs_claim ON jobs(tag_set, is_prebuild, created_at, rowid)
  WHERE status = 'pending' AND offered_to IS NULL;
CREATE INDEX jobs_offered ON jobs(offered_to) WHERE offered_to IS NOT NULL;
CREATE TABLE job_logs (
  job_id     TEXT NOT NULL,
  seq        BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  level      BIGINT NOT NULL,
  source     BIGINT NOT NULL,
  stage      TEXT NOT NULL,
  output     TEXT NOT NULL,
  PRIMARY KEY (job_id, seq)
);
-- A state's outputs as a small JSON document, NULL for no state or one
-- that is not JSON (SQLite's json_valid/json_extract, in catalog.rs).
CREATE FUNCTION provisionerd_outputs(state BYTEA) RETURNS BYTEA
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF state IS NULL THEN RETURN NULL; END IF;
  RETURN convert_to(
    json_build_object('outputs', convert_from(state, 'UTF8')::json -> 'outputs')::text, 'UTF8');
EXCEPTION WHEN others THEN RETURN NULL;
END $$;
"#,
    // 2: the job secret's hash (SQLite: `jobs.secret_hash` in ADDED_COLUMNS).
    "ALTER TABLE jobs ADD COLUMN secret_hash TEXT;",
    // 3: template versions as operators manage them (SQLite: the same
    // columns in ADDED_COLUMNS, `versions::INDEXES`); `versions::backfill`
    // then runs at every start (see `migrate_locked`).
    "ALTER TABLE template_versions ADD COLUMN name TEXT;
     ALTER TABLE template_versions ADD COLUMN message TEXT NOT NULL DEFAULT '';
     ALTER TABLE template_versions ADD COLUMN created_by TEXT NOT NULL DEFAULT 'admin';
     ALTER TABLE template_versions ADD COLUMN archived BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE template_versions ADD COLUMN activate BIGINT NOT NULL DEFAULT 1;
     ALTER TABLE template_versions ADD COLUMN import_job_id TEXT;
     ALTER TABLE templates ADD COLUMN activated_through BIGINT;
     ALTER TABLE workspaces ADD COLUMN automatic_updates TEXT NOT NULL DEFAULT 'never';
     CREATE UNIQUE INDEX template_versions_name ON template_versions(template, name);
     CREATE INDEX template_versions_order ON template_versions(template, created_at);
     CREATE INDEX workspaces_version ON workspaces(template_version_id) WHERE deleted = 0;",
];

/// The schema version this build writes.
pub const PG_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`PG_SCHEMA_VERSION`], under the migration
/// lock; refuses a newer one.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(&format!("SELECT pg_advisory_lock({MIGRATE_LOCK})"))?;
    let out = migrate_locked(conn);
    let unlocked = conn.execute_batch(&format!("SELECT pg_advisory_unlock({MIGRATE_LOCK})"));
    out?;
    Ok(unlocked?)
}

fn migrate_locked(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS provisionerd_schema (
           version    BIGINT PRIMARY KEY,
           applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    let current: i64 = conn
        .query_row("SELECT MAX(version) FROM provisionerd_schema", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0);
    if current > PG_SCHEMA_VERSION {
        return Err(CoordError::SchemaTooNew(format!(
            "open database: its schema is version {current}, written by a newer provisionerd; \
             this build knows versions up to {PG_SCHEMA_VERSION} (upgrade provisionerd, or \
             restore the backup taken before the upgrade)"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        tracing::info!(version, "apply database migration");
        conn.execute_batch("BEGIN")?;
        let applied = conn.execute_batch(sql).and_then(|_| {
            conn.execute(
                "INSERT INTO provisionerd_schema(version) VALUES (?1)",
                [version],
            )
            .map(|_| ())
        });
        match applied {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(CoordError::Internal(format!(
                    "apply database migration {version}: {e}"
                )));
            }
        }
    }
    // At every start, under the migration lock (replicas starting together
    // would contend on the same rows): names and import jobs for versions
    // pushed without them — before migration 3, or by a replica of an
    // older release still serving during a rolling upgrade. A read when
    // there is nothing to do.
    super::versions::backfill(conn)?;
    Ok(())
}
