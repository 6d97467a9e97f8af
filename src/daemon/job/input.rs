//! Fetching a confirmed job's input (template archive, previous state)
//! before the runner starts: the runner never touches the network.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::JobCtx;
use crate::daemon::backoff::Backoff;
use crate::daemon::rpc::{self, Verdict};
use crate::daemon::transfer::{self, FetchError};
use crate::proto::JobOffer;
use crate::runner::Outcome;

/// How long a fetch is retried (broken streams, transport errors, bytes
/// that do not match the offer) before the job is failed.
const FETCH_WINDOW: Duration = Duration::from_secs(60);

/// The offer's archive and state, or the outcome to report instead: failed
/// with the fetch's error, or canceled when the job was canceled meanwhile
/// (no terraform ran, so the previous state stays).
pub(super) async fn fetch(
    ctx: &JobCtx,
    offer: &JobOffer,
    cancel: &CancellationToken,
    started: Instant,
) -> Result<(Vec<u8>, Vec<u8>), Outcome> {
    let job_id = offer.job_id.as_str();
    // The offer's sizes decide what is read into memory: bound them by this
    // daemon's own limit before fetching anything.
    let max = crate::archive::Size(ctx.runner.archive_limits.max_archive_bytes);
    if offer.template_archive_size > max.0 {
        return Err(Outcome::Failed {
            error: format!(
                "fetch job input: the template archive is {} bytes, over this daemon's \
                 --max-archive-bytes limit of {max}",
                offer.template_archive_size
            ),
            state: None,
        });
    }
    let deadline = Instant::now() + FETCH_WINDOW;
    let mut backoff = Backoff::new();
    loop {
        let e = tokio::select! {
            r = transfer::fetch_input(&ctx.client, offer) => match r {
                Ok(input) => return Ok(input),
                Err(e) => e,
            },
            () = cancel.cancelled() => return Err(canceled()),
        };
        let retry = match &e {
            FetchError::Rpc(st) => rpc::classify(st, started.elapsed()) == Verdict::Retry,
            FetchError::Mismatch(_) => true,
        };
        if !retry || Instant::now() >= deadline {
            return Err(Outcome::Failed {
                error: e.to_string(),
                state: None,
            });
        }
        let wait = backoff.next_delay();
        tracing::warn!(job_id, error = %e, retry_in = ?wait, "fetch job input failed; retrying");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return Err(canceled()),
        }
    }
}

fn canceled() -> Outcome {
    Outcome::Canceled {
        error: "canceled before its input was fetched: terraform never ran".into(),
        state: None,
    }
}
