//! `--max-jobs` and `--idle-timeout`: the daemon drains itself and exits 0.

use std::time::Duration;

use tokio::time::Instant;

use super::{Stack, call, wait_for};
use crate::common::{Coord, TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_jobs_1_exits_0_after_one_job_and_leaves_the_next_pending() {
    let s = Stack::new().await;
    // Two jobs queued before the daemon starts.
    let first = s.push("a").await;
    let second = s.push("b").await;
    let (mut d, _) = s.daemon(&["--max-jobs", "1"]).await;
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    assert!(
        d.log_text()
            .contains("--max-jobs reached: draining and exiting 0"),
        "{}",
        d.log_text()
    );
    let (a, b) = (s.coord().job(&first).await, s.coord().job(&second).await);
    let mut statuses = [a.status.as_str(), b.status.as_str()];
    statuses.sort();
    assert_eq!(statuses, ["pending", "succeeded"], "one ran, one waits");
    let waiting = if a.status == "pending" { a } else { b };
    assert_eq!(waiting.daemon, "", "the pending job is nobody's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_never_fires_during_a_job_and_exits_0_once_idle() {
    let s = Stack::new().await;
    let (mut d, addr) = s.daemon(&["--idle-timeout", "3s"]).await;
    s.coord().wait_succeeded(&s.push("t").await).await;
    // The build (6 s) outlasts the idle timeout (3 s): it must not fire.
    let job = s
        .coord()
        .create_workspace("w1", "t", "alice", &[("sleep", "6")])
        .await;
    let done = s.coord().wait_job(&job).await;
    assert_eq!(done.status, "succeeded", "{}", done.error);
    let idle_from = Instant::now();
    assert_eq!(call(addr, "GET", "/healthz").await.0, 200, "still running");
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    let waited = idle_from.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "exited {waited:?} after the job: the clock must restart after it"
    );
    assert!(
        d.log_text()
            .contains("--idle-timeout: no job for 3s; draining and exiting 0"),
        "{}",
        d.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_does_not_run_while_the_coordinator_is_down() {
    let mut s = Stack::new().await;
    let (mut d, addr) = s.daemon(&["--idle-timeout", "3s"]).await;
    wait_for(addr, "/readyz", |st, _| st == 200).await;
    // An outage twice as long as the idle timeout: the daemon stays.
    let coord = s.coord.take().unwrap();
    let listen = coord.url.trim_start_matches("http://").parse().unwrap();
    let data = coord.data_dir.clone();
    coord.stop().await;
    wait_for(addr, "/readyz", |st, _| st == 503).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(call(addr, "GET", "/healthz").await.0, 200, "still running");
    assert!(!d.log_text().contains("--idle-timeout"), "{}", d.log_text());
    // Back: a whole idle timeout from the reconnect, then exit 0.
    s.coord = Some(Coord::start_at(&data, listen, Duration::from_secs(60)).await);
    wait_for(addr, "/readyz", |st, _| st == 200).await;
    let connected = Instant::now();
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    let waited = connected.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "exited {waited:?} after reconnecting: the clock must restart then"
    );
    assert!(
        d.log_text()
            .contains("--idle-timeout: no job for 3s; draining and exiting 0"),
        "{}",
        d.log_text()
    );
}
