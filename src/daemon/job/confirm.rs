//! The unary confirmation that a job is ours before any terraform runs.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::JobCtx;
use crate::daemon::backoff::Backoff;
use crate::daemon::rpc::{self, Verdict};
use crate::grpc::Secret;
use crate::proto::UpdateJobRequest;

/// How long the daemon keeps trying to confirm a job before giving it up.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a confirmation already sent may still answer after a cancel.
/// An answer is worth a short wait: a job canceled by the operator right
/// after its ack is then reported canceled at once, instead of being left
/// to the lease. Longer would delay the shutdown the cancel asked for.
pub(super) const ANSWER_AFTER_CANCEL: Duration = Duration::from_secs(1);

/// Confirms with a unary call that the coordinator has this job down as
/// ours before any terraform runs. The AckJob on the session stream may be
/// lost with a broken session (and the job offered to someone else); the
/// coordinator acknowledges an offered job on this call, or refuses it.
///
/// A cancel while unconfirmed gives the job up at once (after at most
/// [`ANSWER_AFTER_CANCEL`] for a call in flight): the coordinator re-queues
/// an unacknowledged job, and a canceled one needs no terraform. Neither a
/// retry delay nor a wedged call may hold up the interrupt or eat into a
/// drain deadline.
pub(super) async fn ownership(
    ctx: &JobCtx,
    job_id: &str,
    secret: &Secret,
    cancel: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new();
    let deadline = Instant::now() + CONFIRM_TIMEOUT;
    loop {
        let req = UpdateJobRequest {
            job_id: job_id.to_string(),
            logs: Vec::new(),
            job_secret: secret.expose().to_string(),
        };
        let mut client = ctx.client.clone();
        let call = rpc::bounded(client.update_job(req));
        tokio::pin!(call);
        let answer = tokio::select! {
            r = &mut call => r,
            () = cancel.cancelled() => {
                match tokio::time::timeout(ANSWER_AFTER_CANCEL, &mut call).await {
                    Ok(r) => r,
                    Err(_) => return canceled(job_id),
                }
            }
        };
        let st = match answer {
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
        if cancel.is_cancelled() {
            return canceled(job_id);
        }
        let transient = rpc::classify(&st, CONFIRM_TIMEOUT) == Verdict::Retry;
        if !transient || Instant::now() >= deadline {
            tracing::warn!(
                job_id,
                error = %rpc::describe(&st),
                "confirm job ownership: not confirmed; not running it"
            );
            return false;
        }
        tokio::select! {
            () = cancel.cancelled() => return canceled(job_id),
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

fn canceled(job_id: &str) -> bool {
    tracing::warn!(
        job_id,
        "confirm job ownership: canceled before the coordinator confirmed the job; not running it"
    );
    false
}
