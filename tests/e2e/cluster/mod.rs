//! The cluster module against a real PostgreSQL: two replicas' `Cluster`s
//! on one database exchange events and elect one leader; a restarted
//! server loses nothing published after it is back. Leadership: `leader`.

mod leader;

use std::path::Path;
use std::time::{Duration, Instant};

use provisionerd::coordinator::cluster::{Cluster, Event, Inbox, Options};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::common::TIMEOUT;
use crate::common::pg::Server;

/// One replica's cluster end, as the coordinator holds it.
struct Replica {
    cluster: Cluster,
    inbox: Inbox,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

async fn replica(url: Option<&str>, every: Duration) -> Replica {
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let opts = Options {
        database_url: url.map(str::to_string),
        election_every: every,
    };
    let (cluster, inbox) = Cluster::start(&opts, &tasks, shutdown.clone())
        .await
        .expect("start cluster");
    Replica {
        cluster,
        inbox,
        tasks,
        shutdown,
    }
}

impl Replica {
    /// The next event in its inbox (fails the test after [`TIMEOUT`]).
    async fn next(&mut self) -> Event {
        tokio::time::timeout(TIMEOUT, self.inbox.recv())
            .await
            .expect("an event within the timeout")
            .expect("inbox open")
    }

    /// The next event that is `want`, skipping others (resyncs).
    async fn until(&mut self, want: &Event) {
        while self.next().await != *want {}
    }

    /// Stops its tasks and waits until they (and their connections) ended.
    async fn stop(self) {
        self.shutdown.cancel();
        self.tasks.close();
        tokio::time::timeout(TIMEOUT, self.tasks.wait())
            .await
            .expect("cluster tasks end");
    }

