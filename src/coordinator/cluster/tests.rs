//! A resync on a real (SQLite) coordinator's Hub: it re-derives from the
//! store what missed events would have done.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ALL_JOBS, Event};
use crate::coordinator::daemon_api::SessionHandle;
use crate::coordinator::{
    Coordinator, DEFAULT_MAX_STATE_BYTES, DEFAULT_OFFER_TIMEOUT, ServeConfig,
};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn coordinator(dir: &std::path::Path) -> Coordinator {
    Coordinator::bind(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        allow_new_database: false,
        job_lease: Duration::from_secs(60),
        tls: None,
        archive_limits: Default::default(),
        max_state_bytes: DEFAULT_MAX_STATE_BYTES,
        metrics_address: None,
        prebuild_reconcile_interval: None,
        prebuild_failure_hard_limit: 3,
        offer_timeout: DEFAULT_OFFER_TIMEOUT,
        connections: Default::default(),
        database_url: None,
        database_pool: 4,
        admin_token_file: None,
    })
    .await
    .expect("bind coordinator")
}

/// A key deleted while its event was lost (another replica deleted it,
/// this one's listen connection was down): the resync ends the sessions
/// still using it, and only those; followers of every job wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_ends_sessions_of_deleted_keys_and_wakes_every_follower() {
    let dir = tempfile::tempdir().unwrap();
    let coord = coordinator(dir.path()).await;
    let hub = coord.hub.clone();
    let tags = Default::default();
    hub.store.create_key("gone", "hash-gone", &tags).unwrap();
    hub.store.create_key("kept", "hash-kept", &tags).unwrap();
    let mut ends = Vec::new();
    for (daemon, key) in [("d-gone", "gone"), ("d-kept", "kept")] {
        let (tx, _rx) = mpsc::channel(4);
        let end = CancellationToken::new();
        hub.register_session(
            daemon.to_string(),
            SessionHandle {
                name: daemon.to_string(),
                key_name: key.to_string(),
                end: end.clone(),
                tx,
            },
        );
        ends.push(end);
    }
    // Deleted in the store without its event.
    hub.store.delete_key("gone").unwrap();
    let mut changes = hub.changes.subscribe();
    hub.cluster.publish(Event::Resync);
    let woke = tokio::time::timeout(TIMEOUT, changes.recv())
        .await
        .expect("followers woken within the timeout")
        .expect("changes open");
    assert_eq!(woke, ALL_JOBS);
    tokio::time::timeout(TIMEOUT, ends[0].cancelled())
        .await
        .expect("the deleted key's session ended");
    // Events apply one at a time: once this one is out, the resync is done.
    hub.cluster.publish(Event::JobChanged {
        job_id: "marker".into(),
    });
    loop {
        let id = tokio::time::timeout(TIMEOUT, changes.recv())
            .await
            .expect("marker within the timeout")
            .expect("changes open");
        if id == "marker" {
            break;
        }
    }
    assert!(!ends[1].is_cancelled(), "a session of a kept key was ended");
    hub.stopping.cancel();
}
