//! A daemon killed mid-job (`kill -9`), or stopped before it could report:
//! its next start stops what is left, and reports the job with its state.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::{assert_gapless, build, numbered, restart, slow, wait_line};
use crate::common::procs;
use crate::common::{Coord, TIMEOUT};
use crate::raw;
use provisionerd::proto::UpdateJobRequest;

#[tokio::test]
async fn a_killed_daemons_job_is_failed_by_the_lease_and_its_orphans_die_at_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start_with_lease(&tmp.path().join("data"), Duration::from_secs(3)).await;
    let key = coord.create_key("k", &[]).await;
    let cache = tmp.path().join("c1");
    let jobs = cache.join("jobs");
    let mut d = procs::start(&coord.url, &key, "d1", &cache, &["--cancel-grace", "2s"]);
    let job = build(&coord, tmp.path(), &slow(3, "0", 45)).await;

    wait_line(&coord, &job, 3).await;
    d.kill9().await;
    let killed = Instant::now();
    assert!(
        !procs::processes_under(&jobs).is_empty(),
        "terraform's group outlives the daemon"
    );
    let failed = coord.wait_job(&job).await;
    assert_eq!(failed.status, "failed");
    assert!(
        failed.error.contains("daemon \"d1\" lost"),
        "{}",
        failed.error
    );
    // Lease, reaper period (a quarter of the lease), slack.
    assert!(
        killed.elapsed() < Duration::from_secs(3 + 1 + 4),
        "{:?}",
        killed.elapsed()
    );
    assert!(!procs::processes_under(&jobs).is_empty());

    let d2 = procs::start(&coord.url, &key, "d1", &cache, &["--cancel-grace", "2s"]);
    d2.wait_log("reported a job interrupted by a restart").await;
    let left = procs::processes_under(&jobs);
    assert!(left.is_empty(), "orphans left: {left:?}\n{}", d2.log_text());
    assert!(
        d2.log_text()
            .contains("stopped processes an earlier run left behind")
    );
    // The line is logged once the coordinator took the report; the record
    // is removed after it.
    procs::wait_path(&cache.join(format!("records/{job}.json")), false).await;
    // The coordinator's verdict stands; the late report is noted, and its
    // state kept (the reaper's failure is not the daemon's last word).
    let after = coord.job(&job).await;
    assert_eq!(after.status, "failed");
    assert_eq!(
        after.error,
        format!(
            "{}; the daemon reported later: failed (daemon restarted during job)",
            failed.error
        )
    );
    coord.stop().await;
}

#[tokio::test]
async fn a_restarted_daemon_fails_its_interrupted_job_at_once_and_keeps_the_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // A 60s lease: only the restarted daemon can fail the job quickly.
    let coord = Coord::start(&data).await;
    let key = coord.create_key("k", &[]).await;
    let cache = tmp.path().join("c1");
    let mut d = procs::start(&coord.url, &key, "d1", &cache, &[]);
    let job = build(&coord, tmp.path(), &slow(3, "0", 45)).await;

    wait_line(&coord, &job, 3).await;
    d.kill9().await;
    let killed = Instant::now();
    let secret = recorded_secret(&cache, &job);
    // It is the job's secret: without it the coordinator refuses even the
    // daemon's own key and name; with it, it answers.
    let mut client = raw::client(&coord, &key, "d1").await;
    for wrong in ["", "pdj_not-the-secret"] {
        let err = client
            .update_job(UpdateJobRequest {
                job_id: job.clone(),
                job_secret: wrong.into(),
                ..Default::default()
            })
            .await
            .expect_err("refused without the job's secret");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    }
    let held = client
        .update_job(UpdateJobRequest {
            job_id: job.clone(),
            job_secret: secret,
            ..Default::default()
        })
        .await
        .expect("the recorded secret is the job's")
        .into_inner();
    assert!(held.stored_seq >= 3, "{held:?}");
    let _d2 = procs::start(&coord.url, &key, "d1", &cache, &[]);
    let failed = coord.wait_job(&job).await;
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(
        (failed.status.as_str(), failed.error.as_str()),
        ("failed", "daemon restarted during job")
    );
    let logs = coord.logs(&job).await;
    assert_gapless(&failed, &logs);
    assert_eq!(
        logs.last().map(|l| l.output.as_str()),
        Some("daemon restarted during job; its terraform was stopped")
    );
    let left = procs::processes_under(&cache.join("jobs"));
    assert!(left.is_empty(), "orphans left: {left:?}");

    // terraform had recorded `a` before the kill; that state was reported.
    let store = provisionerd::coordinator::store::testdb::open(&data).unwrap();
    let state = store
        .workspace("ws")
        .unwrap()
        .state
        .expect("the state is kept");
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    let names: Vec<&str> = state["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["a"]);
    coord.stop().await;
}

