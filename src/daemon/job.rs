//! Runs one acknowledged job: the runner in its own task, its logs shipped
//! alongside, then the result reported with FinishJob.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::Backoff;
use super::convert::{finish_request, job_from_offer, job_type_name, outcome_name};
use super::logship::{ShipError, Shipped, Shipper};
use super::record::{JobRecord, Records};
use super::rpc::{self, Client, Verdict};
use super::spool;
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
    /// The coordinator's job lease in milliseconds, 0 while unknown; set by
    /// the session on each Welcome (`session::Connector::lease_ms`).
    pub lease_ms: Arc<AtomicU64>,
    /// A record per running job, so a restarted daemon reports it.
    pub records: Records,
    /// Where log lines beyond the in-memory bound are spooled.
    pub spool_dir: PathBuf,
}

/// Why a job's result did not reach the coordinator.
enum Undelivered {
    /// The coordinator will not take it (e.g. it failed the job when the
    /// lease ran out): nothing left to do.
    Refused(String),
    /// Given up after a cancel; the record stays, so the next start of the
    /// daemon reports the job.
    GaveUp(String),
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
    write_record(ctx, &job_id, kind);
    let runner_done = CancellationToken::new();
    let deadline = report_deadline(&ctx.cancel, &runner_done);
    tokio::pin!(deadline);

    let (mut outcome, shipped) = match job_from_offer(offer) {
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
                lease_ms: &ctx.lease_ms,
                spool_dir: &ctx.spool_dir,
            };
            let shipped = tokio::select! {
                r = shipper.ship(&mut rx) => r.map_err(|e| match e {
                    ShipError::Refused { .. } | ShipError::Spool { .. } => {
                        Undelivered::Refused(e.to_string())
                    }
                }),
                () = &mut deadline => Err(Undelivered::GaveUp(
                    "ship job logs: gave up 10s after cancel".to_string(),
                )),
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
            let none = Shipped {
                log_count: 0,
                lease_expired: None,
            };
            (Outcome::Failed { error, state: None }, Ok(none))
        }
    };
    let (reported, state) = match shipped {
        Ok(shipped) => {
            if let Some(lease) = shipped.lease_expired {
                outcome = lease_failure(outcome, lease);
            }
            let label = outcome_name(&outcome);
            let req = finish_request(&job_id, outcome, shipped.log_count);
            let r = tokio::select! {
                r = finish(&ctx.client, &req, started) => r.map_err(Undelivered::Refused),
                () = &mut deadline => Err(Undelivered::GaveUp(
                    "report job result: gave up 10s after cancel".to_string(),
                )),
            };
            (r.map(|()| label), req.has_state.then_some(req.state))
        }
        Err(e) => (Err(e), final_state(outcome)),
    };
    match &reported {
        Ok(outcome) => tracing::info!(
            job_id,
            r#type = kind,
            outcome,
            duration = ?started.elapsed(),
            "job finished"
        ),
        Err(Undelivered::Refused(error)) => tracing::warn!(
            job_id,
            error,
            duration = ?started.elapsed(),
            "job finished; the coordinator no longer takes its logs or result: \
             giving up on it, its spooled logs are dropped"
        ),
        Err(Undelivered::GaveUp(error)) => {
            tracing::error!(
                job_id,
                error,
                duration = ?started.elapsed(),
                "job finished but not reported; the next start of the daemon reports it"
            );
            // The work dir is gone: keep the state beside the record.
            if let Some(state) = state
                && let Err(e) = ctx.records.save_state(&job_id, &state)
            {
                tracing::error!(job_id, error = %e, "terraform state of an unreported job lost");
            }
            return;
        }
    }
    forget(ctx, &job_id);
}

/// Writes the job's record. Without one, a `kill -9` of the daemon leaves
/// the job to the coordinator's lease; worth a warning, not the job.
fn write_record(ctx: &JobCtx, job_id: &str, kind: &str) {
    let record = JobRecord {
        job_id: job_id.to_string(),
        kind: kind.to_string(),
        started_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        work_dir: ctx.runner.work_root.join(job_id),
    };
    if let Err(e) = ctx.records.write(&record) {
        tracing::warn!(job_id, error = %e, "a restart of the daemon would not report this job");
    }
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

fn final_state(outcome: Outcome) -> Option<Vec<u8>> {
    match outcome {
        Outcome::Succeeded { state, .. }
        | Outcome::Failed { state, .. }
        | Outcome::Canceled { state, .. } => state,
    }
}

/// A job whose terraform was interrupted because the lease ran out is
/// failed, not canceled: nobody asked for the cancel.
fn lease_failure(outcome: Outcome, lease: Duration) -> Outcome {
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
async fn finish(client: &Client, req: &FinishJobRequest, started: Instant) -> Result<(), String> {
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
            Ok(r) => {
                if r.canceled {
                    // Canceled between ack and confirm: the runner reports
                    // it canceled without starting terraform.
                    tracing::info!(job_id, "coordinator canceled the job before it started");
                    cancel.cancel();
                }
                return true;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_interrupted_job_is_failed_and_keeps_its_state() {
        let lease = Duration::from_secs(3);
        let canceled = Outcome::Canceled {
            error: "interrupted".into(),
            state: Some(b"{}".to_vec()),
        };
        let Outcome::Failed { error, state } = lease_failure(canceled, lease) else {
            panic!("not failed")
        };
        assert_eq!(
            error,
            "coordinator unreachable for longer than the job lease (3s): terraform was interrupted"
        );
        assert_eq!(state.as_deref(), Some(&b"{}"[..]));
        // terraform finished before the interrupt took: its result stands.
        let done = Outcome::Succeeded {
            state: None,
            variables: Vec::new(),
        };
        assert!(matches!(
            lease_failure(done, lease),
            Outcome::Succeeded { .. }
        ));
    }
}
