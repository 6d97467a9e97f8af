//! The dispatcher: one task that owns the set of daemons waiting for a job
//! and pushes offers to them. Daemons never poll: an offer is sent when a
//! daemon starts waiting and a job matches, or when a job is enqueued (or
//! returned to the queue) and a waiting daemon matches.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use prometheus_client::metrics::histogram::Histogram;

use super::store::{Store, now_ms};
use crate::proto::{CoordinatorMessage, coordinator_message::Msg};
use crate::tags::Tags;

/// How often the queue is re-checked without any event; a backstop only
/// (every change that can make a job claimable sends `Kick`).
const BACKSTOP: Duration = Duration::from_secs(5);

enum Cmd {
    Wait {
        daemon_id: String,
        tags: Tags,
        tx: mpsc::Sender<Result<CoordinatorMessage, tonic::Status>>,
    },
    /// Stop waiting; answers whether the daemon was still waiting (false
    /// means an offer is already on its way).
    Unwait {
        daemon_id: String,
        reply: oneshot::Sender<bool>,
    },
    Kick,
}

struct Waiter {
    daemon_id: String,
    tags: Tags,
    tx: mpsc::Sender<Result<CoordinatorMessage, tonic::Status>>,
    /// When it started waiting (ms since epoch), for the dispatch latency.
    since_ms: i64,
}

#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Cmd>,
}

impl Dispatcher {
    /// Starts the dispatcher task; it ends with `shutdown`.
    /// `latency` observes, per offer, the time since the daemon waited
    /// and the job was pending (the later of the two).
    pub fn spawn(store: Arc<Store>, shutdown: CancellationToken, latency: Histogram) -> Dispatcher {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(store, rx, shutdown, latency));
        Dispatcher { tx }
    }

    pub async fn wait(
        &self,
        daemon_id: String,
        tags: Tags,
        tx: mpsc::Sender<Result<CoordinatorMessage, tonic::Status>>,
    ) {
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

    /// Something changed in the queue: try to hand out jobs.
    pub fn kick(&self) {
        // A full channel already holds work that will re-check the queue.
        let _ = self.tx.try_send(Cmd::Kick);
    }
}

async fn run(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Cmd>,
    shutdown: CancellationToken,
    latency: Histogram,
) {
    let mut waiting: Vec<Waiter> = Vec::new();
    let mut backstop = tokio::time::interval(BACKSTOP);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = backstop.tick() => {}
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Cmd::Wait { daemon_id, tags, tx }) => {
                    waiting.retain(|w| w.daemon_id != daemon_id);
                    waiting.push(Waiter { daemon_id, tags, tx, since_ms: now_ms() });
                }
                Some(Cmd::Unwait { daemon_id, reply }) => {
                    let before = waiting.len();
                    waiting.retain(|w| w.daemon_id != daemon_id);
                    let _ = reply.send(waiting.len() != before);
                    continue;
                }
                Some(Cmd::Kick) => {}
            }
        }
        dispatch(&store, &mut waiting, &latency);
    }
}

/// Offers jobs to waiting daemons, longest-waiting daemon first.
fn dispatch(store: &Store, waiting: &mut Vec<Waiter>, latency: &Histogram) {
    let mut i = 0;
    while i < waiting.len() {
        let w = &waiting[i];
        if w.tx.is_closed() {
            waiting.remove(i);
            continue;
        }
        let offer = match store.claim(&w.daemon_id, &w.tags) {
            Ok(Some(offer)) => offer,
            Ok(None) => {
                i += 1;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "claim job");
                return;
            }
        };
        let w = waiting.remove(i);
        let job_id = offer.job_id.clone();
        let matched_since = w.since_ms.max(offer.created_at);
        latency.observe((now_ms() - matched_since).max(0) as f64 / 1000.0);
        tracing::info!(job = %job_id, daemon = %w.daemon_id, "offering job");
        let msg = CoordinatorMessage {
            msg: Some(Msg::JobOffer(offer)),
        };
        // The session's outbound queue is bounded and one slow session must
        // not stall dispatching for all: a full or closed queue sends the
        // job straight back to the queue.
        if w.tx.try_send(Ok(msg)).is_err()
            && let Err(e) = store.release_offer(&job_id, &w.daemon_id)
        {
            tracing::error!(error = %e, job = %job_id, "release offer");
        }
    }
}
