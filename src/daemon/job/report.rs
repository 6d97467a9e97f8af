//! Reporting a job's result: FinishJob with retries, the budget it gets
//! after a cancel, and what is kept on disk when that budget runs out.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::daemon::REPORT_BUDGET;
use crate::daemon::backlog::Backlog;
use crate::daemon::backoff::Backoff;
use crate::daemon::record::Report;
use crate::daemon::record::{Finished, JobRecord, Records};
use crate::daemon::rpc::{self, Client, Verdict};
use crate::daemon::transfer;
use crate::proto::LogLine;
use crate::runner::Outcome;

/// The report budget once the operator forced the stop: they asked for it
/// "at once", so the daemon does not keep them waiting for a coordinator
/// that does not answer.
pub(super) const FORCED_REPORT_BUDGET: Duration = Duration::from_secs(2);

/// Why a job's result did not reach the coordinator.
pub(super) enum Undelivered {
    /// The coordinator will not take it (e.g. it failed the job when the
    /// lease ran out): nothing left to do.
    Refused(String),
    /// The job's log spool could not be read back: the lines after
    /// `stored`, all the coordinator has, are lost.
    Spool { stored: u64, error: String },
    /// Given up after a cancel; the record stays, so the next start of the
    /// daemon reports the job.
    GaveUp(String),
}

/// Resolves once reporting is to be given up, with the budget that ran
/// out: [`REPORT_BUDGET`] after both a hard cancel and the runner's
/// return, or [`FORCED_REPORT_BUDGET`] after that and the forced kill,
/// whichever is first. Until cancel, reporting is retried for as long as
/// it takes; the runner's own SIGINT grace must not eat into the reporting
/// time.
pub(super) async fn deadline(
    cancel: &CancellationToken,
    runner_done: &CancellationToken,
    kill: &CancellationToken,
) -> Duration {
    cancel.cancelled().await;
    runner_done.cancelled().await;
    let forced = async {
        kill.cancelled().await;
        tokio::time::sleep(FORCED_REPORT_BUDGET).await;
    };
    tokio::select! {
        () = tokio::time::sleep(REPORT_BUDGET) => REPORT_BUDGET,
        () = forced => FORCED_REPORT_BUDGET,
    }
}

/// `action` was given up when `budget` ran out.
pub(super) fn gave_up(action: &str, budget: Duration) -> Undelivered {
    Undelivered::GaveUp(format!(
        "{action}: gave up {} after the cancel",
        humantime::format_duration(budget)
    ))
}

/// FinishJob, retried on transport errors (the coordinator acknowledges a
/// repeated result again; each retry streams the whole state anew). An
/// error is a refusal; a refused state is kept on disk
/// ([`transfer::finish_keeping_state`]).
pub(super) async fn finish(
    client: &Client,
    records: &Records,
    report: &Report,
    started: Instant,
) -> Result<(), Undelivered> {
    let req = &report.header;
    let mut backoff = Backoff::new();
    loop {
        let st = match transfer::finish_keeping_state(client, records, report).await {
            Ok(_) => return Ok(()),
            Err(st) => st,
        };
        if rpc::classify(&st, started.elapsed()) == Verdict::Refused {
            return Err(Undelivered::Refused(format!(
                "finish job {}: coordinator refused: {}",
                req.job_id,
                rpc::describe(&st)
            )));
        }
        let wait = backoff.next_delay();
        tracing::warn!(
            job_id = req.job_id,
            error = %rpc::describe(&st),
            retry_in = ?wait,
            "report job result failed; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// Keeps what the coordinator has not got, for the next start of the
/// daemon to report what really happened: the unconfirmed log lines in the
/// job's spool (`lines`: the backlog and the lines shipping never took),
/// the state beside the record, the outcome in it.
pub(super) fn give_up(
    records: &Records,
    mut record: JobRecord,
    report: &Report,
    outcome: &str,
    lines: Option<(Backlog, Vec<LogLine>)>,
    why: &str,
) {
    let req = &report.header;
    let job_id = req.job_id.as_str();
    tracing::error!(
        job_id,
        error = why,
        outcome,
        "job finished but not reported; the next start of the daemon reports it"
    );
    if let Some((backlog, rest)) = lines {
        match backlog.persist(rest) {
            Ok(Some(path)) => tracing::info!(
                job_id,
                spool = %path.display(),
                "kept the job's unconfirmed log lines for the next start"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(
                job_id,
                error = %e,
                "keep the job's unconfirmed log lines: failed; they are lost"
            ),
        }
    }
    // The work dir is gone: keep the state beside the record.
    if let Some(state) = &report.state
        && let Err(e) = records.save_state(job_id, state)
    {
        tracing::error!(job_id, error = %e, "terraform state of an unreported job lost");
    }
    record.finished = Some(Finished::of(req));
    if let Err(e) = records.write(&record) {
        tracing::error!(
            job_id,
            error = %e,
            "keep the job's outcome: failed; the next start reports it interrupted"
        );
    }
}

/// A job whose terraform was interrupted because the lease ran out is
/// failed, not canceled: nobody asked for the cancel.
pub(super) fn lease_failure(outcome: Outcome, lease: Duration) -> Outcome {
    match outcome {
        Outcome::Canceled { state, .. } => Outcome::Failed {
            error: format!(
                "coordinator unreachable for longer than the job lease ({}): \
                 terraform was interrupted",
                humantime::format_duration(lease)
            ),
            state,
        },
        other => other,
    }
}

/// A job whose log spool could not be read back is failed, whatever
/// terraform did: its log is incomplete. The error says both.
pub(super) fn spool_failure(outcome: Outcome, spool_error: &str) -> Outcome {
    let (error, state) = match outcome {
        Outcome::Canceled { state, .. } => {
            (format!("{spool_error}; terraform was interrupted"), state)
        }
        Outcome::Failed { error, state } => (format!("{error}; {spool_error}"), state),
        Outcome::Succeeded { state, .. } => {
            (format!("{spool_error}; terraform itself succeeded"), state)
        }
    };
    Outcome::Failed { error, state }
}
