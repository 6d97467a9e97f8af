//! The `Session` stream: opening it (Hello → Welcome), retrying until a
//! coordinator is reachable (round robin over `--url`), and the reader task
//! that owns the inbound half.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tonic::codec::Streaming;
use tonic::{Code, Status};

use super::DaemonError;
use super::backoff::Backoff;
use super::rpc::{self, Clients};
use crate::proto::{
    CoordinatorMessage, DaemonMessage, Hello, StateUpdate, Welcome, coordinator_message,
    daemon_message,
};

/// The daemon sends at most a few messages per job (Acquire, CancelAcquire,
/// AckJob); a full buffer means the stream is wedged.
const OUTBOUND_CAPACITY: usize = 8;
const INBOUND_CAPACITY: usize = 16;
/// From opening the stream to receiving Welcome.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the reader task forwards.
#[derive(Debug)]
pub(super) enum Inbound {
    Message(Box<coordinator_message::Msg>),
    /// The stream ended; the session is unusable.
    Closed(String),
}

/// One open session. Dropping it stops the reader and ends the outbound
/// half, which closes the stream.
pub(super) struct Session {
    /// Which of the coordinator URLs it runs to.
    pub(super) coordinator: usize,
    tx: mpsc::Sender<DaemonMessage>,
    rx: mpsc::Receiver<Inbound>,
    _reader: DropGuard,
}

impl Session {
    /// Queues a message without waiting: the caller's loop must never stall
    /// on a dead connection, and a wedged stream is treated as lost.
    pub(super) fn send(&self, msg: daemon_message::Msg) -> Result<(), String> {
        self.tx
            .try_send(DaemonMessage { msg: Some(msg) })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => "session send buffer is full".to_string(),
                mpsc::error::TrySendError::Closed(_) => "session stream is closed".to_string(),
            })
    }

    /// The next message from the coordinator (cancel-safe).
    pub(super) async fn recv(&mut self) -> Inbound {
        self.rx
            .recv()
            .await
            .unwrap_or_else(|| Inbound::Closed("session reader stopped".to_string()))
    }
}

/// Opens sessions for one daemon identity.
#[derive(Clone)]
pub(super) struct Connector {
    pub(super) clients: Clients,
    pub(super) name: String,
    pub(super) tracker: TaskTracker,
    /// The daemon's current state, told in Hello so a daemon reconnecting
    /// mid-job or mid-drain is never taken for an idle one.
    pub(super) state: watch::Receiver<StateUpdate>,
    /// Set from each Welcome: the coordinator's job lease in milliseconds
    /// (0: it did not say). Shared with the running job (`JobCtx`).
    pub(super) lease_ms: Arc<AtomicU64>,
    /// Set on the first Welcome. A TLS failure that retrying cannot fix
    /// ends the daemon only before it: later the same error is more likely
    /// a proxy or a certificate rotation mid-rollout, and the running job
    /// must not be abandoned for it.
    pub(super) welcomed: Arc<std::sync::atomic::AtomicBool>,
    /// How long our name may stay held by a connected daemon of our key
    /// (`--name-conflict-timeout`) before we give up.
    pub(super) name_conflict_timeout: Duration,
}

