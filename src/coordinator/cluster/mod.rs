//! Several coordinator replicas on one database: the events that tell
//! every replica's Hub about a change made on any replica, and the
//! election of the one replica that runs the lease reaper and the prebuild
//! reconciler.
//!
//! Every change that concerns the Hub (a job queued, offers back in the
//! queue, a cancel to push, a key deleted, a job's logs or status) is
//! [`Cluster::publish`]ed after the store call that made it returned, and
//! reaches each replica's [`Inbox`], which `apply.rs` applies to the
//! local Hub. With SQLite (one replica) the inbox is fed in-process and
//! this replica is always the leader. With PostgreSQL an event is a
//! `NOTIFY` on channel [`CHANNEL`] (`publish.rs`), every replica `LISTEN`s
//! (`pg.rs`), and the publishing replica applies its own event when it
//! comes back, so both backends apply events the same way, from the inbox.
//! Leadership is a session advisory lock (`leader.rs`).
//!
//! Events can be missed (the listen connection dropped, a full channel):
//! then a [`Event::Resync`] is applied instead, which re-derives what the
//! missed events would have said from the store.

mod apply;
mod leader;
mod pg;
mod publish;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tags::Tags;
pub use apply::{ALL_JOBS, apply_events, relay_returned};
pub use leader::LOCK_KEY;

/// The PostgreSQL notification channel all replicas listen on (in the
/// `public` schema; another schema's deployment adds a suffix, see
/// `pg::Scope`).
pub const CHANNEL: &str = "provisionerd";

/// Events buffered between a publisher and its sender (or the inbox and
/// the Hub); beyond this they are dropped and a resync stands for them.
const CAPACITY: usize = 4096;

/// How often a replica tries to become leader (and a leader checks that it
/// still is) unless told otherwise.
pub const DEFAULT_ELECTION_EVERY: Duration = Duration::from_secs(1);

/// A change every replica's Hub must hear of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Event {
    /// A job with these tags was enqueued: daemons that may take it try.
    JobQueued { tags: Tags },
    /// Jobs went back to the queue (offers returned): every waiting
    /// daemon tries.
    Kick,
    /// Push a `CancelJob` to the daemon's session, wherever it is.
    CancelJob { daemon_id: String, job_id: String },
    /// End the sessions of daemons using this key, on every replica.
    KeyDeleted { key: String },
    /// The job's logs or status changed (`jobs logs --follow`).
    JobChanged { job_id: String },
    /// Prebuilds resumed or a pool reset: the leader's reconciler runs a
    /// pass now rather than at its next interval.
    ReconcilePrebuilds,
    /// Events may have been missed: kick every waiting daemon, wake every
    /// log follower and the reconciler, end sessions whose key is gone,
    /// re-push cancels.
    Resync,
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("parse --database-url: {0}")]
    Url(String),
    #[error("connect to the database for cross-replica events: {0}")]
    Connect(String),
}

/// How the cluster is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// `None`: SQLite, one replica.
    pub database_url: Option<String>,
    /// How often leadership is tried and checked.
    pub election_every: Duration,
}

/// This replica's end of the cluster: publish events, ask for leadership.
/// Cheap to share (`Hub` holds one).
pub struct Cluster {
    /// Local: the inbox itself; PostgreSQL: the publisher task.
    out: mpsc::Sender<Event>,
    /// Set when `out` was full and an event was dropped; whoever drains
    /// `out` stands a resync in for it.
    overflow: Arc<AtomicBool>,
    leader: watch::Receiver<bool>,
    /// `provisionerd_coordinator_leader`, kept in step with `leader`.
    gauge: Gauge,
    distributed: bool,
    /// The leader lock's key (PostgreSQL).
    lock_key: Option<i64>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("distributed", &self.distributed)
            .field("leader", &self.is_leader())
            .finish()
    }
}

