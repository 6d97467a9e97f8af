//! The acquire loop: the daemon's one state-owning task. It asks for a job
//! when idle, runs one job at a time, routes the coordinator's pushes, and
//! is the only code that watches `drain`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::job::{self, JobCtx};

mod unready;
use super::link::{Link, LinkEvent};
use super::ops::Readiness;
use super::{DaemonError, Shutdown};
use crate::proto::daemon_message::Msg as Out;
use crate::proto::{AckJob, Acquire, CancelAcquire, DaemonState, JobOffer};

/// How long a withdrawn Acquire may take to be confirmed before we leave
/// anyway (the coordinator clears offers to a session that ends).
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Daemon {
    pub link: Link,
    pub jobs: JobCtx,
    pub shutdown: Shutdown,
    /// How long a drain may wait for the job before canceling it (the
    /// drain timeout less the cancel grace and the report budget).
    pub drain_escalation: Option<Duration>,
    /// The whole drain's limit (`--drain-timeout`), for the metric of the
    /// seconds left.
    pub drain_timeout: Option<Duration>,
    /// When this loop first saw the drain.
    pub drained_at: Option<Instant>,
    pub lifetime: Lifetime,
    /// Readiness, for a cache dir probe after each job.
    pub ready: Arc<Readiness>,
    /// Why a readiness check fails (`None`: none does): no Acquire then.
    pub unready: watch::Receiver<Option<String>>,
    /// The reason last logged, so each change is logged once.
    pub noted_unready: Option<String>,
}

/// The lifetime policy for autoscalers: drain and exit 0 after `max_jobs`
/// jobs, or after `idle_timeout` without one. Both are plain drains, so
/// the coordinator sees the same state reports as for SIGHUP.
///
/// Idle means connected and without work: the idle clock stops while the
/// session is down (a coordinator outage must not make every daemon exit)
/// and restarts when it is back.
pub(super) struct Lifetime {
    max_jobs: Option<u64>,
    jobs_run: u64,
    idle_timeout: Option<Duration>,
    /// Since when the daemon has been connected without a job (the
    /// connection, or the last job's end); `None` while disconnected.
    idle_since: Option<Instant>,
}

impl Lifetime {
    pub(super) fn new(max_jobs: Option<u64>, idle_timeout: Option<Duration>) -> Self {
        Lifetime {
            max_jobs,
            jobs_run: 0,
            idle_timeout,
            idle_since: None,
        }
    }

    /// The session is up (`true`) or down: a link coming up starts the idle
    /// clock, one going down stops it.
    fn connected(&mut self, up: bool) {
        match (up, self.idle_since) {
            (true, None) => self.idle_since = Some(Instant::now()),
            (false, Some(_)) => self.idle_since = None,
            _ => {}
        }
    }

    /// When the idle timeout fires, if there is one and the daemon is
    /// connected.
    fn idle_deadline(&self) -> Option<Instant> {
        self.idle_timeout
            .zip(self.idle_since)
            .and_then(|(t, since)| since.checked_add(t))
    }

    /// A job was run (or turned out not to be ours, `ran` false): the idle
    /// clock restarts either way. Returns true when that was the last job.
    fn job_done(&mut self, ran: bool) -> bool {
        self.idle_since = Some(Instant::now());
        if ran {
            self.jobs_run += 1;
        }
        self.max_jobs.is_some_and(|max| self.jobs_run >= max)
    }
}

impl Daemon {
    /// Runs until drained, or a fatal error (the coordinator refused the key).
    pub(super) async fn run(mut self) -> Result<(), DaemonError> {
        loop {
            if self.shutdown.drain.is_cancelled() {
                return Ok(());
            }
            self.lifetime.connected(self.link.is_up());
            if !self.link.is_up() {
                self.link.ensure();
                // No idle timeout here: the clock is stopped while down.
                let event = tokio::select! {
                    () = self.shutdown.drain.cancelled() => return Ok(()),
                    ev = self.link.next() => ev,
                };
                match event {
                    LinkEvent::Fatal(e) => return Err(e),
                    LinkEvent::Stopped => return Ok(()),
                    _ => continue,
                }
            }
            if self.unready.borrow_and_update().is_some() {
                self.wait_until_ready().await?;
                continue;
            }
            self.note_unready(None);
            self.link.report(DaemonState::Idle, "");
            if let Err(reason) = self.link.send(Out::Acquire(Acquire {})) {
                tracing::warn!(
                    reason,
                    "ask coordinator for a job: session lost; reconnecting"
                );
                continue;
            }
            if let Some(offer) = self.wait_for_offer().await? {
                let job_id = offer.job_id.clone();
                let span = tracing::info_span!("job", job_id, daemon = %self.jobs.name);
                let ran = self.take(offer).instrument(span).await?;
                // A job that failed on a full or read-only cache dir must
                // not be followed by more: probe it before asking again.
                self.ready.recheck().await;
                if self.lifetime.job_done(ran) {
                    tracing::info!(
                        max_jobs = self.lifetime.jobs_run,
                        "--max-jobs reached: draining and exiting 0"
                    );
                    self.shutdown.drain.cancel();
                }
            }
        }
    }

