//! The job queue: reads, ownership (offer → ack), job input, logs and the
//! lease reaper; a job's row is made in `enqueue.rs` and ended in
//! `finished.rs`.
//!
//! A job moves pending → running (on the daemon's ack) → succeeded | failed
//! | canceled; an operator cancel (see `cancel.rs`) ends a pending job at
//! once and turns a running one `canceling` until its daemon reports. While
//! pending it may carry `offered_to`: pushed to a daemon that has not
//! acknowledged it yet. Offers are cleared when that daemon's session ends,
//! so a dropped stream never strands a job.

use super::db::{Connection, OptionalExtension, params};

use super::catalog::{version_archive_in, workspace_state_in};
use super::enqueue::kind_from_db;
// `offers.rs` names the kind from here.
pub(super) use super::enqueue::JobKind;
use super::{JobStatus, Store, not_found, now_ms, tags_from_json};
use crate::coordinator::error::{CoordError, Result};
use crate::tags::Tags;

#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub initiator: String,
    pub tags: Tags,
    pub template_version_id: String,
    pub workspace_id: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub daemon_id: Option<String>,
    pub daemon_name: Option<String>,
    pub key_name: Option<String>,
    pub log_count: u64,
    /// Failed by the lease reaper (see [`Store::fail_lost_jobs`]).
    pub lost: bool,
    /// While pending: the daemon (name) it is offered to, until that daemon
    /// acknowledges it or the offer expires.
    pub offered_to: Option<String>,
    /// A claim build's replaced resources (see `FinishJobRequest`).
    pub replacements: Vec<String>,
}

impl JobRow {
    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only jobs in one of these states; empty: any.
    pub statuses: Vec<JobStatus>,
    pub initiator: Option<String>,
    pub limit: u32,
    /// Only jobs listed after this one (older, or as old and inserted
    /// earlier): the cursor of the previous page.
    pub after: Option<String>,
}

const JOB_COLUMNS: &str = "id, type, transition, status, initiator, tags, template_version_id,
    workspace_id, created_at, started_at, finished_at, error, daemon_id, daemon_name,
    key_name, log_count, lost,
    (SELECT d.name FROM daemons d WHERE d.id = jobs.offered_to AND jobs.status = 'pending'),
    replacements";

fn job_from_row(r: &super::db::Row<'_>) -> super::db::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        kind: kind_from_db(
            &r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?.as_deref(),
        ),
        status: r.get(3)?,
        initiator: r.get(4)?,
        tags: tags_from_json(&r.get::<_, String>(5)?),
        template_version_id: r.get(6)?,
        workspace_id: r.get(7)?,
        created_at: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        error: r.get(11)?,
        daemon_id: r.get(12)?,
        daemon_name: r.get(13)?,
        key_name: r.get(14)?,
        log_count: r.get::<_, i64>(15)? as u64,
        lost: r.get::<_, i64>(16)? != 0,
        offered_to: r.get(17)?,
        replacements: r
            .get::<_, Option<String>>(18)?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
    })
}

/// Job `id`, read on the caller's connection (its transaction).
pub(super) fn job_in(conn: &Connection, id: &str) -> Result<JobRow> {
    // Cached: the hottest read of the daemon calls.
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id], job_from_row)
        .optional()?
        .ok_or_else(|| not_found("job", id))
}

/// The newest job of a workspace (its latest build).
pub(super) fn latest_build_in(conn: &Connection, workspace_id: &str) -> Result<Option<JobRow>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE workspace_id = ?1
                 ORDER BY created_at DESC, rowid DESC LIMIT 1"
            ),
            [workspace_id],
            job_from_row,
        )
        .optional()?)
}

impl Store {
    pub fn job(&self, id: &str) -> Result<JobRow> {
        self.read(|c| job_in(c, id))
    }

    /// The newest job of a workspace (its latest build).
    pub fn latest_build(&self, workspace_id: &str) -> Result<Option<JobRow>> {
        self.read(|c| latest_build_in(c, workspace_id))
    }

