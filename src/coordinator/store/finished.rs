//! Ending a job with its daemon's report ([`JobReport`]): the result
//! applied (status, state, an import's declared variables), a lost job's
//! late report, and the report kept on the job (`jobs.report`) so a
//! repeated FinishJob can be judged: the same report again — a retry
//! whose answer was lost — is acknowledged, a different one is refused,
//! naming what differs, and never replaces what was taken.

use super::db::{Connection, OptionalExtension, params};

use super::catalog::declared_to_json;
use super::enqueue::JobKind;
use super::jobs::{JobRow, latest_build_in, owned_in};
use super::{DeclaredVar, JobStatus, Store, now_ms};
use crate::coordinator::error::{CoordError, Result};
use crate::proto::Transition;

/// How a daemon says a job ended, as the store takes it: FinishJob's
/// header, converted at the edge (`coordinator::transfer::job_report`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub job_id: String,
    /// Succeeded, failed or canceled.
    pub outcome: JobStatus,
    pub error: String,
    /// Log lines the daemon shipped: all of them must be stored.
    pub log_count: u64,
    /// The returned state's sha256 (lowercase hex), which the transfer
    /// checked against the bytes; `None`: no state (keep the previous one).
    pub state_sha256: Option<String>,
    /// The variables an import found declared.
    pub variables: Vec<DeclaredVar>,
    /// The resources a claim build replaced.
    pub replacements: Vec<String>,
}

/// What a FinishJob said; two reports are the same report when all of it
/// is equal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Reported {
    outcome: JobStatus,
    error: String,
    log_count: u64,
    /// The returned state's sha256 (lowercase hex); `None`: no state.
    state_sha256: Option<String>,
}

/// Longest error text quoted in a refusal.
const QUOTE_CHARS: usize = 200;

impl Reported {
    pub(super) fn new(report: &JobReport) -> Reported {
        Reported {
            outcome: report.outcome,
            error: report.error.clone(),
            log_count: report.log_count,
            state_sha256: report.state_sha256.clone(),
        }
    }

    /// The outcome, as a job status.
    pub(super) fn outcome(&self) -> JobStatus {
        self.outcome
    }

    pub(super) fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    /// What `sent` says that this (the stored report) does not.
    fn differences(&self, sent: &Reported) -> Vec<String> {
        let mut out = Vec::new();
        if self.outcome != sent.outcome {
            out.push(format!(
                "outcome {} (this report: {})",
                self.outcome, sent.outcome
            ));
        }
        if self.error != sent.error {
            out.push(format!(
                "error {:?} (this report: {:?})",
                quote(&self.error),
                quote(&sent.error)
            ));
        }
        if self.log_count != sent.log_count {
            out.push(format!(
                "log_count {} (this report: {})",
                self.log_count, sent.log_count
            ));
        }
        if self.state_sha256 != sent.state_sha256 {
            let state = |s: &Option<String>| {
                s.as_ref()
                    .map_or_else(|| "none".to_string(), |h| format!("sha256 {h}"))
            };
            out.push(format!(
                "state {} (this report: {})",
                state(&self.state_sha256),
                state(&sent.state_sha256)
            ));
        }
        out
    }
}

fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Store {
    /// Ends a job with the daemon's report and, when it has one, the state
    /// it streamed (already checked against the report's size and hash).
    /// Repeating the same report is acknowledged again (the daemon may have
    /// lost our first answer); a different one for a job that has ended is
    /// refused, naming the difference (see `finished.rs`).
    pub fn finish(
        &self,
        daemon_name: &str,
        key_name: &str,
        secret: &str,
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
            let job = owned_in(
                tx,
                "finish job",
                &report.job_id,
                daemon_name,
                key_name,
                secret,
            )?;
            if job.lost {
                return finish_lost(tx, &job, &sent, report, state);
            }
            if job.is_finished() {
                return judge_repeat(tx, &job, &sent);
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
            keep_report(tx, &job.id, &sent)?;
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
                            declared_to_json(&report.variables)?
                        ],
                    )?;
                    // Only if the push asked for it (and nobody archived
                    // the version meanwhile), and it was pushed after the
                    // last change of the active version: a slow import
                    // never undoes a newer push or a rollback, and pushes
                    // still importing activate in push order (see
                    // versions.rs).
                    tx.execute(
                        "UPDATE templates SET active_version_id = v.id,
                                              activated_through = v.seq
                         FROM (SELECT id, template, rowid AS seq FROM template_versions
                               WHERE id = ?1 AND activate = 1 AND archived = 0) AS v
                         WHERE templates.name = v.template
                           AND (templates.activated_through IS NULL
                                OR templates.activated_through < v.seq)",
                        [&job.template_version_id],
                    )?;
                }
                (JobKind::WorkspaceBuild(transition), Some(ws)) => {
                    // Absent state means "keep the previous one" (the plan
                    // failed before terraform touched it).
                    if report.state_sha256.is_some() {
                        super::blobs::set_state(tx, ws, state)?;
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
        return judge_repeat(tx, job, sent);
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
            super::blobs::set_state(tx, ws, state)?;
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
    keep_report(tx, &job.id, sent)?;
    Ok(())
}

/// A FinishJob for a job that has already ended with a report: the same
/// report is acknowledged again, a different one refused. A job ended
/// before reports were kept is judged by its status alone.
pub(super) fn judge_repeat(conn: &Connection, job: &JobRow, sent: &Reported) -> Result<()> {
    let stored: Option<String> = conn
        .query_row("SELECT report FROM jobs WHERE id = ?1", [&job.id], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    let stored: Option<Reported> = stored.and_then(|s| serde_json::from_str(&s).ok());
    judge(job, stored.as_ref(), sent)
}

/// Keeps `report` on the job, within the caller's transaction.
pub(super) fn keep_report(tx: &Connection, job_id: &str, report: &Reported) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET report = ?2 WHERE id = ?1",
        params![job_id, report.to_json()?],
    )?;
    Ok(())
}

/// See [`judge_repeat`]; `stored` is the report the job ended with.
pub(super) fn judge(job: &JobRow, stored: Option<&Reported>, sent: &Reported) -> Result<()> {
    let ended = if job.lost {
        "its daemon has already reported late".to_string()
    } else {
        format!("it has already {}", job.status)
    };
    match stored {
        Some(stored) if stored == sent => Ok(()),
        Some(stored) => Err(CoordError::FailedPrecondition(format!(
            "finish job {}: {ended} with a different report, kept as it was: {}",
            job.id,
            stored.differences(sent).join("; ")
        ))),
        // Ended before reports were kept: the old rule (a late report
        // taken, or the same outcome, is acknowledged).
        None if job.lost || job.status == sent.outcome => Ok(()),
        None => Err(CoordError::FailedPrecondition(format!(
            "finish job {}: {ended}",
            job.id
        ))),
    }
}
