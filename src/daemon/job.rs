//! Runs one acknowledged job: the runner in its own task, its logs shipped
//! alongside, then the result reported with FinishJob.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::Backoff;
use super::convert::{finish_request, job_from_offer, job_type_name, outcome_name};
use super::logship::Shipper;
use super::rpc::{self, Client, Verdict};
use crate::proto::{FinishJobRequest, JobOffer};
use crate::runner::{self, Outcome, RunnerConfig};

/// Lines the runner may get ahead of the shipper before it waits.
const LOG_CHANNEL_CAPACITY: usize = 1024;

/// What every job needs, set once per daemon.
pub(super) struct JobCtx {
    pub client: Client,
    pub runner: RunnerConfig,
    pub tracker: TaskTracker,
    /// The daemon's hard-cancel token (`Shutdown::cancel`).
    pub cancel: CancellationToken,
}

/// Runs `offer` to the end and reports it. `job_cancel` interrupts the
/// runner (operator cancel or daemon shutdown); it is a child of
/// `ctx.cancel`.
pub(super) async fn run(ctx: &JobCtx, offer: JobOffer, job_cancel: CancellationToken) {
    let started = Instant::now();
    let job_id = offer.job_id.clone();
    let kind = job_type_name(offer.r#type);
    tracing::info!(
        job_id,
        r#type = kind,
        template = %offer.template_name,
        initiator = %offer.initiator,
        "job started"
    );
    if !confirm_ownership(ctx, &job_id, &job_cancel).await {
        return;
    }
    let runner_done = CancellationToken::new();
    let deadline = report_deadline(&ctx.cancel, &runner_done);
    tokio::pin!(deadline);

    let (outcome, log_count) = match job_from_offer(offer) {
        Ok(job) => {
            let (tx, mut rx) = mpsc::channel(LOG_CHANNEL_CAPACITY);
            let cfg = ctx.runner.clone();
            let cancel = job_cancel.clone();
            let done = runner_done.clone().drop_guard();
            let runner = ctx.tracker.spawn(async move {
                let _done = done;
                runner::run(&cfg, job, tx, cancel).await
            });
            let shipper = Shipper {
                client: &ctx.client,
                job_id: &job_id,
                job_cancel: &job_cancel,
                started,
            };
            let shipped = tokio::select! {
                r = shipper.ship(&mut rx) => r,
                () = &mut deadline => Err("ship job logs: gave up 10s after cancel".to_string()),
            };
            if shipped.is_err() {
                // Nobody will take our result: stop the work, and keep
                // reading so the runner never blocks on a full channel.
                job_cancel.cancel();
                while rx.recv().await.is_some() {}
            }
            let outcome = runner.await.unwrap_or_else(|e| Outcome::Failed {
                error: format!("run job {job_id}: runner task failed: {e}"),
                state: None,
            });
            (outcome, shipped)
        }
        Err(error) => {
            runner_done.cancel();
            (Outcome::Failed { error, state: None }, Ok(0))
        }
    };
    let label = outcome_name(&outcome);
    let reported = match log_count {
        Ok(count) => {
            let req = finish_request(&job_id, outcome, count);
            tokio::select! {
                r = finish(&ctx.client, req, started) => r,
                () = &mut deadline => Err("gave up 10s after cancel".to_string()),
            }
        }
        Err(e) => Err(e),
    };
    if let Err(error) = &reported {
        tracing::error!(job_id, error, "report job result: not reported");
    }
    tracing::info!(
        job_id,
        r#type = kind,
        outcome = label,
        reported = reported.is_ok(),
        duration = ?started.elapsed(),
        "job finished"
    );
}

/// Fires `super::REPORT_BUDGET` after both a hard cancel and the runner's return:
/// until cancel, reporting is retried for as long as it takes; the runner's
/// own SIGINT grace must not eat into the reporting time.
async fn report_deadline(cancel: &CancellationToken, runner_done: &CancellationToken) {
    cancel.cancelled().await;
    runner_done.cancelled().await;
    tokio::time::sleep(super::REPORT_BUDGET).await;
}

/// FinishJob, retried on transport errors (the coordinator acknowledges a
/// repeated result again).
async fn finish(client: &Client, req: FinishJobRequest, started: Instant) -> Result<(), String> {
    let mut backoff = Backoff::new();
    loop {
        let mut c = client.clone();
        let st = match rpc::bounded(c.finish_job(req.clone())).await {
            Ok(_) => return Ok(()),
            Err(st) => st,
        };
        if rpc::classify(&st, started.elapsed()) == Verdict::Refused {
            return Err(format!(
                "finish job {}: coordinator refused: {}",
                req.job_id,
                rpc::describe(&st)
            ));
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

/// How long the daemon keeps trying to confirm a job before giving it up.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Confirms with a unary call that the coordinator has this job down as
/// ours before any terraform runs. The AckJob on the session stream may be
/// lost with a broken session (and the job offered to someone else); the
/// coordinator acknowledges an offered job on this call, or refuses it.
async fn confirm_ownership(ctx: &JobCtx, job_id: &str, cancel: &CancellationToken) -> bool {
    let mut backoff = Backoff::new();
    let deadline = Instant::now() + CONFIRM_TIMEOUT;
    loop {
        let req = crate::proto::UpdateJobRequest {
            job_id: job_id.to_string(),
            logs: Vec::new(),
        };
        let st = match rpc::bounded(ctx.client.clone().update_job(req)).await {
            Ok(_) => return true,
            Err(st) => st,
        };
        let transient = rpc::classify(&st, CONFIRM_TIMEOUT) == Verdict::Retry;
        if !transient || Instant::now() >= deadline || cancel.is_cancelled() {
            tracing::warn!(
                job_id,
                error = %rpc::describe(&st),
                "confirm job ownership: not confirmed; not running it"
            );
            return false;
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
