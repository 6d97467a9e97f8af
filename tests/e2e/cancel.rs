//! Operator cancels end to end: pending jobs end at once, running ones are
//! interrupted by their (real) daemon, finished ones are refused; and the
//! `jobs cancel` command. `session` drives the protocol with a hand-held
//! session to pin down what the coordinator pushes and when.

mod session;

use std::process::Output;
use std::time::Duration;

use provisionerd::proto::{self, LogSource};
use tokio::time::Instant;
use tonic::Code;

use crate::common::{Coord, Daemon, TIMEOUT, stack};
use crate::{QUICK, template};

/// A build whose apply prints "started" and then sleeps well past any
/// deadline below: only an interrupt ends it early.
const SLOW: &str = r#"
resource "terraform_data" "w" {
  provisioner "local-exec" {
    command = "echo started; sleep 30"
  }
}
"#;

async fn cancel(coord: &Coord, id: &str) -> Result<proto::Job, tonic::Status> {
    coord
        .admin()
        .await
        .cancel_job(proto::CancelJobRequest {
            id: id.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Waits until the job's logs contain `needle`.
async fn wait_for_log(coord: &Coord, job: &str, needle: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if coord
            .logs(job)
            .await
            .iter()
            .any(|l| l.output.contains(needle))
        {
            return;
        }
        let j = coord.job(job).await;
        assert!(
            Instant::now() < deadline && matches!(j.status.as_str(), "pending" | "running"),
            "job {job} is {} without logging {needle:?}: {}",
            j.status,
            j.error
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pending_job_is_canceled_at_once_and_never_offered() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let dir = template(tmp.path(), "t", QUICK);
    // No daemon yet: the import waits in the queue.
    let queued = coord.push("t", &dir, &[]).await;
    let job = cancel(&coord, &queued).await.unwrap();
    assert_eq!(job.status, "canceled");
    assert_eq!(job.error, "canceled by an operator");
    assert!(job.finished_at > 0);

    let d = Daemon::start(&coord.url, &key, "d1", &tmp.path().join("c1"));
    // Oldest first: had the canceled import still been claimable, the
    // daemon would have run it before this one.
    let next = coord.push("t", &dir, &[]).await;
    let done = coord.wait_succeeded(&next).await;
    let job = coord.job(&queued).await;
    assert_eq!(job.status, "canceled");
    assert_eq!(
        (job.daemon.as_str(), job.started_at, job.log_count),
        ("", 0, 0)
    );

    let again = cancel(&coord, &queued).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(
        again.message(),
        format!("cancel job {queued}: it has already ended (canceled)")
    );
    let finished = cancel(&coord, &done.id).await.unwrap_err();
    assert_eq!(finished.code(), Code::FailedPrecondition);
    assert_eq!(
        finished.message(),
        format!("cancel job {}: it has already ended (succeeded)", done.id)
    );
    d.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test]
async fn unknown_job_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let err = cancel(&coord, "no-such-job").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "cancel job no-such-job: no such job");
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_job_is_interrupted_and_keeps_the_state_it_returned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = template(tmp.path(), "slow", SLOW);
    let (coord, d) = stack(tmp.path(), "slow", &dir).await;
    let id = coord.create_workspace("ws", "slow", "alice", &[]).await;
    wait_for_log(&coord, &id, "started").await;

    let asked = Instant::now();
    let job = cancel(&coord, &id).await.unwrap();
    assert_eq!(
        (job.status.as_str(), job.daemon.as_str()),
        ("canceling", "d1")
    );
    let job = coord.wait_job(&id).await;
    let took = asked.elapsed();
    assert_eq!(job.status, "canceled", "{}", job.error);
    assert!(took < Duration::from_secs(15), "canceling took {took:?}");
    assert_eq!(job.error, "canceled: terraform interrupted");

    let logs = coord.logs(&id).await;
    let interrupted = logs
        .iter()
        .find(|l| {
            l.source == LogSource::Daemon as i32 && l.output.contains("interrupting terraform")
        })
        .expect("the daemon logged the interrupt");
    // Pushed, not picked up from a heartbeat answer (every 5s): the daemon
    // acted within moments of the cancel.
    let pushed_after = interrupted.created_at - wall_ms(asked);
    assert!(
        pushed_after < 2_500,
        "interrupt {pushed_after}ms after cancel"
    );
    assert!(
        !logs.iter().any(|l| l.output.contains("Creation complete")),
        "the apply did not complete"
    );

    // The interrupted apply's state was returned and stored: the resource
    // it was creating, marked tainted.
    let state = coord
        .stored_state("ws")
        .expect("the daemon returned a state");
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["version"], 4);
    let resources = state["resources"].as_array().expect("resources");
    assert!(
        resources
            .iter()
            .any(|r| r["type"] == "terraform_data" && r["instances"][0]["status"] == "tainted"),
        "{state:#}"
    );
    // The workspace is free for its next build.
    let next = coord.build("ws", proto::Transition::Destroy).await;
    coord.wait_succeeded(&next).await;
    d.stop().await.unwrap();
    coord.stop().await;
}

/// Wall-clock milliseconds at `at` (log lines carry wall-clock times).
fn wall_ms(at: Instant) -> i64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now_ms - at.elapsed().as_millis() as i64
}

