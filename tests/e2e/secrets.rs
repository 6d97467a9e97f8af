//! Credentials stay secret: the real daemon, given its key through
//! `PROVISIONERD_KEY` or a key file, runs a job whose provisioner prints
//! terraform's environment and command line into the job log; neither the
//! key nor the admin token shows there or in the daemon's own log.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::cli::{run, stderr};
use crate::common::procs::Proc;
use crate::common::{Coord, terraform, wait_connected};

/// Prints the provisioner shell's environment (inherited from terraform)
/// and its parent's (terraform's) command line.
const SHOW_ENV: &str = r#"
resource "terraform_data" "env" {
  provisioner "local-exec" {
    command = "env; echo \"ARGV: $(tr '\\0' ' ' < /proc/$PPID/cmdline)\""
  }
}
"#;

/// `provisionerd start` as a child with exactly `args` and `envs`
/// (no `PROVISIONERD_KEY` unless given).
fn daemon(url: &str, cache: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let tf = terraform();
    let mut all = vec![
        "start",
        "--url",
        url,
        "--name",
        "d1",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--terraform-path",
        tf.to_str().unwrap(),
    ];
    all.extend(args);
    Proc::spawn(&all, envs, &cache.with_extension("daemon.log"))
}

/// Runs a build of the SHOW_ENV template and returns its log text.
async fn job_log(coord: &Coord, root: &Path) -> String {
    let dir = crate::template(root, "env", SHOW_ENV);
    coord
        .wait_succeeded(&coord.push("env", &dir, &[]).await)
        .await;
    let job = coord.create_workspace("w1", "env", "admin", &[]).await;
    coord.wait_succeeded(&job).await;
    let lines: Vec<String> = coord
        .logs(&job)
        .await
        .into_iter()
        .map(|l| l.output)
        .collect();
    lines.join("\n")
}

fn assert_hidden(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows a secret:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_and_token_from_the_environment_never_reach_terraform_or_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let envs = [
        ("PROVISIONERD_KEY", key.as_str()),
        // An operator's admin token that happens to be in the environment.
        ("PROVISIONERD_TOKEN", coord.token.as_str()),
    ];
    let d = daemon(&coord.url, &tmp.path().join("c1"), &[], &envs);
    wait_connected(&coord, 1).await;
    let log = job_log(&coord, tmp.path()).await;
    // The environment and argv were printed: the check below can fail.
    assert!(log.contains("CODER_WORKSPACE_NAME=w1"), "{log}");
    assert!(log.contains("ARGV: ") && log.contains("apply"), "{log}");
    assert!(!log.contains("PROVISIONERD_"), "{log}");
    assert_hidden("the job log", &log, &[&key, &coord.token]);
    assert_hidden("the daemon log", &d.log_text(), &[&key, &coord.token]);
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_file_is_read_trimmed_and_kept_out_of_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let file = tmp.path().join("key");
    std::fs::write(&file, format!("  {key}\n\n")).unwrap();
    // Readable by others: accepted, with a warning.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = file.to_str().unwrap();
    let d = daemon(
        &coord.url,
        &tmp.path().join("c1"),
        &[],
        &[("PROVISIONERD_KEY_FILE", path)],
    );
    wait_connected(&coord, 1).await;
    let log = job_log(&coord, tmp.path()).await;
    assert!(log.contains("CODER_WORKSPACE_NAME=w1"), "{log}");
    assert!(!log.contains("PROVISIONERD_KEY_FILE"), "{log}");
    assert_hidden("the job log", &log, &[&key]);
    let daemon_log = d.log_text();
    assert!(
        daemon_log.contains("readable by every user"),
        "{daemon_log}"
    );
    assert_hidden("the daemon log", &daemon_log, &[&key]);
    coord.stop().await;
}

#[tokio::test]
async fn bad_key_and_token_files_exit_64_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty-key");
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap();
    let missing = tmp.path().join("missing-key");
    let missing = missing.to_str().unwrap();
    let url = "http://127.0.0.1:1";
    let start = |extra: &[&str]| {
        let mut a = vec!["start", "--url", url, "--name", "d1"];
        a.extend(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let cases = [
        (
            start(&["--key-file", empty]),
            "--key-file",
            "empty-key: the file is empty",
        ),
        (
            start(&["--key-file", missing]),
            "--key-file",
            "missing-key: cannot read",
        ),
        (
            start(&["--key", "k", "--key-file", empty]),
            "",
            "give only one",
        ),
        (start(&[]), "", "no provisioner key"),
        (
            ["keys", "list", "--url", url, "--token-file", empty]
                .map(String::from)
                .to_vec(),
            "--token-file",
            "empty-key: the file is empty",
        ),
    ];
    for (args, flag, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, &[]).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(flag) && err.contains(want), "{args:?}: {err}");
    }
}
