//! The binary: exit codes, the cache-dir lock, and the admin CLI against a
//! real coordinator.

mod confirm;
mod lists;
pub mod pty;
mod versions;

use std::process::{Output, Stdio};

use crate::common::{Coord, Daemon, TIMEOUT, examples_template, terraform, wait_connected};

const BIN: &str = env!("CARGO_BIN_EXE_provisionerd");

/// Runs the binary to completion, killed if it outlives the test timeout.
pub async fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    tokio::time::timeout(TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("provisionerd {args:?}: still running after {TIMEOUT:?}"))
        .expect("run provisionerd")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn bad_config_exits_64_with_a_clear_message() {
    let out = run(
        &["start", "--url", "ftp://x", "--key", "k", "--name", "d"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("--url \"ftp://x\""));
    let out = run(
        &["serve", "--data-dir", "/tmp/x", "--job-lease", "soon"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("not a duration"));
    let out = run(&["start", "--help"], &[]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("73  the cache dir is locked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn second_daemon_on_a_cache_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let cache = tmp.path().join("cache");
    let first = Daemon::start(&coord.url, &key, "first", &cache);
    wait_connected(&coord, 1).await;
    let tf = terraform();
    let args = [
        "start",
        "--url",
        &coord.url,
        "--name",
        "second",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--terraform-path",
        tf.to_str().unwrap(),
    ];
    let out = run(&args, &[("PROVISIONERD_KEY", &key)]).await;
    assert_eq!(out.status.code(), Some(73));
    assert!(
        stderr(&out).contains("name=first"),
        "the error names the holder: {}",
        stderr(&out)
    );
    first.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_cli_pushes_builds_and_reports_json() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let env = [
        ("PROVISIONERD_URL", coord.url.as_str()),
        ("PROVISIONERD_TOKEN", coord.token.as_str()),
    ];
    let cli = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&args, &env).await
        }
    };

    let out = cli(&["keys", "create", "pool", "--tag", "is_prebuild=true"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let secret = stdout(&out).trim().to_string();
    let d = Daemon::start(&coord.url, &secret, "pool-1", &tmp.path().join("c1"));

    let dir = examples_template();
    let dir = dir.to_str().unwrap();
    let out = cli(&[
        "templates",
        "push",
        "basic",
        "--dir",
        dir,
        "--provisioner-tag",
        "is_prebuild=true",
        "--wait",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("==> Initializing Terraform Directory"));

    let create = ["workspaces", "create", "dev", "--template", "basic"];
    let out = cli(&[&create[..], &["--var", "nope=1"]].concat()).await;
    assert_eq!(out.status.code(), Some(64), "unknown variable is bad input");
    assert!(stderr(&out).contains("declares no such variable"));
    let out = cli(&[&create[..], &["--var", "size=big"]].concat()).await;
    assert_eq!(out.status.code(), Some(64), "a mistyped value is bad input");
    assert!(stderr(&out).contains("\"big\" is not a number"));

    let out = cli(&[
        &create[..],
        &["--owner", "prebuilds", "--var", "size=20", "--wait"],
    ]
    .concat())
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains("provisioning workspace in eu-west-1 with 20 GiB"),
        "{printed}"
    );
    assert!(printed.contains("disk_gib = 20"), "{printed}");

    let out = cli(&["jobs", "list", "--initiator", "prebuilds", "-o", "json"]).await;
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["status"], "succeeded");
    assert_eq!(jobs[0]["daemon"], "pool-1");
    assert_eq!(jobs[0]["tags"]["is_prebuild"], "true");
    assert_eq!(jobs[0]["transition"], "start");

    // The daemon reports idle after it reported the job: poll for it.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let ds = loop {
        let out = cli(&["daemons", "list", "-o", "json"]).await;
        let ds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if ds[0]["status"] == "idle" || tokio::time::Instant::now() > deadline {
            break ds;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(ds[0]["name"], "pool-1");
    assert_eq!(ds[0]["status"], "idle", "{ds}");

    let out = cli(&["jobs", "list", "--status", "bogus"]).await;
    assert_eq!(out.status.code(), Some(64));
    d.stop().await.unwrap();
    coord.stop().await;
}