    pub fn list_jobs(&self, f: &JobFilter) -> Result<Vec<JobRow>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE (CAST(?1 AS TEXT) IS NULL OR (',' || ?1 || ',') LIKE ('%,' || status || ',%'))
               AND (CAST(?2 AS TEXT) IS NULL OR initiator = ?2)
               AND (CAST(?4 AS TEXT) IS NULL OR (created_at, rowid) <
                    (SELECT created_at, rowid FROM jobs WHERE id = ?4))
             ORDER BY created_at DESC, rowid DESC LIMIT ?3"
        ))?;
        let limit = if f.limit == 0 { 100 } else { f.limit };
        // The states as one list, `pending,running` (no state holds a comma
        // or a LIKE wildcard), so one statement serves any number of them.
        let statuses = (!f.statuses.is_empty()).then(|| {
            let names: Vec<_> = f.statuses.iter().map(|s| s.as_str()).collect();
            names.join(",")
        });
        let rows = stmt.query_map(params![statuses, f.initiator, limit, f.after], job_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The blobs of a job its daemon fetches after confirming it: the
    /// template archive and, for a build, the workspace's state (empty for
    /// the first build). Only for the daemon that owns the unfinished job.
    pub fn job_input(
        &self,
        job_id: &str,
        daemon_name: &str,
        key_name: &str,
        secret: &str,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        self.write(|tx| {
            let job = owned_in(tx, "fetch job input", job_id, daemon_name, key_name, secret)?;
            if job.is_finished() {
                return Err(CoordError::FailedPrecondition(format!(
                    "fetch job input {job_id}: it has already {}",
                    job.status
                )));
            }
            // The fetch counts as the daemon's first heartbeat: a slow one
            // must not let the lease run out before terraform even starts.
            tx.execute(
                "UPDATE jobs SET updated_at = ?2 WHERE id = ?1",
                params![job_id, now_ms()],
            )?;
            let archive = version_archive_in(tx, &job.template_version_id)?;
            let state = match (job.kind, &job.workspace_id) {
                (JobKind::WorkspaceBuild(_), Some(ws)) => workspace_state_in(tx, ws)?,
                _ => Vec::new(),
            };
            Ok((archive, state))
        })
    }

    /// A report on its way in (a FinishJob's header, then each chunk of its
    /// state): the caller must own the job — checked before any chunk is
    /// read, so nobody makes the coordinator buffer a state for a job that
    /// is not theirs — and an unfinished job's lease is renewed, so a large
    /// state on a slow link does not make it look lost.
    pub fn reporting(
        &self,
        job_id: &str,
        daemon_name: &str,
        key_name: &str,
        secret: &str,
    ) -> Result<()> {
        self.write(|tx| {
            let job = owned_in(tx, "finish job", job_id, daemon_name, key_name, secret)?;
            if !job.is_finished() {
                tx.execute(
                    "UPDATE jobs SET updated_at = ?2 WHERE id = ?1",
                    params![job_id, now_ms()],
                )?;
            }
            Ok(())
        })
    }

    /// The daemon acknowledged an offer, presenting the offer's job
    /// `secret`: it owns the job from now on.
    pub fn ack(
        &self,
        job_id: &str,
        daemon_id: &str,
        daemon_name: &str,
        key_name: &str,
        secret: &str,
    ) -> Result<()> {
        self.write(|tx| ack_in(tx, job_id, daemon_id, daemon_name, key_name, secret))
    }

    /// Fails running jobs whose daemon has not been heard from since
    /// `cutoff_ms`; returns the ids failed.
    pub fn fail_lost_jobs(&self, cutoff_ms: i64) -> Result<Vec<String>> {
        self.write(|tx| {
            let lost: Vec<(String, Option<String>)> = tx
                .prepare(
                    "SELECT id, daemon_name FROM jobs
                     WHERE status IN ('running', 'canceling') AND updated_at < ?1",
                )?
                .query_map([cutoff_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (id, daemon) in &lost {
                tx.execute(
                    "UPDATE jobs SET status = 'failed', error = ?2, finished_at = ?3, lost = 1
                     WHERE id = ?1",
                    params![
                        id,
                        format!(
                            "daemon {:?} lost: no update within the job lease",
                            daemon.as_deref().unwrap_or("?")
                        ),
                        now_ms()
                    ],
                )?;
            }
            Ok(lost.into_iter().map(|(id, _)| id).collect())
        })
    }
}

/// See [`Store::ack`]. The offer's secret is checked on the row the
/// UPDATE took (its `RETURNING`), so the ack stays one statement; a wrong
/// one rolls the transaction back.
fn ack_in(
    conn: &Connection,
    job_id: &str,
    daemon_id: &str,
    daemon_name: &str,
    key_name: &str,
    secret: &str,
) -> Result<()> {
    let now = now_ms();
    let took: Option<Option<String>> = conn
        .prepare_cached(
            "UPDATE jobs SET status = 'running', offered_to = NULL, daemon_id = ?2,
                 daemon_name = ?3, key_name = ?4, started_at = ?5, updated_at = ?5
             WHERE id = ?1 AND offered_to = ?2 AND status = 'pending'
             RETURNING secret_hash",
        )?
        .query_row(
            params![job_id, daemon_id, daemon_name, key_name, now],
            |r| r.get(0),
        )
        .optional()?;
    match took {
        Some(hash) => check_secret("acknowledge job", job_id, hash.as_deref(), secret),
        None => {
            // Already acknowledged by the daemon's first unary call (and
            // maybe canceled, or even finished since: the stream's AckJob
            // and the unary calls race, and a fast job can end before its
            // AckJob is read). Nothing to do, and nothing to refuse.
            let job = job_in(conn, job_id)?;
            if job.status != JobStatus::Pending && job.daemon_id.as_deref() == Some(daemon_id) {
                return Ok(());
            }
            Err(CoordError::FailedPrecondition(format!(
                "acknowledge job {job_id}: it is not offered to this daemon"
            )))
        }
    }
}

/// Job `id` and the hash of the secret its latest offer handed out, in
/// one read: the ownership check costs no extra statement.
fn job_and_secret_in(conn: &Connection, id: &str) -> Result<(JobRow, Option<String>)> {
    conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS}, secret_hash FROM jobs WHERE id = ?1"
    ))?
    .query_row([id], |r| Ok((job_from_row(r)?, r.get(19)?)))
    .optional()?
    .ok_or_else(|| not_found("job", id))
}

