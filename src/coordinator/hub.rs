//! The state both services share: the store, the dispatcher, the live
//! sessions (for pushes) and the cluster events that reach them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::daemon_api::SessionHandle;
use super::dispatch::Dispatcher;
use super::store::Store;
use super::{claim, cluster, prebuilds};

/// Shared by both services.
pub struct Hub {
    pub store: Arc<Store>,
    pub dispatcher: Dispatcher,
    /// Job ids whose logs or status changed.
    pub changes: broadcast::Sender<String>,
    pub(super) sessions: Mutex<HashMap<String, SessionHandle>>,
    /// `--job-lease`, told to daemons in their Welcome.
    pub job_lease: Duration,
    /// Cancelled when the coordinator shuts down: sessions end with
    /// UNAVAILABLE so daemons reconnect to whoever serves next, instead of
    /// holding a stream to a process that no longer hands out work.
    pub stopping: CancellationToken,
    /// The prebuild reconciler's shared state (interval, wake-up, errors).
    pub prebuilds: prebuilds::Prebuilds,
    /// Every task the coordinator spawns (dispatcher, sessions, log
    /// followers, reaper, reconciler, metrics): `run` waits for them before
    /// it lets go of the data dir, so nothing of this coordinator touches
    /// the store once another may hold it.
    pub tasks: TaskTracker,
    /// Claim durations, observed as claims happen (see `claim.rs`).
    pub claim_durations: claim::ClaimDurations,
    /// Events to every replica's Hub, and leadership.
    pub cluster: cluster::Cluster,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hub")
    }
}

impl Hub {
    /// The job's logs or status changed: log followers on every replica
    /// re-read.
    pub fn job_changed(&self, job_id: &str) {
        self.cluster.publish(cluster::Event::JobChanged {
            job_id: job_id.to_string(),
        });
    }

    /// A job with `tags` was enqueued: waiting daemons that may take it,
    /// on every replica, try.
    pub fn job_queued(&self, tags: &crate::tags::Tags) {
        self.cluster
            .publish(cluster::Event::JobQueued { tags: tags.clone() });
    }

    /// Jobs went back to the queue: every waiting daemon, on every
    /// replica, tries.
    pub fn kick(&self) {
        self.cluster.publish(cluster::Event::Kick);
    }

    /// Tells the daemon running `job_id` to interrupt it, on whichever
    /// replica holds its session. If none can (no session, or its
    /// outbound buffer is full), it learns from its next UpdateJob.
    pub fn cancel_on_daemon(&self, daemon_id: &str, job_id: &str) {
        self.cluster.publish(cluster::Event::CancelJob {
            daemon_id: daemon_id.to_string(),
            job_id: job_id.to_string(),
        });
    }

    pub(super) fn register_session(&self, daemon_id: String, handle: SessionHandle) {
        self.lock_sessions().insert(daemon_id, handle);
    }

    pub(super) async fn end_session(&self, daemon_id: &str) {
        self.lock_sessions().remove(daemon_id);
        // Forgotten by the dispatcher first, so it cannot offer it a job
        // after its offers were returned to the queue below.
        self.dispatcher.session_ended(daemon_id.to_string()).await;
        let (store, id) = (self.store.clone(), daemon_id.to_string());
        if let Err(e) = super::store::blocking(move || store.disconnect_daemon(&id)).await {
            tracing::error!(error = %e, "record daemon disconnect");
        }
        // Offers it never acknowledged are back in the queue, for daemons
        // on any replica.
        self.kick();
    }

    /// Tells the daemon running `job_id` to interrupt it, on its session
    /// on this replica, now. Returns false when it could not be told (no session, or its
    /// outbound buffer is full); it then learns from its next UpdateJob,
    /// whose answer says `canceled`.
    pub fn push_cancel(&self, daemon_id: &str, job_id: &str) -> bool {
        let sessions = self.lock_sessions();
        let Some(s) = sessions.get(daemon_id) else {
            return false;
        };
        let msg = crate::proto::CoordinatorMessage {
            msg: Some(crate::proto::coordinator_message::Msg::CancelJob(
                crate::proto::CancelJob {
                    job_id: job_id.to_string(),
                },
            )),
        };
        // Never wait under the sessions lock (or for a slow daemon at all).
        s.tx.try_send(Ok(msg)).is_ok()
    }

    /// Ends every session (their daemons reconnect).
    pub fn end_all_sessions(&self) {
        for s in self.lock_sessions().values() {
            s.end.cancel();
        }
    }

    /// Ends the sessions of every daemon using `key_name`, on every
    /// replica.
    pub fn disconnect_key(&self, key_name: &str) {
        self.cluster.publish(cluster::Event::KeyDeleted {
            key: key_name.to_string(),
        });
    }

    /// Ends the sessions on this replica of every daemon using `key_name`.
    pub(super) fn end_sessions_of_key(&self, key_name: &str) {
        for s in self.lock_sessions().values() {
            if s.key_name == key_name {
                tracing::info!(daemon = %s.name, key = key_name, "key deleted: disconnecting daemon");
                s.end.cancel();
            }
        }
    }

    pub(super) fn lock_sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, SessionHandle>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}