    /// Waits for the offer our Acquire asked for. `None`: the session broke
    /// (reconnect and ask again) or we withdrew on drain.
    async fn wait_for_offer(&mut self) -> Result<Option<JobOffer>, DaemonError> {
        loop {
            let event = tokio::select! {
                () = self.shutdown.drain.cancelled() => {
                    let now = Instant::now();
                    self.drained_at = Some(now);
                    self.jobs.metrics.drain_deadline(self.drain_timeout.and_then(|t| now.checked_add(t)));
                    let state = if self.shutdown.cancel.is_cancelled() {
                        DaemonState::Canceling
                    } else {
                        DaemonState::Draining
                    };
                    self.withdraw(state).await;
                    return Ok(None);
                }
                () = sleep_until(self.lifetime.idle_deadline()) => {
                    // The drain branch takes the Acquire back next round.
                    self.idle_timed_out();
                    continue;
                }
                Ok(()) = self.unready.changed() => {
                    if self.unready.borrow_and_update().is_some() {
                        self.withdraw(DaemonState::NotReady).await;
                        return Ok(None);
                    }
                    continue;
                }
                ev = self.link.next() => ev,
            };
            match event {
                LinkEvent::Offer(offer) => return Ok(Some(*offer)),
                LinkEvent::CancelJob(id) => {
                    tracing::debug!(job_id = id, "cancel for a job we do not run; ignored");
                }
                LinkEvent::AcquireCanceled => {}
                LinkEvent::Lost(reason) => {
                    tracing::warn!(reason, "session to coordinator lost; reconnecting");
                    self.lifetime.connected(false);
                    return Ok(None);
                }
                LinkEvent::Fatal(e) => return Err(e),
                LinkEvent::Connected => {
                    // A new session: the idle clock restarts with it.
                    self.lifetime.connected(false);
                    return Ok(None);
                }
                LinkEvent::Stopped => return Ok(None),
            }
        }
    }

    fn idle_timed_out(&mut self) {
        let idle = self.lifetime.idle_timeout.unwrap_or_default();
        tracing::info!(
            idle_timeout = %humantime::format_duration(idle),
            "--idle-timeout: no job for {}; draining and exiting 0",
            humantime::format_duration(idle)
        );
        self.lifetime.idle_timeout = None;
        self.shutdown.drain.cancel();
    }

    /// Takes back our Acquire, telling the coordinator `state` (draining,
    /// canceling, not ready): it answers AcquireCanceled, or with the offer
    /// it pushed before it saw the withdrawal. That offer is never
    /// acknowledged: an operator who asked to stop must not see a new job
    /// start (or, on a cancel, an innocent job reported canceled), and a
    /// daemon that is not ready would fail it. Unacknowledged, it goes back
    /// to the queue when our session ends, which it does as the daemon
    /// exits — or, not ready, as soon as the coordinator reads the report.
    async fn withdraw(&mut self, state: DaemonState) {
        self.link.report(state, "");
        if self
            .link
            .send(Out::CancelAcquire(CancelAcquire {}))
            .is_err()
        {
            return;
        }
        let link = &mut self.link;
        let confirmed = async {
            loop {
                match link.next().await {
                    LinkEvent::Offer(offer) => {
                        tracing::info!(
                            job_id = offer.job_id,
                            "job offer crossed our withdrawal; left to the coordinator"
                        );
                        return;
                    }
                    LinkEvent::CancelJob(_) => {}
                    _ => return,
                }
            }
        };
        if tokio::time::timeout(WITHDRAW_TIMEOUT, confirmed)
            .await
            .is_err()
        {
            tracing::warn!("withdraw job request: coordinator did not confirm within 5s");
        }
    }

