//! One batch of dispatcher events, applied to the dispatcher's state on a
//! blocking thread: every store call of the dispatcher happens here.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::waiters::Waiters;
use super::{Cmd, Outbound};
use crate::coordinator::store::{Store, now_ms};
use crate::proto::{CoordinatorMessage, coordinator_message::Msg};
use crate::tags::Tags;

/// Events that arrived together.
#[derive(Default)]
pub(super) struct Batch {
    /// Try every waiting daemon (backstop, an unspecific kick, an offer
    /// withdrawn).
    pub all: bool,
    /// An offer's timer may have run out.
    pub expire: bool,
    /// Tag sets of jobs enqueued.
    job_tags: BTreeSet<Tags>,
    waits: Vec<(String, Tags, Outbound)>,
}

impl Batch {
    /// Adds `cmd` to the batch; an Unwait or Gone is given back (it ends
    /// the batch, to be handled after it).
    pub fn take(&mut self, cmd: Cmd) -> Option<Cmd> {
        match cmd {
            Cmd::Wait {
                daemon_id,
                tags,
                tx,
            } => self.waits.push((daemon_id, tags, tx)),
            Cmd::Kick(None) => self.all = true,
            Cmd::Kick(Some(tags)) => {
                self.job_tags.insert(tags);
            }
            other => return Some(other),
        }
        None
    }

    pub fn len(&self) -> usize {
        self.job_tags.len() + self.waits.len()
    }

    pub fn is_empty(&self) -> bool {
        !self.all && !self.expire && self.job_tags.is_empty() && self.waits.is_empty()
    }
}

/// An offer pushed to a daemon, until its timer runs out (acknowledged
/// or not: the store says which).
pub(super) struct Offered {
    job_id: String,
    tx: Outbound,
    expires: Instant,
}

/// What the dispatcher task owns; moved to the blocking thread for a
/// batch and back.
pub(super) struct State {
    store: Arc<Store>,
    latency: Histogram,
    offer_timeout: Duration,
    pub waiters: Waiters,
    /// By daemon id: one offer per session at most.
    pub offered: HashMap<String, Offered>,
    /// Told when this dispatcher sent a job back to the queue (an offer
    /// withdrawn or undeliverable): other replicas' daemons may take it.
    returned: Arc<Notify>,
}

impl State {
    pub fn new(
        store: Arc<Store>,
        latency: Histogram,
        offer_timeout: Duration,
        returned: Arc<Notify>,
    ) -> State {
        State {
            store,
            latency,
            offer_timeout,
            waiters: Waiters::default(),
            offered: HashMap::new(),
            returned,
        }
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.offered.values().map(|o| o.expires).min()
    }

    /// Applies `batch` on a blocking thread. A panic there is logged and
    /// the state kept as it was left, so waiting daemons are not lost.
    pub async fn apply(mut self, batch: Batch) -> State {
        let handle = tokio::task::spawn_blocking(move || {
            let run = std::panic::AssertUnwindSafe(|| self.run(batch));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!("dispatcher batch panicked; waiting daemons kept");
            }
            self
        });
        match handle.await {
            Ok(state) => state,
            // Only a runtime shutting down cancels a blocking task, and the
            // panic is caught inside: nothing to keep serving then.
            Err(e) => panic!("dispatcher batch lost: {e}"),
        }
    }

    fn run(&mut self, batch: Batch) {
        let mut all = batch.all;
        if batch.expire {
            all |= self.expire();
        }
        let mut keys: BTreeSet<String> = BTreeSet::new();
        for (daemon_id, tags, tx) in batch.waits {
            if self.offer_stands(&daemon_id) {
                continue;
            }
            keys.insert(self.waiters.add(daemon_id, tags, tx, now_ms()));
        }
        let mut keys: Vec<String> = if all {
            self.waiters.all()
        } else {
            for job in &batch.job_tags {
                keys.extend(self.waiters.concerned(job).cloned());
            }
            keys.into_iter().collect()
        };
        self.dispatch(&mut keys);
    }

    /// Whether the daemon's last offer still stands (pushed, not
    /// acknowledged): then its Acquire is ignored — one session, one
    /// offer. An offer it acknowledged is forgotten here.
    fn offer_stands(&mut self, daemon_id: &str) -> bool {
        let Some(o) = self.offered.get(daemon_id) else {
            return false;
        };
        match self.store.standing_offer(daemon_id) {
            Ok(Some(job)) => {
                tracing::warn!(
                    daemon = %daemon_id,
                    job = %job,
                    "acquire while an offer to the daemon stands: ignored (one offer at a time)"
                );
                true
            }
            Ok(None) => {
                self.offered.remove(daemon_id);
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
    /// acknowledged: the job goes back to the queue, and the session is
    /// told with a `CancelJob` push, so a daemon that acknowledges late
    /// knows not to run it (its ack and its ownership confirmation are
    /// refused anyway). True when a job went back.
    fn expire(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<String> = (self.offered.iter())
            .filter(|(_, o)| o.expires <= now)
            .map(|(d, _)| d.clone())
            .collect();
        let mut returned = false;
        for daemon_id in due {
            let Some(o) = self.offered.remove(&daemon_id) else {
                continue;
            };
            match self.store.release_offer(&o.job_id, &daemon_id) {
                Ok(true) => {
                    returned = true;
                    self.returned.notify_one();
                    tracing::warn!(
                        job = %o.job_id,
                        daemon = %daemon_id,
                        "offer not acknowledged within --offer-timeout {}: withdrawn, job back in the queue",
                        humantime::format_duration(self.offer_timeout)
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
        returned
    }

    /// Offers jobs to the daemons of groups `keys`, longest-waiting daemon
    /// first; a group is done at its first claim that finds nothing.
    fn dispatch(&mut self, keys: &mut Vec<String>) {
        while let Some((key, daemon_id, tags)) = self.waiters.longest_waiting(keys) {
            let offer = match self.store.claim(&daemon_id, &tags) {
                Ok(Some(offer)) => offer,
                Ok(None) => {
                    keys.retain(|k| *k != key);
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "claim job");
                    return;
                }
            };
            let Some(w) = self.waiters.pop(&key) else {
                continue;
            };
            let job_id = offer.job_id.clone();
            let matched_since = w.since_ms.max(offer.created_at);
            (self.latency).observe((now_ms() - matched_since).max(0) as f64 / 1000.0);
            tracing::info!(job = %job_id, daemon = %w.daemon_id, "offering job");
            let msg = CoordinatorMessage {
                msg: Some(Msg::JobOffer(super::proto::offer(offer))),
            };
            // The session's outbound queue is bounded and one slow session
            // must not stall dispatching for all: a full or closed queue
            // sends the job straight back to the queue.
            if w.tx.try_send(Ok(msg)).is_err() {
                match self.store.release_offer(&job_id, &w.daemon_id) {
                    Ok(true) => self.returned.notify_one(),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, job = %job_id, "release offer"),
                }
                continue;
            }
            self.offered.insert(
                w.daemon_id,
                Offered {
                    job_id,
                    tx: w.tx,
                    expires: Instant::now() + self.offer_timeout,
                },
            );
        }
    }
}
