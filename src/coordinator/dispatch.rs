//! The dispatcher: one task that owns the set of daemons waiting for a job
//! and pushes offers to them. Daemons never poll: an offer is sent when a
//! daemon starts waiting and a job matches, or when a job is enqueued (or
//! returned to the queue) and a waiting daemon matches.
//!
//! Cost. Waiting daemons are grouped by their tag set (`waiters.rs`): a
//! group whose first claim finds nothing is done for that event (its
//! other daemons would find nothing too), and an event that names the
//! enqueued job's tags (`kick_for`) concerns only the groups that may take
//! it. A daemon that starts waiting concerns its own group. Each claim is
//! an index lookup in the store (`store/offers.rs`), so a deep queue of
//! jobs nobody connected can take costs nothing per event. Events that
//! arrive together are handled as one batch, and the batch's store work
//! runs on a blocking thread (`spawn_blocking`), never on an async worker.
//!
//! It also owns the offers it made: each must be acknowledged within the
//! offer timeout (`serve --offer-timeout`), or its timer withdraws it, the
//! job goes back to the queue and the session is pushed a `CancelJob` for
//! it. A session holds at most one offer: an Acquire while its offer
//! stands is ignored, so repeated Acquires never hoard jobs.

mod batch;
mod proto;
mod waiters;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use prometheus_client::metrics::histogram::Histogram;

use super::store::Store;
use crate::proto::CoordinatorMessage;
use crate::tags::Tags;
use batch::{Batch, State};

/// How often the queue is re-checked without any event; a backstop only
/// (every change that can make a job claimable sends a kick).
const BACKSTOP: Duration = Duration::from_secs(5);

/// Events handled together at most; the rest wait for the next batch.
const MAX_BATCH: usize = 256;

enum Cmd {
    Wait {
        daemon_id: String,
        tags: Tags,
        tx: Outbound,
    },
    /// Stop waiting; answers whether the daemon was still waiting (false
    /// means an offer is already on its way).
    Unwait {
        daemon_id: String,
        reply: oneshot::Sender<bool>,
    },
    /// The daemon's session ended: forget it, waiting or offered (its
    /// offers go back to the queue in the store).
    Gone {
        daemon_id: String,
        reply: oneshot::Sender<()>,
    },
    /// Jobs may be claimable: with tags, only jobs of that tag set.
    Kick(Option<Tags>),
}

type Outbound = mpsc::Sender<Result<CoordinatorMessage, tonic::Status>>;

#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Cmd>,
    returned: Arc<Notify>,
}

impl Dispatcher {
    /// Starts the dispatcher task; it ends with `shutdown`.
    /// `latency` observes, per offer, the time since the daemon waited
    /// and the job was pending (the later of the two).
    /// An offer not acknowledged within `offer_timeout` is withdrawn.
    pub fn spawn(
        tasks: &tokio_util::task::TaskTracker,
        store: Arc<Store>,
        shutdown: CancellationToken,
        latency: Histogram,
        offer_timeout: Duration,
    ) -> Dispatcher {
        let (tx, rx) = mpsc::channel(1024);
        let returned = Arc::new(Notify::new());
        let state = State::new(store, latency, offer_timeout, returned.clone());
        tasks.spawn(run(state, rx, shutdown));
        Dispatcher { tx, returned }
    }

    /// Notified when this dispatcher sent a job back to the queue by
    /// itself (an offer withdrawn, or one its session could not take);
    /// it retries its own daemons, but other replicas must be told.
    pub fn returned(&self) -> Arc<Notify> {
        self.returned.clone()
    }

    pub async fn wait(&self, daemon_id: String, tags: Tags, tx: Outbound) {
        let _ = self
            .tx
            .send(Cmd::Wait {
                daemon_id,
                tags,
                tx,
            })
            .await;
    }

    pub async fn unwait(&self, daemon_id: String) -> bool {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Cmd::Unwait { daemon_id, reply })
            .await
            .is_err()
        {
            return true;
        }
        rx.await.unwrap_or(true)
    }

    /// The daemon's session ended: it waits no more, and its offer's timer
    /// is dropped. Returns once the dispatcher has forgotten it, so no offer
    /// can follow.
    pub async fn session_ended(&self, daemon_id: String) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Gone { daemon_id, reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Something changed in the queue: try to hand out jobs, to every
    /// waiting daemon.
    pub fn kick(&self) {
        // A full channel already holds work that will re-check the queue.
        let _ = self.tx.try_send(Cmd::Kick(None));
    }

    /// A job with `tags` was enqueued: only daemons that may take it are
    /// tried.
    pub fn kick_for(&self, tags: &Tags) {
        if self.tx.try_send(Cmd::Kick(Some(tags.clone()))).is_err() {
            // Full: the work queued re-checks, but maybe not for these
            // tags; the backstop covers the rest.
            tracing::debug!("dispatcher busy: kick left to the backstop");
        }
    }
}

async fn run(mut state: State, mut rx: mpsc::Receiver<Cmd>, shutdown: CancellationToken) {
    let mut backstop = tokio::time::interval(BACKSTOP);
    loop {
        let mut batch = Batch::default();
        // An Unwait or Gone that ended the batch: handled after it, so it
        // sees the batch's waiters and offers.
        let mut after = None;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = backstop.tick() => batch.all = true,
            () = sleep_until(state.next_expiry()) => batch.expire = true,
            cmd = rx.recv() => match cmd {
                None => return,
                Some(cmd) => after = batch.take(cmd),
            }
        }
        while after.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(cmd) => after = batch.take(cmd),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            state = state.apply(batch).await;
        }
        match after {
            Some(Cmd::Unwait { daemon_id, reply }) => {
                // An offer already pushed stays (and expires unless
                // acknowledged).
                let _ = reply.send(state.waiters.remove(&daemon_id));
            }
            Some(Cmd::Gone { daemon_id, reply }) => {
                state.waiters.remove(&daemon_id);
                state.offered.remove(&daemon_id);
                let _ = reply.send(());
            }
            _ => {}
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
mod tests;
