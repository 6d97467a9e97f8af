//! Several coordinator URLs (`--url A,B`): the daemon rotates through them
//! and the CLI uses the first that connects; a replica killed mid-job or
//! while idle costs neither the job nor a log line.
//!
//! With SQLite two coordinators are two databases. Where a test needs two
//! that both know the same key, it copies a stopped coordinator's data dir
//! (the way a key exists on both before either starts); where it needs one
//! database behind two URLs, it restarts the killed coordinator on the
//! second URL's port.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::cli::{run, stderr, stdout};
use crate::common::procs::{self, Proc};
use crate::common::{Coord, TIMEOUT, wait_daemon};
use crate::{QUICK, template};

/// A loopback URL nothing listens on (the port was free a moment ago).
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Stops a `provisionerd serve` cleanly (SIGTERM) and waits for its exit.
async fn stop(mut serve: Proc) {
    serve.signal(Signal::SIGTERM);
    assert_eq!(serve.exit_code(TIMEOUT).await, 0, "{}", serve.log_text());
}

#[tokio::test]
async fn a_daemon_reaches_a_live_url_after_dead_ones_without_backoff() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let dead: Vec<String> = (0..4).map(|_| dead_url()).collect();
    let urls = format!("{},{}", dead.join(","), coord.url);
    let d = procs::start(&urls, &key, "d1", &tmp.path().join("c1"), &[]);

    let dir = template(tmp.path(), "t", QUICK);
    coord
        .wait_succeeded(&coord.push("t", &dir, &[]).await)
        .await;
    let job = coord.create_workspace("ws", "t", "alice", &[]).await;
    coord.wait_succeeded(&job).await;

    let log = d.log_text();
    let connected = log
        .lines()
        .find(|l| l.contains("connected to coordinator"))
        .expect("a connected line");
    assert!(connected.contains(&coord.url), "{connected}");
    // The first round over the list sleeps nowhere: each dead URL is
    // followed at once by the next.
    let failures: Vec<&str> = log
        .lines()
        .take_while(|l| !l.contains("connected to coordinator"))
        .filter(|l| l.contains("connect to coordinator failed"))
        .collect();
    assert_eq!(failures.len(), dead.len(), "{log}");
    for (line, url) in failures.iter().zip(&dead) {
        assert!(line.contains(url.as_str()), "{line}");
        assert!(line.contains("retry_in=0ns"), "{line}");
    }
}

/// Copies a stopped coordinator's data dir (database and admin token).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Waits until the daemon's log says it connected to `url` (logged after
/// the Welcome, so possibly after the coordinator lists it).
async fn wait_connected_to(d: &Proc, url: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let needle = format!("url={url} ");
    while !d
        .log_text()
        .lines()
        .any(|l| l.contains("connected to coordinator") && l.contains(&needle))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never connected to {url}:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_daemon_moves_to_the_next_coordinator_when_its_own_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (serve, url, token) = procs::serve(&a_dir, "127.0.0.1:0", "60s").await;
    let key = Coord::attach(&url, &a_dir, &token)
        .create_key("k", &[])
        .await;
    stop(serve).await;
    copy_dir(&a_dir, &b_dir);
    let (mut serve_a, url_a, _) = procs::serve(&a_dir, "127.0.0.1:0", "60s").await;
    let (_serve_b, url_b, token_b) = procs::serve(&b_dir, "127.0.0.1:0", "60s").await;
    assert_eq!(token_b, token);
    let (a, b) = (
        Coord::attach(&url_a, &a_dir, &token),
        Coord::attach(&url_b, &b_dir, &token),
    );

    let d = procs::start(
        &format!("{url_a},{url_b}"),
        &key,
        "d1",
        &tmp.path().join("c1"),
        &[],
    );
    wait_daemon(&a, "d1", |d| d.status == "idle").await;
    serve_a.kill9().await;
    wait_daemon(&b, "d1", |d| d.status == "idle").await;
    wait_connected_to(&d, &url_b).await;

    // It takes B's work: the template's import, then a build.
    let dir = template(tmp.path(), "t", QUICK);
    b.wait_succeeded(&b.push("t", &dir, &[]).await).await;
    let job = b.create_workspace("ws", "t", "alice", &[]).await;
    b.wait_succeeded(&job).await;
}

