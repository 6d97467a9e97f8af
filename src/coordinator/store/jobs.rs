//! The job queue: enqueue, claim (offer → ack), logs, finish, queries.
//!
//! A job moves pending → running (on the daemon's ack) → succeeded | failed
//! | canceled; an operator cancel (see `cancel.rs`) ends a pending job at
//! once and turns a running one `canceling` until its daemon reports. While
//! pending it may carry `offered_to`: pushed to a daemon that has not
//! acknowledged it yet. Offers are cleared when that daemon's session ends,
//! so a dropped stream never strands a job.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::catalog::{version_archive_in, workspace_state_in};
use super::finished::{self, JobReport, Reported};
use super::{JobStatus, Store, new_id, not_found, now_ms, tags_from_json, tags_to_json};
use crate::coordinator::error::{CoordError, Result};
use crate::proto::{self, Transition};
use crate::tags::Tags;

/// The owner name that marks prebuild work; it queues behind people.
pub const PREBUILDS_OWNER: &str = "prebuilds";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    TemplateImport,
    WorkspaceBuild(Transition),
}

pub struct NewJob {
    pub kind: JobKind,
    pub initiator: String,
    pub tags: Tags,
    pub template_version_id: String,
    pub workspace_id: Option<String>,
}

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
    pub status: Option<JobStatus>,
    pub initiator: Option<String>,
    pub limit: u32,
    /// Only jobs listed after this one (older, or as old and inserted
    /// earlier): the cursor of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LogRow {
    pub seq: u64,
    pub created_at: i64,
    pub level: i32,
    pub source: i32,
    pub stage: String,
    pub output: String,
}

fn kind_to_db(kind: JobKind) -> (&'static str, Option<&'static str>) {
    match kind {
        JobKind::TemplateImport => ("template_import", None),
        JobKind::WorkspaceBuild(t) => (
            "workspace_build",
            Some(match t {
                Transition::Stop => "stop",
                Transition::Destroy => "destroy",
                _ => "start",
            }),
        ),
    }
}

fn kind_from_db(ty: &str, transition: Option<&str>) -> JobKind {
    match (ty, transition) {
        ("template_import", _) => JobKind::TemplateImport,
        (_, Some("stop")) => JobKind::WorkspaceBuild(Transition::Stop),
        (_, Some("destroy")) => JobKind::WorkspaceBuild(Transition::Destroy),
        _ => JobKind::WorkspaceBuild(Transition::Start),
    }
}

pub(super) fn insert_job(tx: &Transaction<'_>, job: &NewJob) -> Result<String> {
    let id = new_id();
    let (ty, transition) = kind_to_db(job.kind);
    tx.execute(
        "INSERT INTO jobs(id, type, status, initiator, is_prebuild, tags, template_version_id,
                          workspace_id, transition, created_at)
         VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            id,
            ty,
            job.initiator,
            job.initiator == PREBUILDS_OWNER,
            tags_to_json(&job.tags)?,
            job.template_version_id,
            job.workspace_id,
            transition,
            now_ms()
        ],
    )?;
    Ok(id)
}