async fn cli(coord: &Coord, args: &[&str]) -> Output {
    coord.run_cli(args).await
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_cancels_pending_and_running_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = template(tmp.path(), "slow", SLOW);
    let (coord, d) = stack(tmp.path(), "slow", &dir).await;
    d.stop().await.unwrap();
    let pending = coord.create_workspace("queued", "slow", "alice", &[]).await;

    let out = cli(&coord, &["jobs", "cancel", &pending, "-o", "json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["id"], pending.as_str());
    assert_eq!(job["status"], "canceled");
    assert_eq!(job["error"], "canceled by an operator");
    assert!(text(&out.stderr).contains(&format!("Job {pending} canceled.")));

    let out = cli(&coord, &["jobs", "cancel", &pending]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "cancel job {pending}: it has already ended (canceled)"
        )),
        "{}",
        text(&out.stderr)
    );
    let out = cli(&coord, &["jobs", "cancel", "nope"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cancel job nope: no such job"));

    let key = coord.create_key("k2", &[]).await;
    let d = Daemon::start(&coord.url, &key, "d2", &tmp.path().join("c2"));
    let running = coord.create_workspace("ws", "slow", "alice", &[]).await;
    wait_for_log(&coord, &running, "started").await;
    // A running job is interrupted only when the caller says so: without a
    // terminal to ask on, and without -y, nothing is canceled.
    let out = cli(&coord, &["jobs", "cancel", &running, "--wait"]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "cancel running job {running}: refused without confirmation"
        )),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("-y/--yes"));
    assert_eq!(coord.job(&running).await.status, "running");
    // On a terminal it asks; "n" leaves the job running.
    let env = [
        ("PROVISIONERD_URL", coord.url.as_str()),
        ("PROVISIONERD_TOKEN", coord.token.as_str()),
    ];
    let mut t = crate::cli::pty::spawn(&["jobs", "cancel", &running], &env);
    t.wait_for("[y/N]").await;
    t.answer("n");
    let (code, _, screen) = t.finish().await;
    assert!(
        screen.contains(&format!(
            "Cancel running job {running}? Terraform is interrupted mid-run. [y/N]"
        )),
        "{screen}"
    );
    assert_eq!(code, 1, "{screen}");
    assert_eq!(coord.job(&running).await.status, "running");
    let out = cli(
        &coord,
        &["jobs", "cancel", &running, "--wait", "-y", "-o", "json"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("Job {running} is canceling: daemon \"d2\"")),
        "{stderr}"
    );
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "canceled", "{stderr}");
    assert_eq!(job["daemon"], "d2");

    let out = cli(
        &coord,
        &["jobs", "list", "--status", "canceled", "-o", "json"],
    )
    .await;
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![pending.as_str(), running.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let out = cli(&coord, &["jobs", "list"]).await;
    assert!(text(&out.stdout).contains("canceled"));
    d.stop().await.unwrap();
    coord.stop().await;
}
