//! Daemon lifecycle through the real binary: signals, escalation, exit
//! codes, and no terraform process left behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use provisionerd::proto;
use tokio::time::Instant;

use crate::common::procs::{self, Proc};
use crate::common::{Coord, TIMEOUT, wait_connected};
use crate::template;

/// Each workspace sleeps as long as its `sleep` variable says.
const SLEEPER: &str = r#"
variable "sleep" {
  type    = number
  default = 1
}
resource "terraform_data" "w" {
  provisioner "local-exec" {
    command = "echo started; sleep ${var.sleep}; echo slept-well"
  }
}
"#;

struct Stack {
    tmp: tempfile::TempDir,
    coord: Coord,
    key: String,
}

impl Stack {
    async fn new() -> Stack {
        let tmp = tempfile::tempdir().unwrap();
        let coord = Coord::start(&tmp.path().join("data")).await;
        let key = coord.create_key("k", &[]).await;
        Stack { tmp, coord, key }
    }

    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    fn daemon(&self, extra: &[&str]) -> Proc {
        procs::start(&self.coord.url, &self.key, "d1", &self.cache(), extra)
    }

    /// Pushes SLEEPER and waits for its import (run by whatever daemon runs).
    async fn import(&self) {
        let dir = template(self.tmp.path(), "t", SLEEPER);
        self.coord
            .wait_succeeded(&self.coord.push("t", &dir, &[]).await)
            .await;
    }

