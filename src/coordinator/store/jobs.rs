//! The job queue: enqueue, claim (offer → ack), logs, finish, queries.
//!
//! A job moves pending → running (on the daemon's ack) → succeeded | failed
//! | canceled; an operator cancel (see `cancel.rs`) ends a pending job at
//! once and turns a running one `canceling` until its daemon reports. While
//! pending it may carry `offered_to`: pushed to a daemon that has not
//! acknowledged it yet. Offers are cleared when that daemon's session ends,
//! so a dropped stream never strands a job.

use rusqlite::{OptionalExtension, Transaction, params};

use super::finished::{self, Reported};
use super::{Store, new_id, not_found, now_ms, tags_from_json, tags_to_json};
use crate::coordinator::error::{CoordError, Result};
use crate::proto::{self, JobOutcome, Transition};
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
    pub status: String,
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
        matches!(self.status.as_str(), "succeeded" | "failed" | "canceled")
    }
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<String>,
    pub initiator: Option<String>,
    pub limit: u32,
    /// Only jobs listed after this one (older, or as old and inserted
    /// earlier): the cursor of the previous page.
    pub after: Option<String>,
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

impl Store {
    pub fn job(&self, id: &str) -> Result<JobRow> {
        self.conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                job_from_row,
            )
            .optional()?
            .ok_or_else(|| not_found("job", id))
    }

    /// The newest job of a workspace (its latest build).
    pub fn latest_build(&self, workspace_id: &str) -> Result<Option<JobRow>> {
        Ok(self
            .conn()
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
        let job = self.owned("fetch job input", job_id, daemon_name, key_name)?;
        if job.is_finished() {
            return Err(CoordError::FailedPrecondition(format!(
                "fetch job input {job_id}: it has already {}",
                job.status
            )));
        }
        // The fetch counts as the daemon's first heartbeat: a slow one must
        // not let the lease run out before terraform even starts.
        self.conn().execute(
            "UPDATE jobs SET updated_at = ?2 WHERE id = ?1",
            params![job_id, now_ms()],
        )?;
        let archive = self.version_archive(&job.template_version_id)?;
        let state = match (job.kind, &job.workspace_id) {
            (JobKind::WorkspaceBuild(_), Some(ws)) => {
                self.workspace_by_id(ws)?.state.unwrap_or_default()
            }
            _ => Vec::new(),
        };
        Ok((archive, state))
    }

    /// A report on its way in (a FinishJob's header, then each chunk of its
    /// state): the caller must own the job — checked before any chunk is
    /// read, so nobody makes the coordinator buffer a state for a job that
    /// is not theirs — and an unfinished job's lease is renewed, so a large
    /// state on a slow link does not make it look lost.
    pub fn reporting(&self, job_id: &str, daemon_name: &str, key_name: &str) -> Result<()> {
        let job = self.owned("finish job", job_id, daemon_name, key_name)?;
        if !job.is_finished() {
            self.conn().execute(
                "UPDATE jobs SET updated_at = ?2 WHERE id = ?1",
                params![job_id, now_ms()],
            )?;
        }
        Ok(())
    }

    /// The daemon acknowledged an offer: it owns the job from now on.
    pub fn ack(
        &self,
        job_id: &str,
        daemon_id: &str,
        daemon_name: &str,
        key_name: &str,
    ) -> Result<()> {
        let now = now_ms();
        let n = self.conn().execute(
            "UPDATE jobs SET status = 'running', offered_to = NULL, daemon_id = ?2,
                 daemon_name = ?3, key_name = ?4, started_at = ?5, updated_at = ?5
             WHERE id = ?1 AND offered_to = ?2 AND status = 'pending'",
            params![job_id, daemon_id, daemon_name, key_name, now],
        )?;
        if n == 0 {
            // Already acknowledged by the daemon's first unary call (and
            // maybe canceled since: the daemon was told on its own).
            let job = self.job(job_id)?;
            if matches!(job.status.as_str(), "running" | "canceling")
                && job.daemon_id.as_deref() == Some(daemon_id)
            {
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
    pub(super) fn owned(
        &self,
        action: &str,
        job_id: &str,
        daemon_name: &str,
        key_name: &str,
    ) -> Result<JobRow> {
        let mut job = self.job(job_id)?;
        if job.status == "pending" {
            let daemon_id: Option<String> = self
                .conn()
                .query_row(
                    "SELECT d.id FROM daemons d JOIN jobs j ON j.offered_to = d.id
                     WHERE j.id = ?1 AND d.name = ?2 AND d.key_name = ?3",
                    params![job_id, daemon_name, key_name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(daemon_id) = daemon_id {
                self.ack(job_id, &daemon_id, daemon_name, key_name)?;
            }
            // Read again either way: the session's AckJob may have landed
            // between the first read and the query (clearing `offered_to`),
            // and the stale pending row would refuse the job's own daemon.
            job = self.job(job_id)?;
        }
        if job.status == "canceled" && job.daemon_name.is_none() {
            // Canceled while offered: a refusal the daemon must not retry.
            return Err(CoordError::FailedPrecondition(format!(
                "{action} {job_id}: it was canceled before it started"
            )));
        }
        if job.daemon_name.as_deref() != Some(daemon_name)
            || job.key_name.as_deref() != Some(key_name)
        {
            return Err(CoordError::PermissionDenied(format!(
                "job {job_id} is not owned by daemon {daemon_name:?}"
            )));
        }
        Ok(job)
    }

    /// Ends a job with the daemon's result and, when `req.has_state`, the
    /// state it streamed (already checked against the header's size and
    /// hash). Repeating the same report is acknowledged again (the daemon
    /// may have lost our first answer); a different one for a job that has
    /// ended is refused, naming the difference (see `finished.rs`).
    pub fn finish(
        &self,
        daemon_name: &str,
        key_name: &str,
        req: &proto::FinishJobRequest,
        state: &[u8],
    ) -> Result<()> {
        let job = self.owned("finish job", &req.job_id, daemon_name, key_name)?;
        let status = match JobOutcome::try_from(req.outcome) {
            Ok(JobOutcome::Succeeded) => "succeeded",
            Ok(JobOutcome::Failed) => "failed",
            Ok(JobOutcome::Canceled) => "canceled",
            _ => {
                return Err(CoordError::Invalid(format!(
                    "finish job {}: outcome {} is not a final outcome",
                    req.job_id, req.outcome
                )));
            }
        };
        let sent = Reported::new(status, req);
        if job.lost {
            return self.finish_lost(&job, &sent, req, state);
        }
        if job.is_finished() {
            return self.judge_repeat(&job, &sent);
        }
        // A canceling job takes any outcome: terraform may have finished
        // before the interrupt reached it, and its state must be kept.
        if req.log_count != job.log_count {
            return Err(CoordError::FailedPrecondition(format!(
                "finish job {}: daemon shipped {} log lines but {} are stored",
                req.job_id, req.log_count, job.log_count
            )));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let error = (!req.error.is_empty()).then_some(req.error.as_str());
        let changed = tx.execute(
            "UPDATE jobs SET status = ?2, error = ?3, finished_at = ?4, updated_at = ?4
             WHERE id = ?1 AND status IN ('running', 'canceling')",
            params![job.id, status, error, now_ms()],
        )?;
        if changed == 0 {
            // The lease reaper failed it between our read and this write:
            // the result is a late one now.
            drop(tx);
            drop(conn);
            let job = self.job(&req.job_id)?;
            if job.lost {
                return self.finish_lost(&job, &sent, req, state);
            }
            return self.judge_repeat(&job, &sent);
        }
        finished::keep_report(&tx, &job.id, &sent)?;
        if !req.replacements.is_empty() {
            tx.execute(
                "UPDATE jobs SET replacements = ?2 WHERE id = ?1",
                params![job.id, serde_json::to_string(&req.replacements)?],
            )?;
        }
        match (job.kind, &job.workspace_id) {
            (JobKind::TemplateImport, _) if status == "succeeded" => {
                tx.execute(
                    "UPDATE template_versions SET declared = ?2 WHERE id = ?1",
                    params![
                        job.template_version_id,
                        super::catalog::declared_to_json(&req.variables)?
                    ],
                )?;
                tx.execute(
                    "UPDATE templates SET active_version_id = ?1
                     WHERE name = (SELECT template FROM template_versions WHERE id = ?1)",
                    [&job.template_version_id],
                )?;
            }
            (JobKind::WorkspaceBuild(transition), Some(ws)) => {
                // Absent state means "keep the previous one" (the plan failed
                // before terraform touched it).
                if req.has_state {
                    tx.execute(
                        "UPDATE workspaces SET state = ?2 WHERE id = ?1",
                        params![ws, state],
                    )?;
                }
                if transition == Transition::Destroy && status == "succeeded" {
                    tx.execute("UPDATE workspaces SET deleted = 1 WHERE id = ?1", [ws])?;
                }
            }
            _ => {}
        }
        tx.commit()?;
        Ok(())
    }

    /// The late result of a job the reaper failed: the job stays failed
    /// (it was reported so, and nobody must rely on a different ending),
    /// but the state terraform wrote is stored and the error says how the
    /// run really ended. Repeats are acknowledged again.
    fn finish_lost(
        &self,
        job: &JobRow,
        sent: &Reported,
        req: &proto::FinishJobRequest,
        state: &[u8],
    ) -> Result<()> {
        let status = sent.outcome();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let took: i64 = tx.query_row("SELECT lost FROM jobs WHERE id = ?1", [&job.id], |r| {
            r.get(0)
        })?;
        if took == 2 {
            drop(tx);
            drop(conn);
            return self.judge_repeat(job, sent);
        }
        let error = format!(
            "{}; the daemon reported later: {status}{}",
            job.error.as_deref().unwrap_or("daemon lost"),
            if req.error.is_empty() {
                String::new()
            } else {
                format!(" ({})", req.error)
            }
        );
        let mut error = error;
        if let (JobKind::WorkspaceBuild(_), Some(ws), true) =
            (job.kind, &job.workspace_id, req.has_state)
        {
            // Only the workspace's newest build may set its state: a build
            // queued after the failure has a newer one (or is making it).
            let newest: Option<String> = tx
                .query_row(
                    "SELECT id FROM jobs WHERE workspace_id = ?1
                     ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    [ws],
                    |r| r.get(0),
                )
                .optional()?;
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
                error
                    .push_str("; its state was kept on the job, not applied: a later build exists");
            }
        }
        tx.execute(
            "UPDATE jobs SET lost = 2, error = ?2, updated_at = ?3 WHERE id = ?1",
            params![job.id, error, now_ms()],
        )?;
        finished::keep_report(&tx, &job.id, sent)?;
        tx.commit()?;
        Ok(())
    }

    /// Fails running jobs whose daemon has not been heard from since
    /// `cutoff_ms`; returns the ids failed.
    pub fn fail_lost_jobs(&self, cutoff_ms: i64) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, daemon_name FROM jobs
             WHERE status IN ('running', 'canceling') AND updated_at < ?1",
        )?;
        let lost: Vec<(String, Option<String>)> = stmt
            .query_map([cutoff_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (id, daemon) in &lost {
            conn.execute(
                "UPDATE jobs SET status = 'failed', error = ?2, finished_at = ?3, lost = 1
                 WHERE id = ?1 AND status IN ('running', 'canceling')",
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
    }
}
