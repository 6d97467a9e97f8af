//! The report a daemon ended a job with, kept on the job (`jobs.report`)
//! so a repeated FinishJob can be judged: the same report again — a retry
//! whose answer was lost — is acknowledged, a different one is refused,
//! naming what differs, and never replaces what was taken.

use rusqlite::{Connection, OptionalExtension, params};

use super::jobs::JobRow;
use super::{DeclaredVar, JobStatus};
use crate::coordinator::error::{CoordError, Result};

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
