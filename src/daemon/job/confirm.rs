//! The unary confirmation that a job is ours before any terraform runs.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::JobCtx;
use crate::daemon::backoff::Backoff;
use crate::daemon::rpc::{self, Verdict};
use crate::proto::UpdateJobRequest;

/// How long the daemon keeps trying to confirm a job before giving it up.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Confirms with a unary call that the coordinator has this job down as
/// ours before any terraform runs. The AckJob on the session stream may be
/// lost with a broken session (and the job offered to someone else); the
/// coordinator acknowledges an offered job on this call, or refuses it.
pub(super) async fn ownership(ctx: &JobCtx, job_id: &str, cancel: &CancellationToken) -> bool {
    let mut backoff = Backoff::new();
    let deadline = Instant::now() + CONFIRM_TIMEOUT;
    loop {
        let req = UpdateJobRequest {
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
