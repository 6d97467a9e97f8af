//! The daemon's operations surface through the real binary:
//! `--metrics-address` (/metrics, /healthz, /readyz, POST /drain), the
//! lifetime policy (`--max-jobs`, `--idle-timeout`), `--log-format json`,
//! running as PID 1, and a full cache dir (`cache_full`).

mod cache_full;
mod lifetime;
mod pid1;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::common::procs::{self, Proc};
use crate::common::{Coord, TIMEOUT};
use crate::template;

/// A workspace build sleeps as long as its `sleep` variable says; it
/// also leaves an orphan behind (a background `sleep 1` whose shell is
/// gone), for the PID 1 test.
const SLEEPER: &str = r#"
variable "sleep" {
  type    = number
  default = 1
}
resource "terraform_data" "w" {
  provisioner "local-exec" {
    command = "(sleep 1 &); echo started; sleep ${var.sleep}; echo slept-well"
  }
}
"#;

struct Stack {
    tmp: tempfile::TempDir,
    coord: Option<Coord>,
    key: String,
}

impl Stack {
    async fn new() -> Stack {
        let tmp = tempfile::tempdir().unwrap();
        let coord = Coord::start(&tmp.path().join("data")).await;
        let key = coord.create_key("k", &[]).await;
        Stack {
            tmp,
            coord: Some(coord),
            key,
        }
    }

    fn coord(&self) -> &Coord {
        self.coord.as_ref().expect("coordinator running")
    }

    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }

    /// A daemon with the operations endpoint on a free port; returns it and
    /// the address it logged.
    async fn daemon(&self, extra: &[&str]) -> (Proc, SocketAddr) {
        let mut args = vec!["--metrics-address", "127.0.0.1:0"];
        args.extend(extra);
        let d = procs::start(&self.coord().url, &self.key, "d1", &self.cache(), &args);
        let addr = endpoint_addr(&d).await;
        (d, addr)
    }

    /// Pushes SLEEPER as `name`; returns the import job id.
    async fn push(&self, name: &str) -> String {
        let dir = template(self.tmp.path(), name, SLEEPER);
        self.coord().push(name, &dir, &[]).await
    }
}

/// The address from "operations endpoint listening addr=…".
async fn endpoint_addr(d: &Proc) -> SocketAddr {
    d.wait_log("operations endpoint listening").await;
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("operations endpoint listening"))
        .unwrap();
    let addr = line.split("addr=").nth(1).expect("addr= in the line");
    addr.split_whitespace().next().unwrap().parse().unwrap()
}

