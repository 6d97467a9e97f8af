//! Coder's CLI habits on the list commands: short flags, `-c` columns,
//! `daemons list` filters and retention, JSON times with milliseconds, and
//! the completion script.

use std::time::Duration;

use serde_json::Value;

use super::{run, stderr, stdout};
use crate::common::{Coord, Daemon, wait_connected, wait_daemon};
use crate::{QUICK, template};

fn env(coord: &Coord) -> Vec<(&'static str, String)> {
    vec![
        ("PROVISIONERD_URL", coord.url.clone()),
        ("PROVISIONERD_TOKEN", coord.token.clone()),
    ]
}

/// Runs the CLI against `env`; fails the test unless it exits 0; stdout.
async fn ok(args: &[&str], env: &[(&'static str, String)]) -> String {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(args, &env).await;
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

async fn json(args: &[&str], env: &[(&'static str, String)]) -> Value {
    let text = ok(args, env).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

fn names(v: &Value, field: &str) -> Vec<String> {
    let rows = v.as_array().unwrap_or_else(|| panic!("an array: {v}"));
    rows.iter()
        .map(|r| r[field].as_str().unwrap().to_string())
        .collect()
}

/// `2026-12-05T01:02:03.456Z`: RFC 3339, UTC, milliseconds.
fn assert_ms_time(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("a time: {v}"));
    let re = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").unwrap();
    assert!(re.is_match(s), "{s:?} is not RFC 3339 with milliseconds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_commands_take_short_flags_columns_and_give_ms_times() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let env = env(&coord);

    ok(
        &["keys", "create", "pool", "-t", "role=ci", "-t", "os=linux"],
        &env,
    )
    .await;
    let keys = json(&["keys", "list", "-o", "json"], &env).await;
    assert_eq!(keys[0]["tags"]["role"], "ci", "{keys}");
    assert_ms_time(&keys[0]["created_at"]);

    // -c picks and orders the table's columns; any spelling of a header.
    let table = ok(&["keys", "list", "-c", "tags,NAME"], &env).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["TAGS", "NAME"]
    );
    assert!(lines[1].ends_with("pool"), "{table}");
    assert!(lines[1].starts_with("os=linux,role=ci"), "{table}");
    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(&["keys", "list", "-c", "name", "-c", "owner"], &envs).await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        stderr(&out).trim(),
        "error: keys list --column \"owner\": no such column; the columns are name, tags, created"
    );

    // Jobs: two pending imports (no daemon), one of them canceled.
    let dir = template(tmp.path(), "quick", QUICK);
    let dir = dir.to_str().unwrap();
    let first = ok(&["templates", "push", "one", "--dir", dir], &env).await;
    let second = ok(&["templates", "push", "two", "--dir", dir], &env).await;
    let (first, second) = (first.trim(), second.trim());
    ok(&["jobs", "cancel", first], &env).await;
    let both = json(
        &[
            "jobs", "list", "-s", "pending", "-s", "canceled", "-o", "json",
        ],
        &env,
    )
    .await;
    assert_eq!(names(&both, "id"), [second, first]);
    let both = json(
        &["jobs", "list", "-s", "pending,canceled", "-o", "json"],
        &env,
    )
    .await;
    assert_eq!(names(&both, "id"), [second, first]);
    let canceled = json(&["jobs", "list", "-s", "canceled", "-o", "json"], &env).await;
    assert_eq!(names(&canceled, "id"), [first]);
    assert_ms_time(&canceled[0]["created_at"]);
    assert_ms_time(&canceled[0]["finished_at"]);
    let none = json(&["jobs", "list", "-i", "nobody", "-o", "json"], &env).await;
    assert_eq!(none, serde_json::json!([]));
    let out = run(&["jobs", "list", "-l", "1", "-c", "status,id"], &envs).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["STATUS", "ID"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["pending", second]
    );
    assert!(
        stderr(&out).contains(&format!("--after {second}")),
        "{}",
        stderr(&out)
    );
    let out = run(&["jobs", "list", "-s", "pending,bogus"], &envs).await;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemons_list_filters_by_status_and_tags_and_ages_out_offline_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let env = env(&coord);
    let x = coord
        .create_key("x", &[("pool", "x"), ("os", "linux")])
        .await;
    let y = coord
        .create_key("y", &[("pool", "y"), ("os", "linux")])
        .await;
    let dx = Daemon::start(&coord.url, &x, "dx", &tmp.path().join("cx"));
    let dy = Daemon::start(&coord.url, &y, "dy", &tmp.path().join("cy"));
    wait_connected(&coord, 2).await;
    wait_daemon(&coord, "dx", |d| d.status == "idle").await;
    wait_daemon(&coord, "dy", |d| d.status == "idle").await;

    let list = |args: &'static [&'static str]| {
        let env = env.clone();
        async move {
            let args = [&["daemons", "list", "-o", "json"][..], args].concat();
            names(&json(&args, &env).await, "name")
        }
    };
    assert_eq!(list(&[]).await, ["dx", "dy"]);
    assert_eq!(list(&["-t", "pool=x"]).await, ["dx"]);
    assert_eq!(list(&["--tag", "os=linux", "-t", "pool=y"]).await, ["dy"]);
    assert!(list(&["-t", "pool=z"]).await.is_empty());
    assert_eq!(list(&["-s", "idle"]).await, ["dx", "dy"]);
    assert!(list(&["-s", "offline,busy"]).await.is_empty());

    dy.stop().await.unwrap();
    wait_daemon(&coord, "dy", |d| d.status == "offline").await;
    let ds = json(&["daemons", "list", "-s", "offline", "-o", "json"], &env).await;
    assert_eq!(names(&ds, "name"), ["dy"]);
    assert_ms_time(&ds[0]["last_seen_at"]);
    // Offline for longer than --max-age: left out (a connected daemon
    // never is); the default 24h keeps it, 0 keeps all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(list(&[]).await, ["dx", "dy"]);
    assert_eq!(list(&["-m", "100ms"]).await, ["dx"]);
    assert_eq!(list(&["--max-age", "0"]).await, ["dx", "dy"]);
    assert_eq!(list(&["-s", "idle,offline"]).await, ["dx", "dy"]);

    let envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(&["daemons", "list", "-s", "asleep"], &envs).await;
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("status \"asleep\" is not one of idle, offered, busy"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &["daemons", "list", "-c", "name,status", "-s", "offline"],
        &envs,
    )
    .await;
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        ["NAME", "STATUS", "dy", "offline"]
    );
    dx.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test]
async fn completion_scripts_and_man_page_are_generated() {
    let out = run(&["completion", "bash"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let script = stdout(&out);
    assert!(
        script.contains("completion") && script.contains("jobs"),
        "{script}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("provisionerd.bash");
    std::fs::write(&file, &script).unwrap();
    let check = tokio::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .await
        .expect("run bash -n");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = run(&["completion", shell], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("daemons"), "{shell}");
    }
    let out = run(&["completion", "tcsh"], &[]).await;
    assert_eq!(out.status.code(), Some(64));
    let out = run(&["man"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(".TH provisionerd 1"),
        "{}",
        stdout(&out)
    );
    let out = run(&["jobs", "list", "--help"], &[]).await;
    let help = stdout(&out);
    for flag in [
        "-s, --status",
        "-i, --initiator",
        "-l, --limit",
        "-c, --column",
        "-o, --output",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}
