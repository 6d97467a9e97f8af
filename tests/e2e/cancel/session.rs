//! The coordinator's side of cancels and daemon states, seen through a
//! session opened by hand with the generated client: exactly which messages
//! are pushed, and which daemons are offered jobs.

use std::time::Duration;

use provisionerd::proto::{
    self, DaemonState, JobOutcome, coordinator_message::Msg as Out, daemon_message::Msg as In,
};
use tokio::time::Instant;
use tonic::Code;

use super::cancel;
use crate::common::{Coord, TIMEOUT};
use crate::raw::RawDaemon;
use crate::{QUICK, template};

/// Waits until `ListDaemons` shows daemon `name` with `status`; returns it.
async fn wait_status(coord: &Coord, name: &str, status: &str) -> proto::Daemon {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let found = coord.daemons().await.into_iter().find(|d| d.name == name);
        if let Some(d) = found.filter(|d| d.status == status) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "daemon {name} never became {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A coordinator with an untagged key and one queued (untagged) import.
async fn queued(root: &std::path::Path) -> (Coord, String, String) {
    let coord = Coord::start_with_lease(&root.join("data"), Duration::from_secs(7)).await;
    let key = coord.create_key("k", &[]).await;
    let job = coord.push("t", &template(root, "t", QUICK), &[]).await;
    (coord, key, job)
}

#[tokio::test]
async fn cancel_is_pushed_to_the_daemon_running_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let (coord, key, job) = queued(tmp.path()).await;
    let mut d = RawDaemon::open(&coord, &key, "raw", DaemonState::Idle).await;
    assert_eq!(d.welcome.job_lease_ms, 7_000, "Welcome carries --job-lease");
    d.send(In::Acquire(proto::Acquire {})).await;
    assert_eq!(d.offer().await.job_id, job);
    d.ack(&job).await;
    // The unary ownership confirm: the job is ours either way.
    assert!(!d.update(&job).await.unwrap().canceled);
    d.send(In::StateUpdate(proto::StateUpdate {
        state: DaemonState::Busy as i32,
        current_job_id: job.clone(),
    }))
    .await;
    assert_eq!(wait_status(&coord, "raw", "busy").await.current_job_id, job);

    let canceling = cancel(&coord, &job).await.unwrap();
    assert_eq!(
        (canceling.status.as_str(), canceling.daemon.as_str()),
        ("canceling", "raw")
    );
    match d.next().await {
        Out::CancelJob(c) => assert_eq!(c.job_id, job),
        other => panic!("expected CancelJob, got {other:?}"),
    }
    // The fallback: the heartbeat answer says so too.
    assert!(d.update(&job).await.unwrap().canceled);
    // Canceling again changes nothing but tells the daemon again.
    assert_eq!(cancel(&coord, &job).await.unwrap().status, "canceling");
    assert!(matches!(d.next().await, Out::CancelJob(c) if c.job_id == job));

    let header = proto::FinishJobRequest {
        job_id: job.clone(),
        outcome: JobOutcome::Canceled as i32,
        error: "canceled: terraform interrupted".into(),
        ..Default::default()
    };
    d.finish(header, None).await.unwrap();
    let done = coord.job(&job).await;
    assert_eq!(done.status, "canceled");
    assert_eq!(done.error, "canceled: terraform interrupted");
    coord.stop().await;
}

#[tokio::test]
async fn offer_canceled_before_its_ack_is_not_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (coord, key, job) = queued(tmp.path()).await;
    let mut d = RawDaemon::open(&coord, &key, "raw", DaemonState::Idle).await;
    d.send(In::Acquire(proto::Acquire {})).await;
    assert_eq!(d.offer().await.job_id, job);

    assert_eq!(cancel(&coord, &job).await.unwrap().status, "canceled");
    d.ack(&job).await;
    match d.next().await {
        Out::CancelJob(c) => assert_eq!(c.job_id, job, "the ack is refused"),
        other => panic!("expected CancelJob, got {other:?}"),
    }
    let confirm = d.update(&job).await.unwrap_err();
    assert_eq!(confirm.code(), Code::FailedPrecondition);
    assert_eq!(
        confirm.message(),
        format!("update job {job}: it was canceled before it started")
    );
    assert_eq!(coord.job(&job).await.daemon, "", "nobody ran it");
    coord.stop().await;
}

#[tokio::test]
async fn draining_or_canceling_daemons_are_never_offered_a_job() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;

    // Waiting when it says it drains: its Acquire is answered as withdrawn.
    let mut drainer = RawDaemon::open(&coord, &key, "drainer", DaemonState::Idle).await;
    assert_eq!(
        wait_status(&coord, "drainer", "idle").await.current_job_id,
        ""
    );
    drainer.send(In::Acquire(proto::Acquire {})).await;
    drainer
        .send(In::StateUpdate(proto::StateUpdate {
            state: DaemonState::Draining as i32,
            current_job_id: String::new(),
        }))
        .await;
    assert!(matches!(drainer.next().await, Out::AcquireCanceled(_)));
    wait_status(&coord, "drainer", "draining").await;

    // Canceling from its Hello on (a daemon reconnecting mid-cancel).
    let mut canceler = RawDaemon::open(&coord, &key, "canceler", DaemonState::Canceling).await;
    wait_status(&coord, "canceler", "canceling").await;

    // A job they could take: each Acquire is refused, not offered it.
    let job = coord
        .push("t", &template(tmp.path(), "t", QUICK), &[])
        .await;
    for d in [&mut drainer, &mut canceler] {
        d.send(In::Acquire(proto::Acquire {})).await;
        match d.next().await {
            Out::AcquireCanceled(_) => {}
            other => panic!("{}: expected AcquireCanceled, got {other:?}", d.name),
        }
    }
    assert_eq!(coord.job(&job).await.status, "pending");

    // A daemon that reports no state is idle by what it runs, and gets it.
    let mut plain = RawDaemon::open(&coord, &key, "plain", DaemonState::Unspecified).await;
    wait_status(&coord, "plain", "idle").await;
    plain.send(In::Acquire(proto::Acquire {})).await;
    assert!(matches!(plain.next().await, Out::JobOffer(o) if o.job_id == job));

    drop(drainer);
    wait_status(&coord, "drainer", "offline").await;
    coord.stop().await;
}