    /// Waits until job `id` logged a line containing `needle`.
    async fn wait_logged(&self, id: &str, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if self
                .coord
                .logs(id)
                .await
                .iter()
                .any(|l| l.output.contains(needle))
            {
                return;
            }
            let job = self.coord.job(id).await;
            assert!(
                Instant::now() < deadline
                    && !matches!(job.status.as_str(), "succeeded" | "failed" | "canceled"),
                "job {id} ({}) never logged {needle:?}",
                job.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `daemons list` shows daemon `name` with `status`.
    async fn wait_status(&self, name: &str, status: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let daemons = self.coord.daemons().await;
            let now = daemons
                .iter()
                .find(|d| d.name == name)
                .map(|d| d.status.clone());
            if now.as_deref() == Some(status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon {name} is {now:?}, never {status}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn jobs_dir(&self) -> PathBuf {
        self.cache().join("jobs")
    }
}

/// A running workspace build that sleeps `secs`, on a daemon started with
/// `extra`; returns once terraform's provisioner has printed "started".
async fn busy_daemon(s: &Stack, extra: &[&str], secs: u32) -> (Proc, String) {
    let d = s.daemon(extra);
    s.import().await;
    let job = s
        .coord
        .create_workspace("w1", "t", "alice", &[("sleep", &secs.to_string())])
        .await;
    s.wait_logged(&job, "started").await;
    (d, job)
}

async fn assert_no_orphans(dir: &Path) {
    procs::wait_no_processes_under(dir, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_finishes_the_job_takes_no_more_and_exits_0() {
    let s = Stack::new().await;
    let (mut d, job) = busy_daemon(&s, &[], 4).await;
    let queued = s.coord.create_workspace("w2", "t", "alice", &[]).await;

    d.signal(Signal::SIGHUP);
    d.wait_log(&format!("draining: waiting for job {job}"))
        .await;
    s.wait_status("d1", "draining").await;
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());

    let done = s.coord.job(&job).await;
    assert_eq!(done.status, "succeeded", "{}", done.error);
    assert!(
        s.coord
            .logs(&job)
            .await
            .iter()
            .any(|l| l.output.ends_with(": slept-well"))
    );
    let left = s.coord.job(&queued).await;
    assert_eq!(
        (left.status.as_str(), left.daemon.as_str()),
        ("pending", "")
    );
    assert_no_orphans(&s.jobs_dir()).await;
    s.coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_interrupts_terraform_reports_canceled_and_exits_0() {
    let s = Stack::new().await;
    let (mut d, job) = busy_daemon(&s, &[], 120).await;
    let sent = Instant::now();
    d.signal(Signal::SIGINT);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );

    let done = s.coord.job(&job).await;
    assert_eq!(done.status, "canceled");
    // Terraform stopped on its SIGINT, within the grace (no SIGKILL).
    assert_eq!(done.error, "canceled: terraform interrupted");
    let logs = s.coord.logs(&job).await;
    assert!(
        logs.iter()
            .any(|l| l.output == "Job canceled: interrupting terraform")
    );
    assert!(!logs.iter().any(|l| l.output.ends_with(": slept-well")));
    // Terraform's own report of the one interrupt, shipped as job logs.
    let terraform = proto::LogSource::Terraform as i32;
    // ("Stopping operation..." may or may not follow, depending on how far
    // the operation got when the provisioner died of the same SIGINT.)
    assert!(
        logs.iter()
            .any(|l| l.source == terraform && l.output == "Interrupt received."),
        "terraform never acknowledged the interrupt"
    );
    assert_no_orphans(&s.jobs_dir()).await;
    s.coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_ignoring_terraform_is_killed_after_the_grace() {
    let s = Stack::new().await;
    let fake = procs::sigint_ignoring_terraform(s.tmp.path());
    let fake = fake.to_str().unwrap();
    let mut d = s.daemon(&["--terraform-path", fake, "--cancel-grace", "2s"]);
    let dir = template(s.tmp.path(), "t", SLEEPER);
    let import = s.coord.push("t", &dir, &[]).await;
    s.wait_logged(&import, "ignoring SIGINT").await;

    let sent = Instant::now();
    d.signal(Signal::SIGINT);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "SIGKILL came before the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(12), "{took:?}");
    let done = s.coord.job(&import).await;
    assert_eq!(
        (done.status.as_str(), done.error.as_str()),
        ("canceled", "canceled: terraform killed after grace")
    );
    assert_no_orphans(&s.jobs_dir()).await;
    s.coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_by_default() {
    let s = Stack::new().await;
    let (mut d, job) = busy_daemon(&s, &[], 3).await;
    d.signal(Signal::SIGTERM);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    assert_eq!(s.coord.job(&job).await.status, "succeeded");
    s.coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_with_on_sigterm_cancel() {
    let s = Stack::new().await;
    let (mut d, job) = busy_daemon(&s, &["--on-sigterm", "cancel"], 120).await;
    d.signal(Signal::SIGTERM);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    assert_eq!(s.coord.job(&job).await.status, "canceled");
    assert_no_orphans(&s.jobs_dir()).await;
    s.coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_past_its_timeout_cancels_in_time_to_report() {
    let s = Stack::new().await;
    // 13s deadline - (2s grace + 10s report budget): cancel 1s into the drain.
    let flags = ["--cancel-grace", "2s", "--drain-timeout", "13s"];
    let (mut d, job) = busy_daemon(&s, &flags, 120).await;
    let sent = Instant::now();
    d.signal(Signal::SIGHUP);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    let took = sent.elapsed();
    // Canceled 1s into the drain (13s - 2s grace - 10s report budget), not
    // at the deadline.
    assert!(took < Duration::from_secs(6), "canceled too late: {took:?}");
    assert!(d.log_text().contains("drain timeout: canceling job"));
    assert_eq!(s.coord.job(&job).await.status, "canceled");
    assert_no_orphans(&s.jobs_dir()).await;
    s.coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_during_a_drain_cancels() {
    let s = Stack::new().await;
    let (mut d, job) = busy_daemon(&s, &[], 120).await;
    d.signal(Signal::SIGHUP);
    d.wait_log("draining: waiting for job").await;
    d.signal(Signal::SIGHUP);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    assert_eq!(s.coord.job(&job).await.status, "canceled");
    assert_no_orphans(&s.jobs_dir()).await;
    s.coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_a_cancel_kills_at_once_reports_and_exits_2() {
    let s = Stack::new().await;
    let fake = procs::sigint_ignoring_terraform(s.tmp.path());
    let fake = fake.to_str().unwrap();
    // The grace alone would keep terraform for a minute.
    let mut d = s.daemon(&["--terraform-path", fake, "--cancel-grace", "60s"]);
    let dir = template(s.tmp.path(), "t", SLEEPER);
    let import = s.coord.push("t", &dir, &[]).await;
    s.wait_logged(&import, "ignoring SIGINT").await;

    d.signal(Signal::SIGINT);
    d.wait_log("cancel requested").await;
    s.wait_status("d1", "canceling").await;
    let sent = Instant::now();
    d.signal(Signal::SIGINT);
    assert_eq!(d.exit_code(TIMEOUT).await, 2, "{}", d.log_text());
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );
    let done = s.coord.job(&import).await;
    assert_eq!(
        (done.status.as_str(), done.error.as_str()),
        (
            "canceled",
            "canceled: terraform killed (stop forced before the grace ran out)"
        ),
        "the result was still reported, saying the grace was cut short"
    );
    assert_no_orphans(&s.jobs_dir()).await;
    s.coord.stop().await;
}

#[tokio::test]
async fn unknown_key_exits_77_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let mut d = procs::start(
        &coord.url,
        "pdk_not-a-real-key",
        "d1",
        &tmp.path().join("c1"),
        &[],
    );
    assert_eq!(d.exit_code(TIMEOUT).await, 77);
    let log = d.log_text();
    assert!(log.contains("credentials refused"), "{log}");
    coord.stop().await;
}

#[tokio::test]
async fn deleting_the_key_disconnects_the_daemon_which_exits_77() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let mut d = procs::start(&coord.url, &key, "d1", &tmp.path().join("c1"), &[]);
    wait_connected(&coord, 1).await;
    coord
        .admin()
        .await
        .delete_key(proto::DeleteKeyRequest { name: "k".into() })
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(d.exit_code(TIMEOUT).await, 77, "{}", d.log_text());
    assert!(started.elapsed() < Duration::from_secs(15));
    coord.stop().await;
}

#[tokio::test]
async fn a_drain_timeout_too_short_for_the_grace_is_bad_config() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = procs::start(
        "http://127.0.0.1:9",
        "pdk_x",
        "d1",
        &tmp.path().join("c1"),
        &["--cancel-grace", "60s", "--drain-timeout", "30s"],
    );
    assert_eq!(d.exit_code(TIMEOUT).await, 64);
    let log = d.log_text();
    assert!(
        log.contains("--drain-timeout 30s: must be at least --cancel-grace (1m)"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_while_idle_exits_at_once_and_leaves_new_jobs_queued() {
    let s = Stack::new().await;
    let mut d = s.daemon(&[]);
    s.import().await;
    s.wait_status("d1", "idle").await;
    let sent = Instant::now();
    d.signal(Signal::SIGHUP);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    assert!(
        sent.elapsed() < Duration::from_secs(6),
        "{:?}",
        sent.elapsed()
    );
    s.wait_status("d1", "offline").await;
    let job = s.coord.create_workspace("w1", "t", "alice", &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.coord.job(&job).await.status, "pending");
    s.coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cancel_is_pushed_and_interrupts_terraform() {
    let s = Stack::new().await;
    let (mut d, job) = busy_daemon(&s, &[], 120).await;
    s.coord
        .admin()
        .await
        .cancel_job(proto::CancelJobRequest {
            id: job.clone(),
            ..Default::default()
        })
        .await
        .expect("cancel job");
    // The push, not a heartbeat's answer, carried it (they log differently).
    d.wait_log("coordinator pushed a cancel of the job").await;
    let done = s.coord.wait_job(&job).await;
    assert_eq!(
        (done.status.as_str(), done.error.as_str()),
        ("canceled", "canceled: terraform interrupted")
    );
    // The daemon carries on: idle again, then drains cleanly.
    s.wait_status("d1", "idle").await;
    d.signal(Signal::SIGHUP);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    assert_no_orphans(&s.jobs_dir()).await;
    s.coord.stop().await;
}
