//! The coordinator's loops besides serving: the replica heartbeat
//! (PostgreSQL) and the lease reaper (on the leading replica).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Hub, ServeConfig, cluster, store};

/// Keeps this replica's heartbeat (PostgreSQL; see `store/replicas.rs`):
/// clears replicas found dead and offers their jobs again; ends every
/// session here when this replica was itself declared dead (cut off from
/// the database for longer than the replica timeout), since their daemons
/// were marked disconnected.
pub(super) async fn replica_heartbeat(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut failing = false;
    // Since when every heartbeat succeeded: others are judged only after a
    // whole timeout of them (a replica just back from an outage has not
    // heard the others write theirs).
    let mut healthy_since = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(store::replicas::HEARTBEAT_EVERY) => {}
        }
        let store = hub.store.clone();
        let bury = healthy_since.elapsed() >= store::replicas::REPLICA_TIMEOUT;
        let beat = match store::blocking(move || store.heartbeat(bury)).await {
            Ok(b) => b,
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "replica heartbeat: database unreachable");
                }
                failing = true;
                continue;
            }
        };
        if failing {
            tracing::info!("replica heartbeat: database reachable again");
            failing = false;
            healthy_since = tokio::time::Instant::now();
        }
        if beat.revived {
            tracing::warn!(
                "replica heartbeat: this replica was declared dead by the others; ending its \
                 sessions so its daemons register again"
            );
            hub.end_all_sessions();
        }
        if beat.buried > 0 {
            tracing::warn!(
                replicas = beat.buried,
                offers = beat.offers_returned,
                "replica heartbeat: replicas gone silent; their daemons may register elsewhere"
            );
            hub.kick();
        }
    }
}

/// How often the lease reaper looks for lost jobs.
pub(super) fn reap_period(lease: Duration) -> Duration {
    (lease / 4).max(Duration::from_millis(100))
}

/// How often leadership is tried: at most the shorter of the leader's
/// loops' intervals, so a new leader takes over within one of them.
pub(super) fn election_every(cfg: &ServeConfig) -> Duration {
    let mut every = cluster::DEFAULT_ELECTION_EVERY.min(reap_period(cfg.job_lease));
    if let Some(reconcile) = cfg.prebuild_reconcile_interval {
        every = every.min(reconcile);
    }
    every.max(Duration::from_millis(100))
}

/// Fails running jobs whose daemon stopped sending updates. Runs on the
/// leader only: one replica at a time fails lost jobs.
pub(super) async fn reap_lost_jobs(hub: Arc<Hub>, lease: Duration, shutdown: CancellationToken) {
    let period = reap_period(lease);
    // Leases count from when daemons could report: after this replica took
    // the lead, or after the database was away, they restart before
    // anything is judged (the daemons may simply not have been heard).
    let mut fresh = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        if !hub.cluster.is_leader() {
            fresh = true;
            continue;
        }
        let store = hub.store.clone();
        if fresh {
            match store::blocking(move || store.extend_leases()).await {
                Ok(_) => fresh = false,
                Err(e) => tracing::error!(error = %e, "reap lost jobs: extend leases"),
            }
            continue;
        }
        let cutoff = store::now_ms() - lease.as_millis() as i64;
        match store::blocking(move || store.fail_lost_jobs(cutoff)).await {
            Ok(ids) => {
                for id in ids {
                    tracing::warn!(job = %id, "job failed: daemon lost");
                    hub.job_changed(&id);
                }
            }
            Err(e) => {
                fresh = true;
                tracing::error!(error = %e, "reap lost jobs");
            }
        }
    }
}
