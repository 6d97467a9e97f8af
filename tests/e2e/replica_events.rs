//! Two whole coordinators (replicas) on one PostgreSQL database (always
//! PostgreSQL: see `common::pg`): work
//! created on one reaches a daemon connected to the other, and so does an
//! operator's cancel and a key's deletion — through cluster events, not
//! the 5 s backstop or the daemon's next heartbeat.

use std::time::Duration;

use provisionerd::proto::{self, LogSource};
use tokio::time::Instant;

use crate::common::pg::Server;
use crate::common::{Coord, Daemon, TIMEOUT, wait_connected};
use crate::{QUICK, template};

/// Prints "started", then sleeps past any deadline here.
const SLOW: &str = r#"
resource "terraform_data" "w" {
  provisioner "local-exec" {
    command = "echo started; sleep 30"
  }
}
"#;

/// Waits until the job's logs (read through `coord`) contain `needle`.
async fn wait_for_log(coord: &Coord, job: &str, needle: &str) -> proto::LogLine {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(l) = coord
            .logs(job)
            .await
            .into_iter()
            .find(|l| l.output.contains(needle))
        {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} never logged {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_events_a_job_a_cancel_and_a_key_deletion_on_one_reach_the_daemon_on_the_other() {
    let pg = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let db = pg.database(&tmp.path().join("db"));
    let token = "pda_replica_events_test_token_0123";
    let a = Coord::start_replica(&tmp.path().join("a"), &db, token).await;
    let b = Coord::start_replica(&tmp.path().join("b"), &db, token).await;

    let key = a.create_key("k", &[]).await;
    let d = Daemon::start(&b.url, &key, "d1", &tmp.path().join("c1"));
    wait_connected(&b, 1).await;
    // The daemon waits on B; the import is enqueued on A.
    // Three, one after the other: each must be woken by its event, not by
    // B's 5 s backstop (which would meet this bound by luck one time in
    // ten, not three times in a row).
    let quick = template(tmp.path(), "quick", QUICK);
    for _ in 0..3 {
        let import = a.push("quick", &quick, &[]).await;
        let job = a.wait_succeeded(&import).await;
        assert_eq!(job.daemon, "d1");
        let waited = job.started_at - job.created_at;
        eprintln!("job created on A, acknowledged by the daemon on B after {waited} ms");
        assert!(waited < 500, "the job waited {waited} ms");
    }

    let slow = template(tmp.path(), "slow", SLOW);
    a.wait_succeeded(&a.push("slow", &slow, &[]).await).await;
    let build = a.create_workspace("ws", "slow", "alice", &[]).await;
    wait_for_log(&a, &build, "started").await;
    // The RPC `jobs cancel` makes, timed from just before it.
    let mut admin = a.admin().await;
    let asked = wall_ms();
    let canceling = admin
        .cancel_job(proto::CancelJobRequest {
            id: build.clone(),
            ..Default::default()
        })
        .await
        .expect("cancel on A")
        .into_inner();
    assert_eq!(canceling.status, "canceling");
    let interrupted = wait_for_log(&a, &build, "interrupting terraform").await;
    assert_eq!(interrupted.source, LogSource::Daemon as i32);
    let took = interrupted.created_at - asked;
    eprintln!("`jobs cancel` on A: the daemon on B interrupted {took} ms later");
    // Pushed through the event (the issue's bound), not learned from the
    // answer to its next heartbeat (5 s).
    assert!(took < 100, "the daemon acted {took} ms after the cancel");
    let job = a.wait_job(&build).await;
    assert_eq!(job.status, "canceled", "{}", job.error);

    // Its key deleted on A: its session on B ends, and the daemon with it
    // (an idle daemon sends nothing that B would refuse otherwise).
    a.admin()
        .await
        .delete_key(proto::DeleteKeyRequest { name: "k".into() })
        .await
        .expect("delete key on A");
    let deleted = Instant::now();
    let ended = tokio::time::timeout(TIMEOUT, d.handle)
        .await
        .expect("the daemon ends after its key is deleted")
        .expect("daemon task");
    eprintln!(
        "key deleted on A: the daemon on B ended after {:?}",
        deleted.elapsed()
    );
    assert!(ended.is_err(), "the daemon ends with its key refused");
    assert!(deleted.elapsed() < Duration::from_secs(5));
    a.stop().await;
    b.stop().await;
}

/// An offer that lapses on A (its session never acknowledges it) sends
/// the job back to the queue there; A tells the other replicas, and the
/// daemon waiting on B takes it at once — not at B's next 5 s backstop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_events_a_job_whose_offer_lapses_on_one_goes_to_a_daemon_on_the_other() {
    use crate::raw::RawDaemon;
    use provisionerd::proto::daemon_message::Msg as In;
    use provisionerd::proto::{Acquire, DaemonState, coordinator_message::Msg as Out};

    let pg = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let db = pg.database(&tmp.path().join("db"));
    let token = "pda_replica_events_test_token_0123";
    let a = Coord::start_replica(&tmp.path().join("a"), &db, token).await;
    let b = Coord::start_replica(&tmp.path().join("b"), &db, token).await;
    let key = a.create_key("k", &[]).await;
    let import = a
        .push("quick", &template(tmp.path(), "quick", QUICK), &[])
        .await;
    let mut hoarder = RawDaemon::open(&a, &key, "hoarder", DaemonState::Idle).await;
    hoarder.send(In::Acquire(Acquire {})).await;
    let offer = match hoarder.next().await {
        Out::JobOffer(o) => o,
        other => panic!("expected an offer, got {other:?}"),
    };
    assert_eq!(offer.job_id, import);
    let offered = wall_ms();
    // Waiting on B while the offer stands on A.
    let d = Daemon::start(&b.url, &key, "d1", &tmp.path().join("c1"));
    let job = a.wait_succeeded(&import).await;
    assert_eq!(job.daemon, "d1");
    let after = job.started_at - offered;
    let timeout = provisionerd::coordinator::DEFAULT_OFFER_TIMEOUT.as_millis() as i64;
    eprintln!(
        "offer lapsed on A after {timeout} ms; the daemon on B acknowledged {after} ms after the offer"
    );
    // The lapse, and little more: B's backstop would add up to 5 s.
    assert!(after < timeout + 500, "{after} ms");
    d.stop().await.unwrap();
    a.stop().await;
    b.stop().await;
}
