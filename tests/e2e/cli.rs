//! The binary: exit codes, the cache-dir lock, and the admin CLI against a
//! real coordinator.

use std::process::{Command, Stdio};

use crate::common::{Coord, Daemon, examples_template, terraform, wait_connected};

const BIN: &str = env!("CARGO_BIN_EXE_provisionerd");

fn run(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run provisionerd")
}

#[test]
fn bad_config_exits_64_with_a_clear_message() {
    let out = run(
        &["start", "--url", "ftp://x", "--key", "k", "--name", "d"],
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url \"ftp://x\""));
    let out = run(
        &["serve", "--data-dir", "/tmp/x", "--job-lease", "soon"],
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
    let out = run(&["start", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("73  the cache dir is locked"));
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
    let out = tokio::task::spawn_blocking({
        let (url, key, cache) = (coord.url.clone(), key.clone(), cache.clone());
        move || {
            run(
                &[
                    "start",
                    "--url",
                    &url,
                    "--name",
                    "second",
                    "--cache-dir",
                    cache.to_str().unwrap(),
                    "--terraform-path",
                    tf.to_str().unwrap(),
                ],
                &[("PROVISIONERD_KEY", &key)],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(73));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("name=first"),
        "the error names the holder: {stderr}"
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
    let cli = |args: Vec<String>| {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&args, &env)
        })
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let out = cli(s(&["keys", "create", "pool", "--tag", "is_prebuild=true"]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let d = Daemon::start(&coord.url, &secret, "pool-1", &tmp.path().join("c1"));

    let dir = examples_template();
    let out = cli(s(&[
        "templates",
        "push",
        "basic",
        "--dir",
        dir.to_str().unwrap(),
        "--provisioner-tag",
        "is_prebuild=true",
        "--wait",
    ]))
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("==> Initializing Terraform Directory"));

    let out = cli(s(&[
        "workspaces",
        "create",
        "dev",
        "--template",
        "basic",
        "--var",
        "nope=1",
    ]))
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(64), "unknown variable is bad input");
    assert!(String::from_utf8_lossy(&out.stderr).contains("declares no such variable"));
    let out = cli(s(&[
        "workspaces",
        "create",
        "dev",
        "--template",
        "basic",
        "--var",
        "size=big",
    ]))
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(64), "a mistyped value is bad input");
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"big\" is not a number"));

    let out = cli(s(&[
        "workspaces",
        "create",
        "dev",
        "--template",
        "basic",
        "--owner",
        "prebuilds",
        "--var",
        "size=20",
        "--wait",
    ]))
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("provisioning workspace in eu-west-1 with 20 GiB"),
        "{stdout}"
    );
    assert!(stdout.contains("disk_gib = 20"), "{stdout}");

    let out = cli(s(&[
        "jobs",
        "list",
        "--initiator",
        "prebuilds",
        "-o",
        "json",
    ]))
    .await
    .unwrap();
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["status"], "succeeded");
    assert_eq!(jobs[0]["daemon"], "pool-1");
    assert_eq!(jobs[0]["tags"]["is_prebuild"], "true");
    assert_eq!(jobs[0]["transition"], "start");

    let out = cli(s(&["daemons", "list", "-o", "json"])).await.unwrap();
    let ds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ds[0]["name"], "pool-1");
    assert_eq!(ds[0]["status"], "idle");

    let out = cli(s(&["jobs", "list", "--status", "bogus"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    d.stop().await.unwrap();
    coord.stop().await;
}