    /// Acknowledges and runs one job, meanwhile routing the coordinator's
    /// pushes and keeping (or rebuilding) the session. A fatal session error
    /// during the job is returned after the job was reported. `Ok(true)`:
    /// the job was ours and ran (whatever its outcome).
    async fn take(&mut self, offer: JobOffer) -> Result<bool, DaemonError> {
        let job_id = offer.job_id.clone();
        let ack = Out::AckJob(AckJob {
            job_id: job_id.clone(),
            job_secret: offer.job_secret.clone(),
        });
        if let Err(reason) = self.link.send(ack) {
            // Unacknowledged, the job stays pending for another daemon.
            tracing::warn!(
                job_id,
                reason,
                "acknowledge job offer: session lost; job left to the coordinator"
            );
            return Ok(false);
        }
        let Daemon {
            link,
            jobs,
            shutdown,
            drain_escalation,
            drain_timeout,
            drained_at,
            lifetime: _,
            ready: _,
            unready: _,
            noted_unready: _,
        } = self;
        link.report(DaemonState::Busy, &job_id);
        let job_cancel: CancellationToken = shutdown.cancel.child_token();
        let job = job::run(jobs, offer, job_cancel.clone());
        tokio::pin!(job);
        let mut fatal = None;
        let mut drain_noted = false;
        let mut cancel_noted = false;
        // Set once draining: when the drain gives up on the job.
        let mut escalate_at: Option<Instant> = None;
        loop {
            let event = tokio::select! {
                // Cancel before drain: a cancel also fires drain (its child),
                // and the daemon must not claim to drain when it cancels.
                biased;
                ran = &mut job => return fatal.map_or(Ok(ran), Err),
                () = shutdown.cancel.cancelled(), if !cancel_noted => {
                    cancel_noted = true;
                    link.report(DaemonState::Canceling, &job_id);
                    tracing::warn!(job_id, "canceling: interrupting job {job_id}, then exiting");
                    continue;
                }
                () = shutdown.drain.cancelled(), if !drain_noted => {
                    drain_noted = true;
                    let since = *drained_at.get_or_insert_with(Instant::now);
                    // A deadline too far to represent is no deadline.
                    escalate_at = drain_escalation.and_then(|d| since.checked_add(d));
                    jobs.metrics.drain_deadline(drain_timeout.and_then(|d| since.checked_add(d)));
                    if !cancel_noted {
                        link.report(DaemonState::Draining, &job_id);
                        tracing::info!(job_id, "draining: waiting for job {job_id}");
                    }
                    continue;
                }
                () = sleep_until(escalate_at), if escalate_at.is_some() && !cancel_noted => {
                    tracing::warn!(
                        job_id,
                        "drain timeout: canceling job {job_id} so it is reported before the deadline"
                    );
                    shutdown.cancel.cancel();
                    continue;
                }
                event = link.next() => event,
            };
            match event {
                LinkEvent::CancelJob(id) if id == job_id => {
                    tracing::info!(
                        job_id,
                        "coordinator pushed a cancel of the job; interrupting it"
                    );
                    job_cancel.cancel();
                }
                LinkEvent::Offer(o) => tracing::warn!(
                    job_id = o.job_id,
                    running = job_id,
                    "unrequested job offer while busy; ignored"
                ),
                LinkEvent::CancelJob(_)
                | LinkEvent::AcquireCanceled
                | LinkEvent::Connected
                | LinkEvent::Stopped => {}
                LinkEvent::Lost(reason) => {
                    tracing::warn!(
                        job_id,
                        reason,
                        "session to coordinator lost; job continues, reconnecting"
                    );
                    link.ensure();
                }
                LinkEvent::Fatal(e) => {
                    // The job's own RPCs will meet the same refusal.
                    tracing::error!(job_id, error = %e, "reconnect to coordinator failed");
                    fatal = Some(e);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_idle_clock_stops_while_disconnected_and_restarts_on_reconnect() {
        let d = Duration::from_secs(60);
        let mut l = Lifetime::new(None, Some(d));
        // Not connected yet: no deadline, however long it takes.
        assert_eq!(l.idle_deadline(), None);
        tokio::time::advance(d * 3).await;
        assert_eq!(l.idle_deadline(), None);
        l.connected(true);
        let first = l.idle_deadline().expect("connected: the clock runs");
        assert_eq!(first, Instant::now() + d);
        // Still up: the clock is not restarted by every loop round.
        tokio::time::advance(d / 2).await;
        l.connected(true);
        assert_eq!(l.idle_deadline(), Some(first));
        // An outage longer than the timeout: no deadline while it lasts.
        l.connected(false);
        tokio::time::advance(d * 2).await;
        assert_eq!(l.idle_deadline(), None);
        // Back: a whole timeout from the reconnect.
        l.connected(true);
        assert_eq!(l.idle_deadline(), Some(Instant::now() + d));
        // A job's end restarts it too.
        tokio::time::advance(d / 2).await;
        assert!(!l.job_done(true));
        assert_eq!(l.idle_deadline(), Some(Instant::now() + d));
    }

    #[test]
    fn no_idle_timeout_means_no_deadline() {
        let mut l = Lifetime::new(Some(1), None);
        l.connected(true);
        assert_eq!(l.idle_deadline(), None);
        assert!(l.job_done(true), "the first job was the last");
    }
}
