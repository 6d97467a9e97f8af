//! Jobs an earlier run of this daemon never reported. A killed run's
//! terraform was stopped when the cache dir was opened (`orphans`); each of
//! its jobs is reported failed, with whatever the killed daemon had
//! spooled, one log line saying what happened, and the state the work dir
//! held. A run that gave up reporting after a cancel kept the job's
//! outcome, state and unconfirmed lines: those are reported as they were.
//! Either way no state is lost.

mod collect;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::backoff::Backoff;
use super::record::Records;
use super::record::Report;
use super::rpc::{self, Client, Verdict};
use super::spool;
use super::transfer;
use crate::grpc::Secret;
use crate::proto::{FinishJobRequest, JobOutcome, LogLevel, LogLine, LogSource, UpdateJobRequest};
pub(super) use collect::{Unfinished, collect};

/// The job error a restarted daemon reports.
pub(super) const RESTART_ERROR: &str = "daemon restarted during job";
/// The log line it appends to the job.
pub(super) const RESTART_LINE: &str = "daemon restarted during job; its terraform was stopped";
/// How long a start keeps trying to reach the coordinator; what is not
/// reported by then waits for the next start (the lease fails it anyway).
const REPORT_WINDOW: Duration = Duration::from_secs(30);
const BATCH_LINES: usize = 200;
const BATCH_BYTES: usize = 512 * 1024;

/// How one report attempt failed.
enum Failure {
    /// The coordinator will not take it (the job already ended, is not
    /// ours, is unknown): nothing more to do.
    Refused {
        code: Code,
        answer: String,
    },
    /// The coordinator refused our key: the jobs are not settled, they
    /// wait for a start with a valid key (the session reports the refusal).
    KeyRefused(String),
    Retry(String),
}

impl From<Status> for Failure {
    fn from(st: Status) -> Self {
        if st.code() == Code::Unauthenticated {
            return Failure::KeyRefused(rpc::describe(&st));
        }
        // No ack grace here: the job started long ago.
        match rpc::classify(&st, Duration::MAX) {
            Verdict::Refused => Failure::Refused {
                code: st.code(),
                answer: rpc::describe(&st),
            },
            Verdict::Retry => Failure::Retry(rpc::describe(&st)),
        }
    }
}

/// Reports every job in `jobs`, for at most [`REPORT_WINDOW`] or until
/// `stop`. A reported or refused job's record and spool are removed; the
/// others stay for the next start.
pub(super) async fn report_all(
    client: &Client,
    jobs: Vec<Unfinished>,
    records: &Records,
    spool_dir: &Path,
    stop: &CancellationToken,
) {
    let deadline = Instant::now() + REPORT_WINDOW;
    for job in jobs {
        let job_id = job.record.job_id.clone();
        let outcome = tokio::select! {
            () = stop.cancelled() => None,
            r = tokio::time::timeout_at(deadline, report(client, &job, records, spool_dir)) => r.ok(),
        };
        match outcome {
            Some(Ok(log_count)) => match &job.record.finished {
                None => tracing::info!(
                    job_id,
                    log_count,
                    has_state = job.state.is_some(),
                    "reported a job interrupted by a restart as failed: {RESTART_ERROR}"
                ),
                Some(finished) => tracing::info!(
                    job_id,
                    log_count,
                    has_state = job.state.is_some(),
                    outcome = finished.outcome,
                    "reported the result an earlier run could not deliver"
                ),
            },
            Some(Err(Failure::KeyRefused(error))) => {
                tracing::warn!(
                    error,
                    "report unfinished jobs of an earlier run: key refused; they wait for the next start"
                );
                return;
            }
            Some(Err(Failure::Refused { code, answer })) => tracing::info!(
                job_id,
                answer,
                "report an unfinished job of an earlier run: {}; record dropped",
                refusal(code)
            ),
            // `report` retries those itself until the window closes.
            Some(Err(Failure::Retry(_))) | None => {
                tracing::warn!(
                    job_id,
                    "report an unfinished job of an earlier run: coordinator not reachable \
                     in time; trying again at the next start"
                );
                continue;
            }
        }
        if let Err(e) = records.remove(&job_id) {
            tracing::warn!(job_id, error = %e, "remove job record");
        }
        if let Err(e) = spool::remove(spool_dir, &job_id) {
            tracing::warn!(job_id, error = %e, "remove job log spool");
        }
    }
}

