//! The daemon's one session slot: up, connecting in the background, or
//! down. Owned by the acquire loop, which polls [`Link::next`] both when
//! idle and while a job runs, so a session can be rebuilt under a running
//! job without anyone else touching it.

use std::future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use super::backoff::Backoff;
use super::ops::Ops;
use super::session::{Connector, Inbound, Session};
use crate::proto::coordinator_message::Msg;
use crate::proto::{DaemonState, JobOffer, StateUpdate, daemon_message};

/// A session that dies sooner than this after Welcome counts as a flap: the
/// next connect waits, so a coordinator that accepts and drops us at once
/// is not hammered.
const STABLE_AFTER: Duration = Duration::from_secs(10);

pub(super) enum LinkEvent {
    Offer(Box<JobOffer>),
    AcquireCanceled,
    /// An operator canceled this job.
    CancelJob(String),
    /// The session ended; the slot is down.
    Lost(String),
    Connected,
    /// Connecting stopped because the daemon is shutting down.
    Stopped,
    Fatal(DaemonError),
}

enum State {
    Down,
    Connecting(JoinHandle<Result<Option<Session>, DaemonError>>),
    Up { session: Session, since: Instant },
}

pub(super) struct Link {
    connector: Connector,
    /// Stops background connects when the daemon returns.
    halt: CancellationToken,
    state: State,
    flaps: Backoff,
    next_delay: Duration,
    /// What the daemon last said it is doing; the connector reads it for
    /// the next Hello.
    reported: watch::Sender<StateUpdate>,
    /// Why a send just failed: handed out by the next `next()` as `Lost`,
    /// so whoever polls the link reconnects (a silent Down would pend
    /// forever).
    send_failed: Option<String>,
    /// Readiness (connected or not) and metrics (state, reconnects).
    ops: Ops,
    /// Sessions opened so far; all but the first are reconnects.
    sessions: u64,
}

impl Link {
    /// `reported` is the sending half of the connector's `state`.
    pub(super) fn new(
        connector: Connector,
        halt: CancellationToken,
        reported: watch::Sender<StateUpdate>,
        ops: Ops,
    ) -> Self {
        Link {
            connector,
            halt,
            state: State::Down,
            flaps: Backoff::new(),
            next_delay: Duration::ZERO,
            reported,
            send_failed: None,
            ops,
            sessions: 0,
        }
    }

    /// Tells the coordinator the daemon's state when it changed: now if a
    /// session is up, else in the next Hello.
    pub(super) fn report(&mut self, state: DaemonState, job_id: &str) {
        self.ops.metrics.set_state(state);
        let update = StateUpdate {
            state: state as i32,
            current_job_id: job_id.to_string(),
        };
        let changed = self.reported.send_if_modified(|cur| {
            let changed = *cur != update;
            *cur = update.clone();
            changed
        });
        if changed && self.is_up() {
            tracing::debug!(state = state.as_str_name(), job_id, "report daemon state");
            // A failed send marks the session lost; Hello carries it next.
            let _ = self.send(daemon_message::Msg::StateUpdate(update));
        }
    }

    pub(super) fn is_up(&self) -> bool {
        matches!(self.state, State::Up { .. })
    }

    /// Starts connecting in the background unless up or already connecting.
    pub(super) fn ensure(&mut self) {
        if let State::Down = self.state {
            let connect = self
                .connector
                .clone()
                .connect(self.halt.clone(), self.next_delay);
            self.state = State::Connecting(self.connector.tracker.spawn(connect));
        }
    }

    /// Queues a message on the session; failing marks the session lost.
    pub(super) fn send(&mut self, msg: daemon_message::Msg) -> Result<(), String> {
        let State::Up { session, .. } = &self.state else {
            return Err("no session to the coordinator".to_string());
        };
        let sent = session.send(msg);
        if let Err(reason) = &sent {
            self.lose();
            self.send_failed = Some(reason.clone());
        }
        sent
    }

    /// The next thing that happens to the slot. Cancel-safe; pends forever
    /// while down (call [`Link::ensure`] first to get anywhere).
    pub(super) async fn next(&mut self) -> LinkEvent {
        if let Some(reason) = self.send_failed.take() {
            return LinkEvent::Lost(reason);
        }
        match &mut self.state {
            State::Down => future::pending().await,
            State::Connecting(task) => {
                let done = task.await;
                self.state = State::Down;
                match done {
                    Ok(Ok(Some(session))) => {
                        // The state may have changed while Hello was on its
                        // way; saying it again costs one small message.
                        let current = self.reported.borrow().clone();
                        let _ = session.send(daemon_message::Msg::StateUpdate(current));
                        self.state = State::Up {
                            session,
                            since: Instant::now(),
                        };
                        self.ops.ready.set_connected(true);
                        if self.sessions > 0 {
                            self.ops.metrics.reconnected();
                        }
                        self.sessions += 1;
                        LinkEvent::Connected
                    }
                    Ok(Ok(None)) => LinkEvent::Stopped,
                    Ok(Err(e)) => LinkEvent::Fatal(e),
                    Err(e) => LinkEvent::Fatal(DaemonError::Fatal(format!(
                        "connect to coordinator: connect task failed: {e}"
                    ))),
                }
            }
            State::Up { session, .. } => loop {
                match session.recv().await {
                    Inbound::Message(msg) => match *msg {
                        Msg::JobOffer(offer) => return LinkEvent::Offer(Box::new(offer)),
                        Msg::AcquireCanceled(_) => return LinkEvent::AcquireCanceled,
                        Msg::CancelJob(c) => return LinkEvent::CancelJob(c.job_id),
                        // Only the handshake's Welcome means anything.
                        Msg::Welcome(_) => {}
                    },
                    Inbound::Closed(reason) => {
                        self.lose();
                        return LinkEvent::Lost(reason);
                    }
                }
            },
        }
    }

    fn lose(&mut self) {
        if let State::Up { since, ref session } = self.state {
            // The next session tries the next URL first: this one just
            // failed us (with one URL, the same again).
            self.connector
                .clients
                .failover
                .advance_from(session.coordinator);
            self.next_delay = if since.elapsed() < STABLE_AFTER {
                self.flaps.next_delay()
            } else {
                self.flaps.reset();
                Duration::ZERO
            };
        }
        self.ops.ready.set_connected(false);
        self.state = State::Down;
    }
}
