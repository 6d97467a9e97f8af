//! Queue order and exclusive claiming.

use std::time::Duration;

use crate::common::{Coord, Daemon, wait_connected};
use crate::{QUICK, template};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn human_jobs_go_before_prebuilds() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let dir = template(tmp.path(), "t", QUICK);
    let import = coord.push("t", &dir, &[]).await;
    let d = Daemon::start(&coord.url, &key, "d1", &tmp.path().join("c1"));
    coord.wait_succeeded(&import).await;
    d.stop().await.unwrap();

    // No daemon connected: prebuilds queue first, a person's job last.
    let p1 = coord.create_workspace("p1", "t", "prebuilds", &[]).await;
    let p2 = coord.create_workspace("p2", "t", "prebuilds", &[]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let human = coord.create_workspace("h1", "t", "alice", &[]).await;

    let d = Daemon::start(&coord.url, &key, "d2", &tmp.path().join("c2"));
    let (h, a, b) = (
        coord.wait_succeeded(&human).await,
        coord.wait_succeeded(&p1).await,
        coord.wait_succeeded(&p2).await,
    );
    assert!(h.started_at < a.started_at, "the person's job ran first");
    assert!(a.started_at < b.started_at, "then prebuilds, oldest first");
    d.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_daemons_race_for_ten_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let runs = tmp.path().join("runs.log");
    // Every apply appends its workspace name: a job run twice shows twice.
    let body = format!(
        r#"
resource "terraform_data" "w" {{
  provisioner "local-exec" {{
    command = "echo $CODER_WORKSPACE_NAME >> {}"
  }}
}}
"#,
        runs.display()
    );
    let dir = template(tmp.path(), "t", &body);
    let import = coord.push("t", &dir, &[]).await;
    let daemons: Vec<Daemon> = (0..20)
        .map(|i| {
            Daemon::start(
                &coord.url,
                &key,
                &format!("d{i}"),
                &tmp.path().join(format!("c{i}")),
            )
        })
        .collect();
    wait_connected(&coord, 20).await;
    coord.wait_succeeded(&import).await;
    let mut jobs = Vec::new();
    for i in 0..10 {
        jobs.push(
            coord
                .create_workspace(&format!("ws{i}"), "t", "alice", &[])
                .await,
        );
    }
    for j in &jobs {
        coord.wait_succeeded(j).await;
    }
    let mut lines: Vec<String> = std::fs::read_to_string(&runs)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("ws{i}")).collect();
    want.sort();
    assert_eq!(lines, want, "every job ran exactly once");
    for d in daemons {
        d.stop().await.unwrap();
    }
    coord.stop().await;
}