    /// Waits until its leadership is `want`; how long that took.
    async fn leading(&self, want: bool) -> Duration {
        let t = Instant::now();
        let mut w = self.cluster.leadership();
        tokio::time::timeout(TIMEOUT, w.wait_for(|l| *l == want))
            .await
            .expect("leadership changes within the timeout")
            .expect("election running");
        t.elapsed()
    }
}

/// A database of the test's own (a schema on the test server, see
/// `common::pg`) for `dir`, its sessions named `app` so the test can end
/// them on a server it shares.
pub(super) fn database(pg: &Server, dir: &Path, app: &str) -> String {
    format!("{}&application_name={app}", pg.database(dir))
}

/// A name for one test's sessions.
pub(super) fn app_name() -> String {
    format!("clu_{}", uuid::Uuid::new_v4().simple())
}

fn changed(id: &str) -> Event {
    Event::JobChanged {
        job_id: id.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_events_cross_replicas_once_each() {
    let pg = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = database(&pg, tmp.path(), &app_name());
    let mut a = replica(Some(&url), Duration::from_secs(1)).await;
    let mut b = replica(Some(&url), Duration::from_secs(1)).await;
    assert!(a.cluster.is_distributed());
    let events = vec![
        Event::JobQueued {
            tags: [("os".to_string(), "linux".to_string())].into(),
        },
        Event::Kick,
        Event::CancelJob {
            daemon_id: "d1".into(),
            job_id: "j1".into(),
        },
        Event::KeyDeleted { key: "k1".into() },
        changed("j2"),
    ];
    for e in &events {
        a.cluster.publish(e.clone());
    }
    // In order, on the other replica and (once: no direct local apply as
    // well) on the publisher's own.
    for e in &events {
        assert_eq!(b.next().await, *e);
        assert_eq!(a.next().await, *e);
    }
    a.cluster.publish(changed("marker"));
    assert_eq!(
        a.next().await,
        changed("marker"),
        "A applied an event twice"
    );
    assert_eq!(b.next().await, changed("marker"));

    // Latency, publish on A to applied on B, one event at a time.
    let mut took = Vec::new();
    for i in 0..200 {
        let e = changed(&format!("lat-{i}"));
        let t = Instant::now();
        a.cluster.publish(e.clone());
        assert_eq!(b.next().await, e);
        took.push(t.elapsed());
        assert_eq!(a.next().await, e);
    }
    took.sort();
    let (p50, p99, max) = (took[100], took[198], took[199]);
    eprintln!("cluster event A→B latency: p50 {p50:?}, p99 {p99:?}, max {max:?}");
    assert!(p50 < Duration::from_millis(10), "p50 {p50:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_events_flow_again_after_postgres_restart() {
    // Its own server, even when the suite shares one: it is restarted.
    let pg = Server::start_own();
    let tmp = tempfile::tempdir().unwrap();
    let url = database(&pg, tmp.path(), &app_name());
    let every = Duration::from_millis(300);
    let mut a = replica(Some(&url), every).await;
    let mut b = replica(Some(&url), every).await;
    a.cluster.publish(changed("before"));
    b.until(&changed("before")).await;
    a.until(&changed("before")).await;
    pg.stop();
    pg.resume();
    // Each listener reconnects and resyncs (events may have been missed).
    assert_eq!(b.next().await, Event::Resync);
    assert_eq!(a.next().await, Event::Resync);
    // The publisher's connection died too: the event is sent once it is back.
    let t = Instant::now();
    a.cluster.publish(changed("after"));
    b.until(&changed("after")).await;
    eprintln!("first event after the restart arrived in {:?}", t.elapsed());
    a.until(&changed("after")).await;
    // Someone leads again, and only one.
    let t = Instant::now();
    while !(a.cluster.is_leader() || b.cluster.is_leader()) {
        assert!(t.elapsed() < TIMEOUT, "no leader after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!(a.cluster.is_leader() && b.cluster.is_leader()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn cluster_without_database_is_one_leading_replica() {
    let mut r = replica(None, Duration::from_secs(1)).await;
    assert!(r.cluster.is_leader());
    assert!(!r.cluster.is_distributed());
    assert_eq!(r.cluster.leader_gauge().get(), 1);
    r.cluster.publish(Event::Kick);
    r.cluster.publish(changed("j"));
    assert_eq!(r.next().await, Event::Kick);
    assert_eq!(r.next().await, changed("j"));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_deployments_in_other_schemas_of_one_database_stay_apart() {
    let pg = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let in_schema = |s: &str| database(&pg, &tmp.path().join(s), "clu_schemas");
    let every = Duration::from_millis(300);
    let mut one_a = replica(Some(&in_schema("one")), every).await;
    let mut one_b = replica(Some(&in_schema("one")), every).await;
    let mut two = replica(Some(&in_schema("two")), every).await;
    assert_ne!(one_a.cluster.lock_key(), two.cluster.lock_key());
    assert_eq!(one_a.cluster.lock_key(), one_b.cluster.lock_key());
    one_a.cluster.publish(Event::KeyDeleted { key: "k".into() });
    assert_eq!(one_b.next().await, Event::KeyDeleted { key: "k".into() });
    // The other deployment's next event is its own marker, not that one.
    two.cluster.publish(changed("two's"));
    assert_eq!(two.next().await, changed("two's"));
    assert_eq!(one_a.next().await, Event::KeyDeleted { key: "k".into() });
    // Each deployment has its leader.
    two.leading(true).await;
    let t = Instant::now();
    while !(one_a.cluster.is_leader() || one_b.cluster.is_leader()) {
        assert!(t.elapsed() < TIMEOUT, "no leader in schema one");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!(one_a.cluster.is_leader() && one_b.cluster.is_leader()));
    one_a.stop().await;
    one_b.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_events_published_as_a_replica_stops_still_go_out() {
    let pg = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = database(&pg, tmp.path(), &app_name());
    let a = replica(Some(&url), Duration::from_secs(1)).await;
    let mut b = replica(Some(&url), Duration::from_secs(1)).await;
    // As in a stopping coordinator: told to stop, its sessions end and
    // publish kicks (their offers are back in the queue) — after the stop
    // began.
    a.shutdown.cancel();
    // In a few bursts, as sessions notice one after the other.
    for i in 0..50 {
        a.cluster.publish(changed(&format!("x{i}")));
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    a.stop().await;
    for i in 0..50 {
        b.until(&changed(&format!("x{i}"))).await;
    }
    b.stop().await;
}
