//! Runs one acknowledged job: the runner in its own task, its logs shipped
//! alongside, then the result reported with FinishJob.
//!
//! | submodule | what it holds                                               |
//! |-----------|-------------------------------------------------------------|
//! | `confirm` | the unary confirmation that the job is ours                 |
//! | `input`   | fetching the job's archive and state before the runner runs |
//! | `report`  | FinishJob, the report budget, what a give-up keeps on disk  |

mod confirm;
mod input;
mod report;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::convert::{finish_request, job_from_offer, job_type_name, outcome_name};
use super::logship::{self, Progress, ShipError, Shipper};
use super::metrics::Metrics;
use super::record::{JobRecord, Records};
use super::rpc::Client;
use super::spool;
use crate::grpc::Secret;
use crate::proto::JobOffer;
use crate::runner::{self, Outcome, RunnerConfig};
use report::{Undelivered, lease_failure, spool_failure};

/// Lines the runner may get ahead of the shipper before it waits.
const LOG_CHANNEL_CAPACITY: usize = 1024;

/// What every job needs, set once per daemon.
pub(super) struct JobCtx {
    pub client: Client,
    pub runner: RunnerConfig,
    pub tracker: TaskTracker,
    /// The daemon's hard-cancel token (`Shutdown::cancel`).
    pub cancel: CancellationToken,
    /// The coordinator's job lease in milliseconds, 0 while unknown; set by
    /// the session on each Welcome (`session::Connector::lease_ms`).
    pub lease_ms: Arc<AtomicU64>,
    /// A record per running job, so a restarted daemon reports it.
    pub records: Records,
    /// Where log lines beyond the in-memory bound are spooled.
    pub spool_dir: PathBuf,
    /// The daemon's name (in every job's log span).
    pub name: String,
    pub metrics: Metrics,
}

