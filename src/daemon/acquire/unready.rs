//! The acquire loop while a readiness check fails (a full or read-only
//! cache dir, terraform not running): it asks for no job, tells the
//! coordinator `NotReady`, and says why once per change.

use super::{Daemon, sleep_until};
use crate::daemon::DaemonError;
use crate::daemon::link::LinkEvent;
use crate::proto::DaemonState;

impl Daemon {
    /// While a readiness check fails: no Acquire, the coordinator is told
    /// `NotReady`. Returns once the checks pass, the session changes, or a
    /// drain begins.
    pub(super) async fn wait_until_ready(&mut self) -> Result<(), DaemonError> {
        self.link.report(DaemonState::NotReady, "");
        loop {
            let why = self.unready.borrow_and_update().clone();
            if why.is_none() {
                return Ok(());
            }
            self.note_unready(why);
            let event = tokio::select! {
                () = self.shutdown.drain.cancelled() => return Ok(()),
                () = sleep_until(self.lifetime.idle_deadline()) => {
                    self.idle_timed_out();
                    continue;
                }
                Ok(()) = self.unready.changed() => continue,
                ev = self.link.next() => ev,
            };
            match event {
                LinkEvent::Fatal(e) => return Err(e),
                LinkEvent::Lost(reason) => {
                    tracing::warn!(reason, "session to coordinator lost; reconnecting");
                    self.lifetime.connected(false);
                    return Ok(());
                }
                LinkEvent::Offer(offer) => tracing::info!(
                    job_id = offer.job_id,
                    "job offer crossed our not-ready report; left to the coordinator"
                ),
                LinkEvent::Connected | LinkEvent::Stopped => return Ok(()),
                LinkEvent::CancelJob(_) | LinkEvent::AcquireCanceled => {}
            }
        }
    }

    /// Logs why the daemon takes no jobs when that changes, and once when
    /// it takes them again.
    pub(super) fn note_unready(&mut self, why: Option<String>) {
        if why == self.noted_unready {
            return;
        }
        match &why {
            Some(w) => tracing::warn!(reason = %w, "not taking jobs: a readiness check fails"),
            None => tracing::info!("readiness checks pass: taking jobs again"),
        }
        self.noted_unready = why;
    }
}