/// One HTTP/1.0 request; the status and body of the answer.
async fn call(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let talk = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let out = tokio::time::timeout(TIMEOUT, talk)
        .await
        .expect("operations endpoint answers");
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// Polls `path` until its answer satisfies `ok`; returns that answer.
async fn wait_for(addr: SocketAddr, path: &str, ok: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = call(addr, "GET", path).await;
        if ok(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never as expected; last {status}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the series `name` (with its labels, exactly) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_job_and_readiness_that_follows_the_coordinator() {
    let mut s = Stack::new().await;
    let (mut d, addr) = s.daemon(&[]).await;
    assert_eq!(call(addr, "GET", "/healthz").await, (200, "ok\n".into()));
    wait_for(addr, "/readyz", |st, _| st == 200).await;

    let job = s.push("t").await;
    s.coord().wait_succeeded(&job).await;
    let ok = "{type=\"template_import\",outcome=\"succeeded\"}";
    // The job is counted when it ends; the acquire loop reports idle after.
    let text = wait_for(addr, "/metrics", |_, b| {
        value(b, &format!("provisionerd_daemon_jobs_total{ok}")).is_some()
            && value(b, "provisionerd_daemon_state{state=\"idle\"}") == Some(1.0)
    })
    .await;
    let v =
        |series: &str| value(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    assert_eq!(v(&format!("provisionerd_daemon_jobs_total{ok}")), 1.0);
    assert_eq!(
        v(&format!(
            "provisionerd_daemon_job_duration_seconds_count{ok}"
        )),
        1.0
    );
    assert_eq!(v("provisionerd_daemon_jobs_running"), 0.0);
    let lines = v("provisionerd_daemon_log_lines_shipped_total");
    let stored = s.coord().logs(&job).await.len() as f64;
    assert_eq!(lines, stored, "every stored line counted once");
    assert!(v("provisionerd_daemon_log_bytes_shipped_total") > lines);
    assert_eq!(v("provisionerd_daemon_state{state=\"idle\"}"), 1.0);
    assert_eq!(v("provisionerd_daemon_state{state=\"busy\"}"), 0.0);
    assert_eq!(v("provisionerd_daemon_drain_seconds_left"), 0.0);
    assert_eq!(v("provisionerd_daemon_reconnects_total"), 0.0);
    for stage in ["init", "validate", "plan"] {
        let series = format!(
            "provisionerd_daemon_terraform_command_duration_seconds_count{{stage=\"{stage}\"}}"
        );
        assert_eq!(v(&series), 1.0, "{series}");
    }
    let info = format!(
        "provisionerd_daemon_info{{version=\"{}\",name=\"d1\"}}",
        provisionerd::VERSION
    );
    assert_eq!(v(&info), 1.0);
    assert!(text.contains("provisionerd_daemon_cache_dir_bytes "));

    // The coordinator goes away: not ready, and the body says why.
    s.coord.take().unwrap().stop().await;
    let body = wait_for(addr, "/readyz", |st, _| st == 503).await;
    assert!(
        body.contains("not connected to the coordinator at http://"),
        "{body}"
    );
    assert_eq!(call(addr, "GET", "/healthz").await.0, 200, "still alive");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_drain_drains_a_busy_daemon_and_a_second_post_does_not_cancel() {
    let s = Stack::new().await;
    let (mut d, addr) = s.daemon(&["--drain-timeout", "5m"]).await;
    s.coord().wait_succeeded(&s.push("t").await).await;
    let job = s
        .coord()
        .create_workspace("w1", "t", "alice", &[("sleep", "4")])
        .await;
    wait_for(addr, "/metrics", |_, b| {
        value(b, "provisionerd_daemon_state{state=\"busy\"}") == Some(1.0)
    })
    .await;
    wait_for(addr, "/readyz", |st, _| st == 200).await;

    let (status, body) = call(addr, "POST", "/drain").await;
    assert_eq!(
        (status, body.as_str()),
        (
            202,
            "draining: taking no more jobs; a running job is finished first\n"
        )
    );
    let (status, body) = call(addr, "GET", "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("- draining: taking no more jobs"), "{body}");
    let text = wait_for(addr, "/metrics", |_, b| {
        value(b, "provisionerd_daemon_state{state=\"draining\"}") == Some(1.0)
    })
    .await;
    let left = value(&text, "provisionerd_daemon_drain_seconds_left").unwrap();
    assert!(left > 200.0 && left <= 300.0, "drain_seconds_left {left}");
    // A signal would escalate to a cancel; the endpoint must not.
    assert_eq!(
        call(addr, "POST", "/drain").await,
        (202, "already draining; nothing changed\n".into())
    );
    // Nor the SIGTERM the kubelet sends after the preStop hook posted.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_log("signal=\"SIGTERM\"").await;
    assert_eq!(call(addr, "GET", "/readyz").await.0, 503);
    assert!(
        !d.log_text().contains("cancel requested"),
        "{}",
        d.log_text()
    );

    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    let done = s.coord().job(&job).await;
    assert_eq!(done.status, "succeeded", "{}", done.error);
    assert!(
        d.log_text().contains("source=\"POST /drain\""),
        "{}",
        d.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_after_post_drain_cancels_the_job() {
    let s = Stack::new().await;
    let (mut d, addr) = s.daemon(&[]).await;
    s.coord().wait_succeeded(&s.push("t").await).await;
    let job = s
        .coord()
        .create_workspace("w1", "t", "alice", &[("sleep", "30")])
        .await;
    // The build's own start, not the busy gauge: that may still show the
    // import, reported succeeded before its daemon turned idle.
    d.wait_log(&format!("job started job_id=\"{job}\"")).await;
    assert_eq!(call(addr, "POST", "/drain").await.0, 202);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_log("signal=\"SIGTERM\"").await;
    assert!(
        !d.log_text().contains("cancel requested"),
        "{}",
        d.log_text()
    );
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_log("cancel requested").await;
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    let done = s.coord().job(&job).await;
    assert_eq!(done.status, "canceled", "{}", done.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_and_job_lines_carry_the_job_id_and_daemon_name() {
    let s = Stack::new().await;
    // The process module's debug line shows a process-level line is in
    // the job's span too (the runner task runs inside it).
    let mut d = procs::start_with_env(
        &s.coord().url,
        &s.key,
        "d1",
        &s.cache(),
        &["--log-format", "json"],
        &[("RUST_LOG", "info,provisionerd::process=debug")],
    );
    let job = s.push("t").await;
    s.coord().wait_succeeded(&job).await;
    d.wait_log("\"message\":\"job finished\"").await;
    d.signal(nix::sys::signal::Signal::SIGHUP);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());

    let log = d.log_text();
    let mut job_lines = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        if v["span"]["name"] == "job" {
            assert_eq!(v["span"]["job_id"], job.as_str(), "{line}");
            assert_eq!(v["span"]["daemon"], "d1", "{line}");
            job_lines += 1;
        }
    }
    let spawned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"message\":\"process started in its own group\""))
        .collect();
    let (mut in_job, mut outside) = (0, 0);
    for line in spawned {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["span"].is_null() {
            outside += 1;
        } else {
            assert_eq!(v["span"]["job_id"], job.as_str(), "{line}");
            assert_eq!(v["span"]["daemon"], "d1", "{line}");
            in_job += 1;
        }
    }
    // The import's init, validate and plan; outside a job only the
    // readiness probe's `terraform version` (at start, then every 5 min).
    assert!(
        in_job >= 3 && outside <= 1,
        "{in_job} in the job span, {outside} outside:\n{log}"
    );
    let finished = log
        .lines()
        .find(|l| l.contains("\"message\":\"job finished\""))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(finished).unwrap();
    assert_eq!(v["span"]["job_id"], job.as_str());
    assert!(
        job_lines >= 2,
        "job started and finished are in the span:\n{log}"
    );
}
