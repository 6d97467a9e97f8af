//! Leader election between two replicas' clusters: one leader, a quick
//! takeover when it stops, and no leading without the lock's connection.

use std::time::{Duration, Instant};

use super::{app_name, database, replica};
use crate::common::TIMEOUT;
use crate::common::pg::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_one_leader_and_takeover_within_an_interval() {
    let pg = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = database(&pg, tmp.path(), &app_name());
    let every = Duration::from_millis(300);
    let a = replica(Some(&url), every).await;
    let b = replica(Some(&url), every).await;
    let t = Instant::now();
    while !(a.cluster.is_leader() || b.cluster.is_leader()) {
        assert!(t.elapsed() < TIMEOUT, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Several intervals: the other keeps trying and keeps failing.
    for _ in 0..10 {
        assert!(
            a.cluster.is_leader() ^ b.cluster.is_leader(),
            "exactly one leader (a: {}, b: {})",
            a.cluster.is_leader(),
            b.cluster.is_leader()
        );
        tokio::time::sleep(every / 2).await;
    }
    let (leader, follower) = if a.cluster.is_leader() {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(leader.cluster.leader_gauge().get(), 1);
    assert_eq!(follower.cluster.leader_gauge().get(), 0);
    // From the moment the leader is told to stop: its stop itself must
    // give the lock up, not only the end of its tasks.
    let t = Instant::now();
    leader.stop().await;
    follower.leading(true).await;
    let took = t.elapsed();
    eprintln!("leader takeover after a shutdown: {took:?} (interval {every:?})");
    // One interval, and slack for a loaded machine; a lock left to the
    // server's keepalive would take seconds.
    assert!(took < every + Duration::from_millis(700), "took {took:?}");
    assert_eq!(follower.cluster.leader_gauge().get(), 1);
    follower.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_leader_steps_down_at_once_when_its_connection_dies() {
    let pg = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = database(&pg, tmp.path(), &app_name());
    // Long, so that noticing at the next check would show.
    let every = Duration::from_secs(3);
    let a = replica(Some(&url), every).await;
    a.leading(true).await;
    // The server ends the session holding the lock.
    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let killed = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted \
             AND ((classid::bigint << 32) | objid::bigint) = $1",
            &[&a.cluster
                .lock_key()
                .expect("a PostgreSQL cluster has a lock")],
        )
        .await
        .expect("terminate the lock's session")
        .get::<_, i64>(0);
    assert_eq!(killed, 1, "one session held the leader lock");
    let t = Instant::now();
    a.leading(false).await;
    let lost = t.elapsed();
    eprintln!("leader stepped down {lost:?} after its connection was terminated");
    assert!(
        lost < Duration::from_millis(500),
        "stepped down after {lost:?}, not at once"
    );
    // And leads again once it has a connection back.
    a.leading(true).await;
    a.stop().await;
}