#[tokio::test]
async fn the_cli_uses_the_first_url_that_connects() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    coord.create_key("k1", &[]).await;
    let token = [("PROVISIONERD_TOKEN", coord.token.as_str())];

    let listed = format!("{},{}", dead_url(), coord.url);
    let out = run(&["keys", "list", "--url", &listed], &token).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("k1"), "{}", stdout(&out));

    // The flag repeated, and the environment variable, say the same.
    let dead = dead_url();
    let out = run(
        &["keys", "list", "--url", &dead, "--url", &coord.url],
        &token,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("k1"));
    let env = [token[0], ("PROVISIONERD_URL", listed.as_str())];
    let out = run(&["keys", "list"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // None connects: each URL is named with why.
    let (d1, d2) = (dead_url(), dead_url());
    let out = run(&["keys", "list", "--url", &format!("{d1},{d2}")], &token).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&d1) && err.contains(&d2), "{err}");
}

#[tokio::test]
async fn a_bad_url_in_the_list_exits_64_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let listed = "http://127.0.0.1:7800,ftp://bad:1";
    let cache = tmp.path().join("c");
    let start = [
        "start",
        "--key",
        "k",
        "--name",
        "d",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let mut args = start.to_vec();
    args.extend(["--url", listed]);
    let out = run(&args, &[]).await;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--url \"ftp://bad:1\""),
        "{}",
        stderr(&out)
    );

    let out = run(&start, &[("PROVISIONERD_URL", "https://ok:1,,http://ok:2")]).await;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("--url \"\""), "{}", stderr(&out));

    let out = run(&["keys", "list", "--token", "t", "--url", listed], &[]).await;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--url \"ftp://bad:1\""),
        "{}",
        stderr(&out)
    );
}

/// `line-N` numbers in the printed output, in order.
fn numbered(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.rsplit_once("line-")?.1.trim().parse().ok())
        .collect()
}

#[tokio::test]
async fn a_job_and_its_log_follow_survive_the_coordinator_killed_and_back_on_the_next_url() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut serve_a, url_a, token) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    let url_b = dead_url();
    let urls = format!("{url_a},{url_b}");
    let a = Coord::attach(&url_a, &data, &token);
    let key = a.create_key("k", &[]).await;
    let _d = procs::start(&urls, &key, "d1", &tmp.path().join("c1"), &[]);
    let dir = template(tmp.path(), "t", &crate::faults::slow(40, "0.2", 0));
    a.wait_succeeded(&a.push("t", &dir, &[]).await).await;
    let job = a.create_workspace("ws", "t", "alice", &[]).await;

    let follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisionerd"))
        .args(["jobs", "logs", "--follow", &job, "--url", &urls])
        .env("PROVISIONERD_TOKEN", &token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read while it runs: a full pipe would stall it.
    let follow = tokio::spawn(tokio::time::timeout(TIMEOUT * 2, follow.wait_with_output()));
    crate::faults::wait_line(&a, &job, 5).await;
    serve_a.kill9().await;
    // The same database comes back on the second URL.
    let listen = url_b.strip_prefix("http://").unwrap();
    let (_serve_b, again, _) = procs::serve(&data, listen, "60s").await;
    assert_eq!(again, url_b);
    let b = Coord::attach(&url_b, &data, &token);

    let done = b.wait_succeeded(&job).await;
    let output = follow
        .await
        .unwrap()
        .expect("the follow ends with the job")
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{err}");
    assert_eq!(numbered(&out), (1..=40).collect::<Vec<_>>(), "{out}");
    let logs = b.logs(&job).await;
    assert_eq!(logs.len() as u64, done.log_count);
    assert_eq!(
        out.lines().filter(|l| !l.starts_with("==> ")).count() as u64,
        done.log_count,
        "every stored line printed once:\n{out}"
    );
}

#[tokio::test]
async fn a_restarted_daemon_reports_its_interrupted_job_past_a_dead_first_url() {
    let tmp = tempfile::tempdir().unwrap();
    // A 60s lease: only the restarted daemon's report can fail it quickly.
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let cache = tmp.path().join("c1");
    let mut d = procs::start(&coord.url, &key, "d1", &cache, &[]);
    let dir = template(tmp.path(), "t", &crate::faults::slow(3, "0", 45));
    coord
        .wait_succeeded(&coord.push("t", &dir, &[]).await)
        .await;
    let job = coord.create_workspace("ws", "t", "alice", &[]).await;
    crate::faults::wait_line(&coord, &job, 3).await;
    d.kill9().await;

    // The report of the interrupted job is made before any session opens:
    // it must find the live URL by itself.
    let urls = format!("{},{}", dead_url(), coord.url);
    let d2 = procs::start(&urls, &key, "d1", &cache, &[]);
    d2.wait_log("reported a job interrupted by a restart").await;
    let failed = coord.wait_job(&job).await;
    assert_eq!(failed.status, "failed");
    assert!(failed.error.contains("restart"), "{}", failed.error);
    coord.stop().await;
}
