//! Faults: a coordinator or a daemon killed mid-job (`kill -9`), a
//! coordinator gone for longer than the job lease, and an outage long
//! enough to spill logs to disk. Nothing may be lost, duplicated or left
//! running.

use std::path::Path;
use std::time::Duration;

use provisionerd::proto::{Job, LogLine};
use tokio::time::Instant;

use crate::common::procs::{self, Proc};
use crate::common::{Coord, Daemon, TIMEOUT};
use crate::template;

/// Two resources: `a` is created (and in the state) at once; `w` prints
/// `line-1..=n`, one every `pause` seconds, then sleeps `tail` seconds.
fn slow(n: u32, pause: &str, tail: u32) -> String {
    format!(
        r#"
resource "terraform_data" "a" {{}}

resource "terraform_data" "w" {{
  depends_on = [terraform_data.a]
  provisioner "local-exec" {{
    command = "for i in $(seq 1 {n}); do echo line-$i; sleep {pause}; done; sleep {tail}"
  }}
}}
"#
    )
}

/// N of each log line that ends in `line-N` (the provisioner's output), in
/// log order.
fn numbered(logs: &[LogLine]) -> Vec<u64> {
    logs.iter()
        .filter_map(|l| {
            let (_, n) = l.output.rsplit_once("line-")?;
            n.parse().ok()
        })
        .collect()
}

/// Sequence numbers run 1..=log_count without a gap or a repeat.
fn assert_gapless(job: &Job, logs: &[LogLine]) {
    let seqs: Vec<u64> = logs.iter().map(|l| l.seq).collect();
    let want: Vec<u64> = (1..=job.log_count).collect();
    assert!(seqs == want, "seqs are not 1..={}: {seqs:?}", job.log_count);
}

/// Waits until the job's logs show `line-n`.
async fn wait_line(coord: &Coord, job: &str, n: u64) {
    let deadline = Instant::now() + TIMEOUT;
    while !numbered(&coord.logs(job).await).contains(&n) {
        assert!(
            Instant::now() < deadline,
            "job {job} never printed line-{n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Restarts a killed `provisionerd serve` on the address daemons know.
async fn restart(data: &Path, url: &str, lease: &str) -> Proc {
    let listen = url.strip_prefix("http://").expect("an http URL");
    let (p, again, _) = procs::serve(data, listen, lease).await;
    assert_eq!(again, url);
    p
}

/// A template pushed and imported, and a workspace build of it started.
async fn build(coord: &Coord, root: &Path, body: &str) -> String {
    let dir = template(root, "t", body);
    coord
        .wait_succeeded(&coord.push("t", &dir, &[]).await)
        .await;
    coord.create_workspace("ws", "t", "alice", &[]).await
}

#[tokio::test]
async fn a_coordinator_killed_mid_job_and_restarted_loses_no_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut serve, url, token) = procs::serve(&data, "127.0.0.1:0", "30s").await;
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("k", &[]).await;
    let d = Daemon::start(&url, &key, "d1", &tmp.path().join("c1"));
    let job = build(&coord, tmp.path(), &slow(40, "0.2", 0)).await;

    wait_line(&coord, &job, 5).await;
    serve.kill9().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _serve = restart(&data, &url, "30s").await;

    let done = coord.wait_succeeded(&job).await;
    let logs = coord.logs(&job).await;
    assert_gapless(&done, &logs);
    assert_eq!(numbered(&logs), (1..=40).collect::<Vec<_>>());
    d.stop().await.unwrap();
}

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
    assert!(!cache.join(format!("records/{job}.json")).exists());
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
    let store = provisionerd::coordinator::store::Store::open(&data).unwrap();
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

#[tokio::test]
async fn a_coordinator_gone_past_the_lease_gets_terraform_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut serve, url, token) = procs::serve(&data, "127.0.0.1:0", "3s").await;
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("k", &[]).await;
    let cache = tmp.path().join("c1");
    let jobs = cache.join("jobs");
    let d = procs::start(&url, &key, "d1", &cache, &["--cancel-grace", "2s"]);
    let job = build(&coord, tmp.path(), &slow(300, "0.2", 0)).await;

    wait_line(&coord, &job, 3).await;
    assert!(!procs::processes_under(&jobs).is_empty());
    serve.kill9().await;
    let killed = Instant::now();
    d.wait_log(
        "coordinator unreachable for longer than the job lease (3s): interrupting terraform",
    )
    .await;
    // Lease, cancel grace, and slack for a loaded machine.
    let budget = Duration::from_secs(3 + 2 + 10);
    procs::wait_no_processes_under(&jobs, budget.saturating_sub(killed.elapsed())).await;
}

#[tokio::test]
async fn lines_spilled_to_disk_during_an_outage_arrive_once_in_order() {
    const LINES: u64 = 30_000;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut serve, url, token) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("k", &[]).await;
    let cache = tmp.path().join("c1");
    let d = Daemon::start(&url, &key, "d1", &cache);
    let (gate, done) = (tmp.path().join("gate"), tmp.path().join("done"));
    let body = format!(
        r#"
resource "terraform_data" "w" {{
  provisioner "local-exec" {{
    command = "while [ ! -e {gate} ]; do sleep 0.1; done; seq -f 'line-%g' 1 {LINES}; touch {done}"
  }}
}}
"#,
        gate = gate.display(),
        done = done.display(),
    );
    let job = build(&coord, tmp.path(), &body).await;

    // The provisioner waits at the gate; the coordinator goes away.
    let deadline = Instant::now() + TIMEOUT;
    while !coord
        .logs(&job)
        .await
        .iter()
        .any(|l| l.output.contains("while [ ! -e"))
    {
        assert!(Instant::now() < deadline, "the provisioner never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    serve.kill9().await;
    std::fs::write(&gate, "").unwrap();
    // terraform prints everything without the coordinator: nothing blocks.
    let deadline = Instant::now() + TIMEOUT;
    while !done.exists() {
        assert!(
            Instant::now() < deadline,
            "terraform was held up by the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spool = cache.join(format!("spool/{job}.log"));
    assert!(spool.exists(), "lines beyond the memory bound are on disk");

    let _serve = restart(&data, &url, "60s").await;
    let finished = coord.wait_succeeded(&job).await;
    let logs = coord.logs(&job).await;
    assert_gapless(&finished, &logs);
    assert_eq!(numbered(&logs), (1..=LINES).collect::<Vec<_>>());
    assert!(!spool.exists(), "the spool is removed once delivered");
    d.stop().await.unwrap();
}
