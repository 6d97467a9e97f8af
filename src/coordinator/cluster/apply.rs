//! Applying events to this replica's Hub: the one place that turns a
//! cluster event into a kick, a push or a wake-up.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Event, Inbox};
use crate::coordinator::Hub;

/// On [`Hub::changes`]: every job may have changed (a resync), so every
/// log follower re-reads. Never a job id (those are UUIDs).
pub const ALL_JOBS: &str = "*";

/// Applies the inbox's events to `hub` until `shutdown`.
pub async fn apply_events(hub: Arc<Hub>, mut inbox: Inbox, shutdown: CancellationToken) {
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            e = inbox.recv() => e,
        };
        let Some(event) = event else { return };
        match event {
            Event::JobQueued { tags } => hub.dispatcher.kick_for(&tags),
            Event::Kick => hub.dispatcher.kick(),
            Event::CancelJob { daemon_id, job_id } => cancel(&hub, &daemon_id, &job_id),
            Event::KeyDeleted { key } => hub.end_sessions_of_key(&key),
            Event::JobChanged { job_id } => {
                let _ = hub.changes.send(job_id);
            }
            Event::ReconcilePrebuilds => hub.prebuilds.wake_up(),
            Event::Resync => resync(&hub).await,
        }
    }
}

/// Tells every replica when this one's dispatcher sent a job back to the
/// queue by itself (with one replica its own retry is enough).
pub async fn relay_returned(hub: Arc<Hub>, shutdown: CancellationToken) {
    let returned = hub.dispatcher.returned();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = returned.notified() => hub.kick(),
        }
    }
}

/// Pushes the cancel if the daemon's session is on this replica (only
/// one replica holds it; the others have nothing to do).
fn cancel(hub: &Hub, daemon_id: &str, job_id: &str) {
    let Some(daemon) = hub.lock_sessions().get(daemon_id).map(|s| s.name.clone()) else {
        return;
    };
    if hub.push_cancel(daemon_id, job_id) {
        tracing::info!(job = %job_id, %daemon, "job canceling: daemon told");
    } else {
        // It learns from the answer to its next UpdateJob.
        tracing::warn!(
            job = %job_id,
            %daemon,
            "job canceling: daemon's session is full; it learns on its next update"
        );
    }
}

/// What missed events would have done, re-derived from the store: offer
/// what is claimable, wake log followers and the reconciler, end sessions
/// whose key was deleted, push the cancels of this replica's sessions'
/// jobs.
async fn resync(hub: &Arc<Hub>) {
    hub.dispatcher.kick();
    let _ = hub.changes.send(ALL_JOBS.to_string());
    hub.prebuilds.wake_up();
    let sessions: Vec<(String, String)> = (hub.lock_sessions().iter())
        .map(|(id, s)| (id.clone(), s.key_name.clone()))
        .collect();
    if sessions.is_empty() {
        return;
    }
    let ids: Vec<String> = sessions.iter().map(|(id, _)| id.clone()).collect();
    let read = hub
        .store
        .call(move |s| {
            let keys: BTreeSet<String> = s.list_keys()?.into_iter().map(|k| k.name).collect();
            let mut cancels = Vec::new();
            for id in ids {
                for job in s.canceling_jobs(&id)? {
                    cancels.push((id.clone(), job));
                }
            }
            Ok((keys, cancels))
        })
        .await;
    let (keys, cancels) = match read {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cluster: resync sessions; the next event or resync retries");
            return;
        }
    };
    for key in sessions.iter().map(|(_, k)| k).collect::<BTreeSet<_>>() {
        if !keys.contains(key) {
            hub.end_sessions_of_key(key);
        }
    }
    for (daemon_id, job_id) in cancels {
        hub.push_cancel(&daemon_id, &job_id);
    }
}
