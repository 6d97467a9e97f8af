//! The dispatcher: one task that owns the set of daemons waiting for a job
//! and pushes offers to them. Daemons never poll: an offer is sent when a
//! daemon starts waiting and a job matches, or when a job is enqueued (or
//! returned to the queue) and a waiting daemon matches.
//!
//! It also owns the offers it made: each must be acknowledged within the
//! offer timeout (`serve --offer-timeout`), or its timer withdraws it, the
//! job goes back to the queue and the session is pushed a `CancelJob` for
//! it. A session holds at most one offer: an Acquire while its offer
//! stands is ignored, so repeated Acquires never hoard jobs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
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
    /// The daemon's session ended: forget it, waiting or offered (its
    /// offers go back to the queue in the store).
    Gone {
        daemon_id: String,
        reply: oneshot::Sender<()>,
    },
    Kick,
}

type Outbound = mpsc::Sender<Result<CoordinatorMessage, tonic::Status>>;

struct Waiter {
    daemon_id: String,
    tags: Tags,
    tx: mpsc::Sender<Result<CoordinatorMessage, tonic::Status>>,
    /// When it started waiting (ms since epoch), for the dispatch latency.
    since_ms: i64,
}

/// An offer pushed to a daemon, until its timer runs out (acknowledged
/// or not: the store says which).
struct Offered {
    job_id: String,
    tx: Outbound,
    expires: Instant,
}

#[derive(Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Cmd>,
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
        tasks.spawn(run(store, rx, shutdown, latency, offer_timeout));
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

    /// The daemon's session ended: it waits no more, and its offer's timer
    /// is dropped. Returns once the dispatcher has forgotten it, so no offer
    /// can follow.
    pub async fn session_ended(&self, daemon_id: String) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Gone { daemon_id, reply }).await.is_ok() {
            let _ = rx.await;
        }
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
    offer_timeout: Duration,
) {
    let mut waiting: Vec<Waiter> = Vec::new();
    // By daemon id: one offer per session at most.
    let mut offered: HashMap<String, Offered> = HashMap::new();
    let mut backstop = tokio::time::interval(BACKSTOP);
    loop {
        let next_expiry = offered.values().map(|o| o.expires).min();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = backstop.tick() => {}
            () = sleep_until(next_expiry) => expire(&store, &mut offered, offer_timeout),
            cmd = rx.recv() => match cmd {
                None => return,
                Some(Cmd::Wait { daemon_id, tags, tx }) => {
                    if offer_stands(&store, &mut offered, &daemon_id) {
                        continue;
                    }
                    waiting.retain(|w| w.daemon_id != daemon_id);
                    waiting.push(Waiter { daemon_id, tags, tx, since_ms: now_ms() });
                }
                Some(Cmd::Unwait { daemon_id, reply }) => {
                    // An offer already pushed stays (and expires unless
                    // acknowledged).
                    let before = waiting.len();
                    waiting.retain(|w| w.daemon_id != daemon_id);
                    let _ = reply.send(waiting.len() != before);
                    continue;
                }
                Some(Cmd::Gone { daemon_id, reply }) => {
                    waiting.retain(|w| w.daemon_id != daemon_id);
                    offered.remove(&daemon_id);
                    let _ = reply.send(());
                    continue;
                }
                Some(Cmd::Kick) => {}
            }
        }
        dispatch(&store, &mut waiting, &mut offered, &latency, offer_timeout);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether the daemon's last offer still stands (pushed, not acknowledged):
/// then its Acquire is ignored — one session, one offer. An offer it
/// acknowledged is forgotten here.
fn offer_stands(store: &Store, offered: &mut HashMap<String, Offered>, daemon_id: &str) -> bool {
    let Some(o) = offered.get(daemon_id) else {
        return false;
    };
    match store.standing_offer(daemon_id) {
        Ok(Some(job)) => {
            tracing::warn!(
                daemon = %daemon_id,
                job = %job,
                "acquire while an offer to the daemon stands: ignored (one offer at a time)"
            );
            true
        }
        Ok(None) => {
            offered.remove(daemon_id);
            false
        }
        Err(e) => {
            // Unknown: refusing is the safe side (the offer's timer runs).
            tracing::error!(error = %e, job = %o.job_id, "look up standing offer");
            true
        }
    }
}

/// Withdraws every offer whose time is up and that its daemon has not
/// acknowledged: the job goes back to the queue (offered next by the
/// caller), and the session is told with a `CancelJob` push, so a daemon
/// that acknowledges late knows not to run it (its ack and its ownership
/// confirmation are refused anyway).
fn expire(store: &Store, offered: &mut HashMap<String, Offered>, timeout: Duration) {
    let now = Instant::now();
    let due: Vec<String> = offered
        .iter()
        .filter(|(_, o)| o.expires <= now)
        .map(|(d, _)| d.clone())
        .collect();
    for daemon_id in due {
        let Some(o) = offered.remove(&daemon_id) else {
            continue;
        };
        match store.release_offer(&o.job_id, &daemon_id) {
            Ok(true) => {
                tracing::warn!(
                    job = %o.job_id,
                    daemon = %daemon_id,
                    "offer not acknowledged within --offer-timeout {}: withdrawn, job back in the queue",
                    humantime::format_duration(timeout)
                );
                let msg = CoordinatorMessage {
                    msg: Some(Msg::CancelJob(crate::proto::CancelJob { job_id: o.job_id })),
                };
                // A full queue: the daemon learns when its ack is refused.
                let _ = o.tx.try_send(Ok(msg));
            }
            // Acknowledged in time, or canceled meanwhile.
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, job = %o.job_id, "withdraw expired offer"),
        }
    }
}

/// Offers jobs to waiting daemons, longest-waiting daemon first.
fn dispatch(
    store: &Store,
    waiting: &mut Vec<Waiter>,
    offered: &mut HashMap<String, Offered>,
    latency: &Histogram,
    offer_timeout: Duration,
) {
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
        if w.tx.try_send(Ok(msg)).is_err() {
            if let Err(e) = store.release_offer(&job_id, &w.daemon_id) {
                tracing::error!(error = %e, job = %job_id, "release offer");
            }
            continue;
        }
        offered.insert(
            w.daemon_id,
            Offered {
                job_id,
                tx: w.tx,
                expires: Instant::now() + offer_timeout,
            },
        );
    }
}

#[cfg(test)]
mod tests;