/// Runs `offer` to the end and reports it. `job_cancel` interrupts the
/// runner (operator cancel or daemon shutdown); it is a child of
/// `ctx.cancel`. Returns whether the job was ours (and so ran).
pub(super) async fn run(ctx: &JobCtx, offer: JobOffer, job_cancel: CancellationToken) -> bool {
    let started = Instant::now();
    let kind = job_type_name(offer.r#type);
    ctx.metrics.job_started();
    let outcome = run_offer(ctx, offer, job_cancel, started).await;
    ctx.metrics.job_ended(kind, outcome, started.elapsed());
    outcome.is_some()
}

/// [`run`]; returns the outcome's name, `None` when the job was not ours.
async fn run_offer(
    ctx: &JobCtx,
    offer: JobOffer,
    job_cancel: CancellationToken,
    started: Instant,
) -> Option<&'static str> {
    let job_id = offer.job_id.clone();
    // Sent with every call about the job: only it binds the job to us.
    let secret = Secret::new(&offer.job_secret);
    let kind = job_type_name(offer.r#type);
    tracing::info!(
        job_id,
        r#type = kind,
        template = %offer.template_name,
        initiator = %offer.initiator,
        "job started"
    );
    // The confirmation and the input fetch run at once: GetJobInput
    // acknowledges an offered job just as the confirmation does (or is
    // refused with it), so the job waits for one round trip, not two.
    // Nothing runs, and no record is written, before the job is confirmed.
    let fetched = {
        let fetch = input::fetch(ctx, &offer, &job_cancel, started);
        let confirm = confirm::ownership(ctx, &job_id, &secret, &job_cancel);
        tokio::pin!(fetch, confirm);
        let mut fetched = None;
        let ours = loop {
            tokio::select! {
                ours = &mut confirm => break ours,
                r = &mut fetch, if fetched.is_none() => fetched = Some(r),
            }
        };
        if !ours {
            return None;
        }
        match fetched {
            Some(r) => r,
            None => fetch.await,
        }
    };
    let record = write_record(ctx, &job_id, &secret, kind);
    let runner_done = CancellationToken::new();
    let deadline = report::deadline(&ctx.cancel, &runner_done, &ctx.runner.force_kill);
    tokio::pin!(deadline);
    let mut progress = Progress::new(ctx.spool_dir.clone(), &job_id);

    let job = match fetched {
        Ok((archive, state)) => job_from_offer(offer, archive, state)
            .map_err(|error| Outcome::Failed { error, state: None }),
        Err(outcome) => Err(outcome),
    };
    // `rest`: lines the runner sent that shipping never took.
    let (outcome, shipped, rest) = match job {
        Ok(job) => {
            let (tx, mut rx) = mpsc::channel(LOG_CHANNEL_CAPACITY);
            let cfg = ctx.runner.clone();
            let cancel = job_cancel.clone();
            let done = runner_done.clone().drop_guard();
            // In the job's span: the runner's and the process module's
            // lines carry the job id and the daemon name.
            let runner = ctx.tracker.spawn(
                async move {
                    let _done = done;
                    runner::run(&cfg, job, tx, cancel).await
                }
                .in_current_span(),
            );
            let shipper = Shipper {
                client: &ctx.client,
                job_id: &job_id,
                secret: &secret,
                job_cancel: &job_cancel,
                started,
                lease_ms: &ctx.lease_ms,
                metrics: ctx.metrics.clone(),
            };
            let shipped = tokio::select! {
                r = shipper.ship(&mut rx, &mut progress) => r.map_err(|e| match e {
                    ShipError::Refused { .. } => Undelivered::Refused(e.to_string()),
                    ShipError::Spool { stored, .. } => Undelivered::Spool {
                        stored,
                        error: e.to_string(),
                    },
                }),
                budget = &mut deadline => Err(report::gave_up("ship job logs", budget)),
            };
            let mut rest = Vec::new();
            if shipped.is_err() {
                // Nobody takes our lines any more: stop the work, and keep
                // reading so the runner never blocks on a full channel.
                // After a give-up the runner is done and these are its last
                // lines, kept for the next start.
                job_cancel.cancel();
                let keep = matches!(shipped, Err(Undelivered::GaveUp(_)));
                while let Some(entry) = rx.recv().await {
                    if keep {
                        rest.extend(logship::log_lines(entry));
                    }
                }
            }
            let outcome = runner.await.unwrap_or_else(|e| Outcome::Failed {
                error: format!("run job {job_id}: runner task failed: {e}"),
                state: None,
            });
            (outcome, shipped, rest)
        }
        Err(outcome) => {
            runner_done.cancel();
            (outcome, Ok(0), Vec::new())
        }
    };
    let outcome = match progress.lease_expired {
        Some(lease) => lease_failure(outcome, lease),
        None => outcome,
    };
    let (outcome, log_count) = match shipped {
        Ok(log_count) => (outcome, log_count),
        Err(Undelivered::Spool { stored, error }) => {
            tracing::error!(
                job_id,
                spool = %spool::path(&ctx.spool_dir, &job_id).display(),
                error,
                stored,
                "read back the job's log spool failed: its lines past those the \
                 coordinator has are lost; reporting the job failed"
            );
            (spool_failure(outcome, &error), stored)
        }
        Err(Undelivered::Refused(error)) => {
            tracing::warn!(
                job_id,
                error,
                duration = ?started.elapsed(),
                "job finished; the coordinator no longer takes its logs or result: \
                 giving up on it, its spooled logs are dropped"
            );
            let label = outcome_name(&outcome);
            forget(ctx, &job_id);
            return Some(label);
        }
        Err(Undelivered::GaveUp(error)) => {
            let label = outcome_name(&outcome);
            let log_count = progress.backlog.numbered() + rest.len() as u64;
            let req = finish_request(&job_id, &secret, outcome, log_count);
            let lines = Some((progress.backlog, rest));
            report::give_up(&ctx.records, record, &req, label, lines, &error);
            return Some(label);
        }
    };
    let label = outcome_name(&outcome);
    let req = finish_request(&job_id, &secret, outcome, log_count);
    let reported = tokio::select! {
        r = report::finish(&ctx.client, &ctx.records, &req, started) => r,
        budget = &mut deadline => Err(report::gave_up("report job result", budget)),
    };
    match reported {
        Ok(()) => tracing::info!(
            job_id,
            r#type = kind,
            outcome = label,
            duration = ?started.elapsed(),
            "job finished"
        ),
        Err(Undelivered::GaveUp(error)) => {
            // Every line was confirmed (or, after a spool error, is lost).
            report::give_up(&ctx.records, record, &req, label, None, &error);
            return Some(label);
        }
        Err(Undelivered::Refused(error) | Undelivered::Spool { error, .. }) => tracing::warn!(
            job_id,
            error,
            duration = ?started.elapsed(),
            "job finished; the coordinator no longer takes its result: giving up on it"
        ),
    }
    forget(ctx, &job_id);
    Some(label)
}

/// Writes the job's record and returns it. Without one, a `kill -9` of the
/// daemon leaves the job to the coordinator's lease; worth a warning, not
/// the job.
fn write_record(ctx: &JobCtx, job_id: &str, secret: &Secret, kind: &str) -> JobRecord {
    let record = JobRecord {
        job_id: job_id.to_string(),
        job_secret: secret.clone(),
        kind: kind.to_string(),
        started_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        work_dir: ctx.runner.work_root.join(job_id),
        finished: None,
    };
    if let Err(e) = ctx.records.write(&record) {
        tracing::warn!(job_id, error = %e, "a restart of the daemon would not report this job");
    }
    record
}

/// The job is settled with the coordinator: drop its record and spool.
fn forget(ctx: &JobCtx, job_id: &str) {
    if let Err(e) = ctx.records.remove(job_id) {
        tracing::warn!(job_id, error = %e, "remove job record");
    }
    if let Err(e) = spool::remove(&ctx.spool_dir, job_id) {
        tracing::warn!(job_id, error = %e, "remove job log spool");
    }
}