/// The events this replica must apply, in the order they arrived.
pub struct Inbox {
    rx: mpsc::Receiver<Event>,
    /// Events dropped on the way in (local mode): a resync stands in.
    overflow: Arc<AtomicBool>,
}

impl Inbox {
    /// The next event; `None` once every sender is gone. A dropped event
    /// comes out as [`Event::Resync`].
    pub async fn recv(&mut self) -> Option<Event> {
        if self.overflow.swap(false, Ordering::AcqRel) {
            return Some(Event::Resync);
        }
        self.rx.recv().await
    }
}

impl Cluster {
    /// Starts the cluster's tasks on `tasks`; they end with `shutdown`.
    /// With a database URL, the listen connection is up and listening
    /// before this returns, so no event published after it is missed.
    pub async fn start(
        opts: &Options,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<(Cluster, Inbox), ClusterError> {
        let gauge = Gauge::default();
        let (inbox_tx, inbox_rx) = mpsc::channel(CAPACITY);
        let Some(url) = &opts.database_url else {
            // One replica: it leads, and events go straight to its inbox.
            gauge.set(1);
            // Never changes; a receiver keeps the value its sender left.
            let (_, leader) = watch::channel(true);
            let overflow = Arc::new(AtomicBool::new(false));
            let cluster = Cluster {
                out: inbox_tx,
                overflow: overflow.clone(),
                leader,
                gauge,
                distributed: false,
                lock_key: None,
            };
            let inbox = Inbox {
                rx: inbox_rx,
                overflow,
            };
            return Ok((cluster, inbox));
        };
        let config = pg::config(url)?;
        let scope = pg::listen(&config, tasks, shutdown.clone(), inbox_tx).await?;
        let (out, out_rx) = mpsc::channel(CAPACITY);
        let overflow = Arc::new(AtomicBool::new(false));
        let publisher = publish::Publisher {
            config: config.clone(),
            channel: scope.channel.clone(),
            rx: out_rx,
            overflow: overflow.clone(),
            tasks: tasks.clone(),
        };
        tasks.spawn(publisher.run(shutdown.clone()));
        let (leader_tx, leader) = watch::channel(false);
        let election = leader::Election {
            config,
            lock_key: scope.lock_key,
            every: opts.election_every,
            leader: leader_tx,
            gauge: gauge.clone(),
            tasks: tasks.clone(),
        };
        tasks.spawn(election.run(shutdown));
        let cluster = Cluster {
            out,
            overflow,
            leader,
            gauge,
            distributed: true,
            lock_key: Some(scope.lock_key),
        };
        let inbox = Inbox {
            rx: inbox_rx,
            overflow: Arc::new(AtomicBool::new(false)),
        };
        Ok((cluster, inbox))
    }

    /// Tells every replica (this one included) of `event`. Never waits:
    /// callers publish after their store call, from async handlers and
    /// blocking threads alike. If the buffer is full the event is dropped
    /// and a resync goes out in its place.
    pub fn publish(&self, event: Event) {
        if let Err(e) = self.out.try_send(event)
            && !self.overflow.swap(true, Ordering::AcqRel)
        {
            tracing::warn!(error = %e, "cluster: event buffer full; a resync stands in for dropped events");
        }
    }

    /// Whether this replica runs the lease reaper and prebuild reconciler
    /// now. False from the moment its lock connection is lost.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Changes of [`Self::is_leader`].
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// `provisionerd_coordinator_leader` (1 while leader).
    pub fn leader_gauge(&self) -> Gauge {
        self.gauge.clone()
    }

    /// The advisory lock key the leader holds (PostgreSQL): `LOCK_KEY` in
    /// the `public` schema, one derived from the schema's name otherwise.
    pub fn lock_key(&self) -> Option<i64> {
        self.lock_key
    }

    /// Whether events cross replicas (PostgreSQL).
    pub fn is_distributed(&self) -> bool {
        self.distributed
    }
}

#[cfg(test)]
mod tests;