/// The job secret in `job`'s record under `cache`, which only the daemon's
/// user may read or write.
fn recorded_secret(cache: &std::path::Path, job: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = cache.join(format!("records/{job}.json"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}: mode {mode:o}", path.display());
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let secret = record["job_secret"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(secret.starts_with("pdj_"), "no job secret in {record}");
    secret
}

#[tokio::test]
async fn a_canceled_job_the_coordinator_missed_is_reported_as_it_ended_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut serve, url, token) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("k", &[]).await;
    let cache = tmp.path().join("c1");
    let jobs = cache.join("jobs");
    let mut d = procs::start(&url, &key, "d1", &cache, &["--cancel-grace", "5s"]);
    let job = build(&coord, tmp.path(), &slow(600, "0.1", 0)).await;

    wait_line(&coord, &job, 3).await;
    serve.kill9().await;
    // Lines keep coming, into the daemon's memory only.
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.signal(Signal::SIGINT);
    procs::wait_no_processes_under(&jobs, Duration::from_secs(20)).await;
    // A second signal forces the stop: the report gets a short budget.
    d.signal(Signal::SIGINT);
    let forced = Instant::now();
    assert_eq!(d.exit_code(TIMEOUT).await, 2, "{}", d.log_text());
    assert!(
        forced.elapsed() < Duration::from_secs(7),
        "{:?}\n{}",
        forced.elapsed(),
        d.log_text()
    );
    assert!(
        d.log_text().contains("gave up 2s after the cancel"),
        "{}",
        d.log_text()
    );
    let record = std::fs::read_to_string(cache.join(format!("records/{job}.json"))).unwrap();
    assert!(record.contains(r#""outcome": "canceled""#), "{record}");

    let _serve = restart(&data, &url, "60s").await;
    let d2 = procs::start(&url, &key, "d1", &cache, &[]);
    d2.wait_log("reported the result an earlier run could not deliver")
        .await;
    let done = coord.wait_job(&job).await;
    assert_eq!(done.status, "canceled", "{}", done.error);
    assert_ne!(done.error, "daemon restarted during job");
    let logs = coord.logs(&job).await;
    assert_gapless(&done, &logs);
    // Every line terraform printed, those of the outage too, and the
    // daemon's own from after the outage began. (terraform's error repeats
    // the provisioner's output: only the lines as they came count.)
    let live: Vec<_> = logs
        .iter()
        .filter(|l| l.output.contains("(local-exec): line-"))
        .cloned()
        .collect();
    let n = numbered(&live);
    assert!(n.len() > 5, "{n:?}");
    assert_eq!(n, (1..=n.len() as u64).collect::<Vec<_>>());
    assert!(
        logs.iter()
            .any(|l| l.output == "Job canceled: interrupting terraform"),
        "the interrupt's line is missing"
    );
    // Removed after the report was taken (and so after the line above).
    procs::wait_path(&cache.join(format!("records/{job}.json")), false).await;
    procs::wait_path(&cache.join(format!("spool/{job}.log")), false).await;
}
