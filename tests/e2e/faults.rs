//! Faults: a coordinator or a daemon killed mid-job (`kill -9`), a
//! coordinator gone for longer than the job lease, and an outage long
//! enough to spill logs to disk. Nothing may be lost, duplicated or left
//! running.
//!
//! Here: the coordinator's faults. `restart`: a daemon killed, or stopped
//! before it could report. `spool`: logs spilled to disk. `names`: a
//! daemon name taken by another key or another live daemon.

mod names;
mod restart;
mod spool;

use std::path::Path;
use std::time::Duration;

use provisionerd::proto::{Job, LogLine};
use tokio::time::Instant;

use crate::common::procs::{self, Proc};
use crate::common::{Coord, Daemon, TIMEOUT};
use crate::template;

/// Two resources: `a` is created (and in the state) at once; `w` prints
/// `line-1..=n`, one every `pause` seconds, then sleeps `tail` seconds.
pub(crate) fn slow(n: u32, pause: &str, tail: u32) -> String {
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
pub(crate) fn numbered(logs: &[LogLine]) -> Vec<u64> {
    logs.iter()
        .filter_map(|l| {
            let (_, n) = l.output.rsplit_once("line-")?;
            n.parse().ok()
        })
        .collect()
}

/// Sequence numbers run 1..=log_count without a gap or a repeat.
pub(crate) fn assert_gapless(job: &Job, logs: &[LogLine]) {
    let seqs: Vec<u64> = logs.iter().map(|l| l.seq).collect();
    let want: Vec<u64> = (1..=job.log_count).collect();
    assert!(seqs == want, "seqs are not 1..={}: {seqs:?}", job.log_count);
}

/// Waits until the job's logs show `line-n`.
pub(crate) async fn wait_line(coord: &Coord, job: &str, n: u64) {
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