/// Reports one job, retrying transport errors; `Err` is a refusal (never
/// `Failure::Retry`).
async fn report(
    client: &Client,
    job: &Unfinished,
    records: &Records,
    spool_dir: &Path,
) -> Result<u64, Failure> {
    let mut backoff = Backoff::new();
    // Numbered once: a retry after a lost answer resends the same line, and
    // the coordinator's seq dedup keeps it once.
    let mut restart_line = None;
    loop {
        match attempt(client, job, records, spool_dir, &mut restart_line).await {
            Ok(n) => return Ok(n),
            Err(Failure::Retry(error)) => {
                let wait = backoff.next_delay();
                tracing::warn!(
                    job_id = job.record.job_id,
                    error,
                    retry_in = ?wait,
                    "report an unfinished job of an earlier run: failed; retrying"
                );
                tokio::time::sleep(wait).await;
            }
            Err(refused) => return Err(refused),
        }
    }
}

async fn attempt(
    client: &Client,
    job: &Unfinished,
    records: &Records,
    spool_dir: &Path,
    restart_line: &mut Option<LogLine>,
) -> Result<u64, Failure> {
    let job_id = &job.record.job_id;
    let secret = &job.record.job_secret;
    // An empty update tells how many lines the coordinator holds.
    let mut stored = update(client, job_id, secret, Vec::new()).await?;
    if restart_line.is_none() {
        stored = ship_spool(client, job_id, secret, spool_dir, stored).await?;
    }
    let report = match &job.record.finished {
        // The job ended; only its report was missing.
        Some(finished) => finished.request(job_id, secret, job.state.clone(), stored),
        None => {
            let line = restart_line.get_or_insert_with(|| daemon_line(stored + 1));
            if stored < line.seq {
                stored = update(client, job_id, secret, vec![line.clone()]).await?;
            }
            Report {
                header: FinishJobRequest {
                    job_id: job_id.clone(),
                    outcome: JobOutcome::Failed as i32,
                    error: RESTART_ERROR.to_string(),
                    has_state: job.state.is_some(),
                    log_count: stored,
                    job_secret: secret.expose().to_string(),
                    ..Default::default()
                },
                state: job.state.clone(),
            }
        }
    };
    transfer::finish_keeping_state(client, records, &report).await?;
    Ok(stored)
}

/// What the coordinator meant by refusing a report with `code`.
fn refusal(code: Code) -> &'static str {
    match code {
        Code::FailedPrecondition => "the coordinator answered that the job already ended",
        Code::PermissionDenied => "the coordinator answered that the job is not this daemon's",
        Code::NotFound => "the coordinator answered that it does not know the job",
        Code::InvalidArgument => "the coordinator answered that the report is invalid",
        _ => "the coordinator refused it",
    }
}

/// Ships the spooled lines that continue the coordinator's copy (from
/// `stored + 1`, without gaps); returns the new stored count. A spool that
/// cannot be read, or that does not continue the copy (those lines died in
/// the killed daemon's memory), ends the job's log where it is.
async fn ship_spool(
    client: &Client,
    job_id: &str,
    secret: &Secret,
    spool_dir: &Path,
    mut stored: u64,
) -> Result<u64, Failure> {
    let path = spool::path(spool_dir, job_id);
    let mut reader = match spool::Reader::open(&path) {
        Ok(Some(reader)) => reader,
        Ok(None) => return Ok(stored),
        Err(e) => {
            tracing::warn!(job_id, error = %e, "spooled job logs not delivered");
            return Ok(stored);
        }
    };
    let mut batch: Vec<LogLine> = Vec::new();
    let mut bytes = 0;
    loop {
        let next_seq = stored + batch.len() as u64 + 1;
        let line = match reader.next() {
            Ok(Some(line)) if line.seq < next_seq => continue,
            Ok(Some(line)) if line.seq == next_seq => Some(line),
            Ok(Some(line)) => {
                tracing::warn!(
                    job_id,
                    from = next_seq,
                    to = line.seq - 1,
                    "job log lines lost with the killed daemon"
                );
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(job_id, error = %e, "rest of the spooled job logs not delivered");
                None
            }
        };
        let end = line.is_none();
        if let Some(line) = line {
            bytes += line.output.len();
            batch.push(line);
        }
        if !batch.is_empty() && (end || batch.len() >= BATCH_LINES || bytes >= BATCH_BYTES) {
            stored = update(client, job_id, secret, std::mem::take(&mut batch)).await?;
            bytes = 0;
        }
        if end {
            return Ok(stored);
        }
    }
}

async fn update(
    client: &Client,
    job_id: &str,
    secret: &Secret,
    logs: Vec<LogLine>,
) -> Result<u64, Failure> {
    let req = UpdateJobRequest {
        job_id: job_id.to_string(),
        logs,
        job_secret: secret.expose().to_string(),
    };
    Ok(rpc::bounded(client.clone().update_job(req))
        .await?
        .stored_seq)
}

fn daemon_line(seq: u64) -> LogLine {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    LogLine {
        seq,
        created_at: now,
        level: LogLevel::Error as i32,
        source: LogSource::Daemon as i32,
        stage: "Cleaning Up".to_string(),
        output: RESTART_LINE.to_string(),
    }
}