impl Connector {
    /// Opens a session, retrying with backoff after `delay`, until it is
    /// welcomed (`Some`), `stop` fires (`None`), or the coordinator refuses
    /// the key (an error: a bad key never fixes itself). Each failed
    /// attempt moves on to the next URL; the backoff is slept once per
    /// round of them, so a dead URL does not delay reaching a live one.
    pub(super) async fn connect(
        self,
        stop: CancellationToken,
        delay: Duration,
    ) -> Result<Option<Session>, DaemonError> {
        if !delay.is_zero() {
            tokio::select! {
                () = stop.cancelled() => return Ok(None),
                () = tokio::time::sleep(delay) => {}
            }
        }
        let mut backoff = Backoff::new();
        // Since when our name has been held by a connected daemon.
        let mut conflict_since: Option<tokio::time::Instant> = None;
        let failover = &self.clients.failover;
        // Attempts since the last backoff sleep.
        let mut in_round = 0;
        loop {
            let i = failover.current();
            let url = failover.url(i).to_string();
            let attempt = tokio::select! {
                () = stop.cancelled() => return Ok(None),
                r = self.open(i) => r,
            };
            let err = match attempt {
                Ok(session) => return Ok(Some(session)),
                Err(st) if rpc::is_auth_refusal(&st) => {
                    return Err(DaemonError::AuthRefused {
                        url,
                        message: st.message().to_string(),
                    });
                }
                Err(st) if st.code() == Code::FailedPrecondition => {
                    // The name belongs to another key: final.
                    return Err(name_taken(&url, &st, ""));
                }
                Err(st) if st.code() == Code::AlreadyExists => {
                    // Likely our own previous session (a restart, a broken
                    // link) that the coordinator has not noticed gone yet;
                    // past the window it is another live daemon.
                    let since = *conflict_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= self.name_conflict_timeout {
                        let advice = format!(
                            " (still after --name-conflict-timeout {}); stop the other \
                             daemon or choose another --name",
                            humantime::format_duration(self.name_conflict_timeout)
                        );
                        return Err(name_taken(&url, &st, &advice));
                    }
                    st
                }
                Err(st) => {
                    // The window counts an unbroken run of conflicts: after
                    // an outage, the first conflict starts it anew.
                    conflict_since = None;
                    st
                }
            };
            // Like a refused key, an untrusted certificate never fixes
            // itself.
            let hint = crate::grpc::tls::refusal_hint(&rpc::describe(&err));
            if let Some(hint) = hint.filter(|_| !self.welcomed.load(Ordering::Relaxed)) {
                return Err(DaemonError::TlsRefused {
                    url,
                    message: format!("{}; {hint}", rpc::describe(&err)),
                });
            }
            failover.advance_from(i);
            in_round += 1;
            let mut wait = if in_round < failover.len() {
                Duration::ZERO
            } else {
                in_round = 0;
                backoff.next_delay()
            };
            if let Some(since) = conflict_since {
                // The last try comes when the window closes, not a backoff
                // step after it.
                wait = wait.min(self.name_conflict_timeout.saturating_sub(since.elapsed()));
            }
            tracing::warn!(
                url = %url,
                error = %rpc::describe(&err),
                hint = hint.unwrap_or(crate::grpc::tls::closed_hint(&url, &rpc::describe(&err))),
                next_url = %failover.url(failover.current()),
                retry_in = ?wait,
                "connect to coordinator failed; retrying"
            );
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(None),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One attempt at URL `i`: open the stream, say Hello, wait for
    /// Welcome, then hand the inbound half to a reader task.
    async fn open(&self, i: usize) -> Result<Session, Status> {
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let state = self.state.borrow().clone();
        let hello = daemon_message::Msg::Hello(Hello {
            name: self.name.clone(),
            version: crate::VERSION.to_string(),
            state: state.state,
            current_job_id: state.current_job_id,
        });
        tx.try_send(DaemonMessage { msg: Some(hello) })
            .map_err(|_| Status::internal("queue Hello: outbound buffer unavailable"))?;
        let mut client = self.clients.pinned[i].clone();
        let handshake = async {
            let mut stream = client.session(ReceiverStream::new(rx)).await?.into_inner();
            match stream.message().await? {
                Some(CoordinatorMessage {
                    msg: Some(coordinator_message::Msg::Welcome(w)),
                }) => Ok((stream, w)),
                Some(_) => Err(Status::internal(
                    "open session: first message was not Welcome",
                )),
                None => Err(Status::unavailable(
                    "open session: coordinator closed it before Welcome",
                )),
            }
        };
        let (stream, welcome) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| Status::deadline_exceeded("open session: no Welcome within 10s"))??;
        let failover = &self.clients.failover;
        log_welcome(&welcome, failover.url(i));
        // The unary calls (job updates, finishes) follow the session.
        failover.set_current(i);
        self.lease_ms.store(welcome.job_lease_ms, Ordering::Relaxed);
        self.welcomed.store(true, Ordering::Relaxed);

        let (in_tx, in_rx) = mpsc::channel(INBOUND_CAPACITY);
        let stop = CancellationToken::new();
        self.tracker.spawn(read(stream, in_tx, stop.clone()));
        Ok(Session {
            coordinator: i,
            tx,
            rx: in_rx,
            _reader: stop.drop_guard(),
        })
    }
}

/// The coordinator's refusal of our name, with `advice` appended.
fn name_taken(url: &str, st: &Status, advice: &str) -> DaemonError {
    DaemonError::NameTaken {
        url: url.to_string(),
        message: format!("{}{advice}", st.message()),
    }
}

fn log_welcome(w: &Welcome, url: &str) {
    let tags: crate::tags::Tags = w.tags.clone().into_iter().collect();
    tracing::info!(
        url = %url,
        daemon_id = %w.daemon_id,
        key = %w.key_name,
        tags = %crate::tags::display(&tags),
        job_lease = ?Duration::from_millis(w.job_lease_ms),
        "connected to coordinator"
    );
}

/// Owns the inbound half: forwards each message and, last, why it ended.
async fn read(
    mut stream: Streaming<CoordinatorMessage>,
    out: mpsc::Sender<Inbound>,
    stop: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = stop.cancelled() => return,
            next = stream.message() => next,
        };
        let item = match next {
            Ok(Some(CoordinatorMessage { msg: Some(msg) })) => Inbound::Message(Box::new(msg)),
            // A message type newer than us: nothing to act on.
            Ok(Some(CoordinatorMessage { msg: None })) => continue,
            Ok(None) => Inbound::Closed("coordinator ended the session".to_string()),
            Err(st) => Inbound::Closed(rpc::describe(&st)),
        };
        let closed = matches!(item, Inbound::Closed(_));
        tokio::select! {
            () = stop.cancelled() => return,
            sent = out.send(item) => if sent.is_err() { return },
        }
        if closed {
            return;
        }
    }
}