const JOB_COLUMNS: &str = "id, type, transition, status, initiator, tags, template_version_id,
    workspace_id, created_at, started_at, finished_at, error, daemon_id, daemon_name,
    key_name, log_count, lost,
    (SELECT d.name FROM daemons d WHERE d.id = jobs.offered_to AND jobs.status = 'pending'),
    replacements";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
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
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
        [id],
        job_from_row,
    )
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
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR initiator = ?2)
               AND (?4 IS NULL OR (created_at, rowid) <
                    (SELECT created_at, rowid FROM jobs WHERE id = ?4))
             ORDER BY created_at DESC, rowid DESC LIMIT ?3"
        ))?;
        let limit = if f.limit == 0 { 100 } else { f.limit };
        let rows = stmt.query_map(params![f.status, f.initiator, limit, f.after], job_from_row)?;
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
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        self.write(|tx| {
            let job = owned_in(tx, "fetch job input", job_id, daemon_name, key_name)?;
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
    pub fn reporting(&self, job_id: &str, daemon_name: &str, key_name: &str) -> Result<()> {
        self.write(|tx| {
            let job = owned_in(tx, "finish job", job_id, daemon_name, key_name)?;
            if !job.is_finished() {
                tx.execute(
                    "UPDATE jobs SET updated_at = ?2 WHERE id = ?1",
                    params![job_id, now_ms()],
                )?;
            }
            Ok(())
        })
    }

    /// The daemon acknowledged an offer: it owns the job from now on.
    pub fn ack(
        &self,
        job_id: &str,
        daemon_id: &str,
        daemon_name: &str,
        key_name: &str,
    ) -> Result<()> {
        self.write(|tx| ack_in(tx, job_id, daemon_id, daemon_name, key_name))
    }

    /// [`owned_in`] as a transaction of its own, for `append_logs`.
    fn owned(
        &self,
        action: &str,
        job_id: &str,
        daemon_name: &str,
        key_name: &str,
    ) -> Result<JobRow> {
        self.write(|tx| owned_in(tx, action, job_id, daemon_name, key_name))
    }

    /// Stores log lines and bumps the job's heartbeat. Sequence numbers
    /// already stored are skipped (a retried batch), a gap is refused.
    /// Returns (lines stored so far, job canceled).
    pub fn append_logs(
        &self,
        job_id: &str,
        daemon_name: &str,
        key_name: &str,
        lines: &[proto::LogLine],
    ) -> Result<(u64, bool)> {
        let job = self.owned("update job", job_id, daemon_name, key_name)?;
        // A job the reaper failed still takes its daemon's logs: the daemon
        // was only out of touch, and its lines and state are worth keeping.
        if job.is_finished() && !job.lost {
            return Err(CoordError::FailedPrecondition(format!(
                "update job {job_id}: it has already {}",
                job.status
            )));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut stored: u64 =
            tx.query_row("SELECT log_count FROM jobs WHERE id = ?1", [job_id], |r| {
                r.get::<_, i64>(0)
            })? as u64;
        for line in lines {
            if line.seq <= stored {
                continue;
            }
            if line.seq != stored + 1 {
                return Err(CoordError::FailedPrecondition(format!(
                    "update job {job_id}: log line {} would leave a gap after {stored}",
                    line.seq
                )));
            }
            tx.execute(
                "INSERT INTO job_logs(job_id, seq, created_at, level, source, stage, output)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    job_id,
                    line.seq as i64,
                    line.created_at,
                    line.level,
                    line.source,
                    line.stage,
                    line.output
                ],
            )?;
            stored = line.seq;
        }
        tx.execute(
            "UPDATE jobs SET log_count = ?2, updated_at = ?3 WHERE id = ?1",
            params![job_id, stored as i64, now_ms()],
        )?;
        tx.commit()?;
        // A lost job is told to stop: it has been failed, whatever terraform
        // does next; the daemon interrupts it and reports its state.
        Ok((stored, job.status == JobStatus::Canceling || job.lost))
    }

    pub fn logs(&self, job_id: &str, after_seq: u64, limit: u32) -> Result<Vec<LogRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, created_at, level, source, stage, output FROM job_logs
             WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![job_id, after_seq as i64, limit], |r| {
            Ok(LogRow {
                seq: r.get::<_, i64>(0)? as u64,
                created_at: r.get(1)?,
                level: r.get(2)?,
                source: r.get(3)?,
                stage: r.get(4)?,
                output: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ends a job with the daemon's report and, when it has one, the state
    /// it streamed (already checked against the report's size and hash).
    /// Repeating the same report is acknowledged again (the daemon may have
    /// lost our first answer); a different one for a job that has ended is
    /// refused, naming the difference (see `finished.rs`).
    pub fn finish(
        &self,
        daemon_name: &str,
        key_name: &str,
        report: &JobReport,
        state: &[u8],
    ) -> Result<()> {
        let status = report.outcome;
        if !status.is_finished() {
            return Err(CoordError::Invalid(format!(
                "finish job {}: outcome {status} is not a final outcome",
                report.job_id
            )));
        }
        let sent = Reported::new(report);
        self.write(|tx| {
            let job = owned_in(tx, "finish job", &report.job_id, daemon_name, key_name)?;
            if job.lost {
                return finish_lost(tx, &job, &sent, report, state);
            }
            if job.is_finished() {
                return finished::judge_repeat(tx, &job, &sent);
            }
            // A canceling job takes any outcome: terraform may have finished
            // before the interrupt reached it, and its state must be kept.
            if report.log_count != job.log_count {
                return Err(CoordError::FailedPrecondition(format!(
                    "finish job {}: daemon shipped {} log lines but {} are stored",
                    report.job_id, report.log_count, job.log_count
                )));
            }
            let error = (!report.error.is_empty()).then_some(report.error.as_str());
            tx.execute(
                "UPDATE jobs SET status = ?2, error = ?3, finished_at = ?4, updated_at = ?4
                 WHERE id = ?1",
                params![job.id, status, error, now_ms()],
            )?;
            finished::keep_report(tx, &job.id, &sent)?;
            if !report.replacements.is_empty() {
                tx.execute(
                    "UPDATE jobs SET replacements = ?2 WHERE id = ?1",
                    params![job.id, serde_json::to_string(&report.replacements)?],
                )?;
            }
            match (job.kind, &job.workspace_id) {
                (JobKind::TemplateImport, _) if status == JobStatus::Succeeded => {
                    tx.execute(
                        "UPDATE template_versions SET declared = ?2 WHERE id = ?1",
                        params![
                            job.template_version_id,
                            super::catalog::declared_to_json(&report.variables)?
                        ],
                    )?;
                    tx.execute(
                        "UPDATE templates SET active_version_id = ?1
                         WHERE name = (SELECT template FROM template_versions WHERE id = ?1)",
                        [&job.template_version_id],
                    )?;
                }
                (JobKind::WorkspaceBuild(transition), Some(ws)) => {
                    // Absent state means "keep the previous one" (the plan
                    // failed before terraform touched it).
                    if report.state_sha256.is_some() {
                        tx.execute(
                            "UPDATE workspaces SET state = ?2 WHERE id = ?1",
                            params![ws, state],
                        )?;
                    }
                    if transition == Transition::Destroy && status == JobStatus::Succeeded {
                        tx.execute("UPDATE workspaces SET deleted = 1 WHERE id = ?1", [ws])?;
                    }
                }
                _ => {}
            }
            Ok(())
        })
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

/// See [`Store::ack`].
fn ack_in(
    conn: &Connection,
    job_id: &str,
    daemon_id: &str,
    daemon_name: &str,
    key_name: &str,
) -> Result<()> {
    let now = now_ms();
    let n = conn.execute(
        "UPDATE jobs SET status = 'running', offered_to = NULL, daemon_id = ?2,
             daemon_name = ?3, key_name = ?4, started_at = ?5, updated_at = ?5
         WHERE id = ?1 AND offered_to = ?2 AND status = 'pending'",
        params![job_id, daemon_id, daemon_name, key_name, now],
    )?;
    if n == 0 {
        // Already acknowledged by the daemon's first unary call (and
        // maybe canceled since: the daemon was told on its own).
        let job = job_in(conn, job_id)?;
        if job.status.is_running() && job.daemon_id.as_deref() == Some(daemon_id) {
            return Ok(());
        }
        return Err(CoordError::FailedPrecondition(format!(
            "acknowledge job {job_id}: it is not offered to this daemon"
        )));
    }
    Ok(())
}

/// Checks that the job runs on this daemon (by daemon name and key).
///
/// A job still offered to this daemon is acknowledged here: the daemon's
/// first unary call confirms it owns the job, whatever the order in which
/// its session's AckJob and this call arrive.
fn owned_in(
    conn: &Connection,
    action: &str,
    job_id: &str,
    daemon_name: &str,
    key_name: &str,
) -> Result<JobRow> {
    let mut job = job_in(conn, job_id)?;
    if job.status == JobStatus::Pending {
        let daemon_id: Option<String> = conn
            .query_row(
                "SELECT d.id FROM daemons d JOIN jobs j ON j.offered_to = d.id
                 WHERE j.id = ?1 AND d.name = ?2 AND d.key_name = ?3",
                params![job_id, daemon_name, key_name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(daemon_id) = daemon_id {
            ack_in(conn, job_id, &daemon_id, daemon_name, key_name)?;
            job = job_in(conn, job_id)?;
        }
    }
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

/// The late result of a job the reaper failed: the job stays failed (it
/// was reported so, and nobody must rely on a different ending), but the
/// state terraform wrote is stored and the error says how the run really
/// ended. Repeats are acknowledged again.
fn finish_lost(
    tx: &Connection,
    job: &JobRow,
    sent: &Reported,
    report: &JobReport,
    state: &[u8],
) -> Result<()> {
    let status = sent.outcome();
    // 2: its late report was taken already (see `ADDED_COLUMNS`).
    let took: i64 = tx.query_row("SELECT lost FROM jobs WHERE id = ?1", [&job.id], |r| {
        r.get(0)
    })?;
    if took == 2 {
        return finished::judge_repeat(tx, job, sent);
    }
    let mut error = format!(
        "{}; the daemon reported later: {status}{}",
        job.error.as_deref().unwrap_or("daemon lost"),
        if report.error.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.error)
        }
    );
    if let (JobKind::WorkspaceBuild(_), Some(ws), Some(_)) =
        (job.kind, &job.workspace_id, &report.state_sha256)
    {
        // Only the workspace's newest build may set its state: a build
        // queued after the failure has a newer one (or is making it).
        let newest = latest_build_in(tx, ws)?.map(|j| j.id);
        if newest.as_deref() == Some(job.id.as_str()) {
            tx.execute(
                "UPDATE workspaces SET state = ?2 WHERE id = ?1",
                params![ws, state],
            )?;
        } else {
            tx.execute(
                "UPDATE jobs SET late_state = ?2 WHERE id = ?1",
                params![job.id, state],
            )?;
            error.push_str("; its state was kept on the job, not applied: a later build exists");
        }
    }
    tx.execute(
        "UPDATE jobs SET lost = 2, error = ?2, updated_at = ?3 WHERE id = ?1",
        params![job.id, error, now_ms()],
    )?;
    finished::keep_report(tx, &job.id, sent)?;
    Ok(())
}