/// The job secret a call about job `job_id` presented, against the hash
/// the job's offer stored. No hash: the job was offered before job secrets
/// existed (a coordinator upgraded while it ran), and only the name and
/// key bind it, as they did then. The refusal names the job, never the
/// secret.
fn check_secret(action: &str, job_id: &str, hash: Option<&str>, given: &str) -> Result<()> {
    let Some(hash) = hash else { return Ok(()) };
    if crate::coordinator::auth::job_secret_matches(hash, given) {
        return Ok(());
    }
    let why = if given.is_empty() {
        "the request did not carry its job secret"
    } else {
        "the request's job secret is not the one its offer handed out"
    };
    Err(CoordError::PermissionDenied(format!(
        "{action}: job {job_id} belongs to another daemon: {why}"
    )))
}

/// Checks that the job runs on this daemon (by daemon name and key) and
/// that the call carries the job's secret. The secret is checked before
/// anything is written, so a refused call changes nothing.
///
/// A job still offered to this daemon is acknowledged here: the daemon's
/// first unary call confirms it owns the job, whatever the order in which
/// its session's AckJob and this call arrive.
pub(super) fn owned_in(
    conn: &Connection,
    action: &str,
    job_id: &str,
    daemon_name: &str,
    key_name: &str,
    secret: &str,
) -> Result<JobRow> {
    let (mut job, hash) = job_and_secret_in(conn, job_id)?;
    if job.status == JobStatus::Pending {
        let daemon_id: Option<String> = conn
            .prepare_cached(
                "SELECT d.id FROM daemons d JOIN jobs j ON j.offered_to = d.id
                 WHERE j.id = ?1 AND d.name = ?2 AND d.key_name = ?3",
            )?
            .query_row(params![job_id, daemon_name, key_name], |r| r.get(0))
            .optional()?;
        if let Some(daemon_id) = daemon_id {
            // Before the ack: a caller without the secret must not take
            // the job by naming itself after the daemon it was offered to.
            check_secret(action, job_id, hash.as_deref(), secret)?;
            ack_in(conn, job_id, &daemon_id, daemon_name, key_name, secret)?;
            job = job_in(conn, job_id)?;
        }
    }
    // First: without the secret a caller learns nothing about the job,
    // not even which daemon runs it or that it was canceled.
    check_secret(action, job_id, hash.as_deref(), secret)?;
    if job.status == JobStatus::Canceled && job.daemon_name.is_none() {
        // Canceled while offered: a refusal the daemon must not retry.
        return Err(CoordError::FailedPrecondition(format!(
            "{action} {job_id}: it was canceled before it started"
        )));
    }
    if job.daemon_name.as_deref() != Some(daemon_name) || job.key_name.as_deref() != Some(key_name)
    {
        return Err(CoordError::PermissionDenied(format!(
            "job {job_id} is not owned by daemon {daemon_name:?}"
        )));
    }
    Ok(job)
}
