//! Workspace builds: state continuity, partial state on failure, logs,
//! and a coordinator restart that keeps everything.

use provisionerd::proto::{LogSource, Transition};

use crate::common::{Coord, Daemon, examples_template, stack};
use crate::template;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_stop_start_delete_keeps_state() {
    let tmp = tempfile::tempdir().unwrap();
    let (coord, d) = stack(tmp.path(), "basic", &examples_template()).await;

    let job = coord
        .create_workspace("dev", "basic", "alice", &[("region", "us-east-2")])
        .await;
    coord.wait_succeeded(&job).await;
    let ws = coord.workspace("dev").await.unwrap();
    assert_eq!(ws.outputs["region"], "\"us-east-2\"");
    let id = ws.outputs["id"].clone();
    // A list shows the same outputs (cut out of the state by the store).
    let listed = coord
        .admin()
        .await
        .list_workspaces(provisionerd::proto::ListWorkspacesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workspaces;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].outputs, ws.outputs);

    for t in [Transition::Stop, Transition::Start] {
        let job = coord.build("dev", t).await;
        coord.wait_succeeded(&job).await;
        let logs = coord.logs(&job).await;
        assert!(
            logs.iter().any(|l| l
                .output
                .contains("Plan: 0 to add, 0 to change, 0 to destroy.")),
            "the build planned against the stored state"
        );
        assert_eq!(
            coord.workspace("dev").await.unwrap().outputs["id"],
            id,
            "same resource after {t:?}"
        );
    }
    let job = coord.build("dev", Transition::Destroy).await;
    coord.wait_succeeded(&job).await;
    assert!(
        coord
            .logs(&job)
            .await
            .iter()
            .any(|l| l.output.contains("1 destroyed"))
    );
    let gone = coord.workspace("dev").await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    d.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_apply_stores_partial_state() {
    let tmp = tempfile::tempdir().unwrap();
    let flag = tmp.path().join("fail-flag");
    std::fs::write(&flag, "").unwrap();
    // `a` succeeds; `b` fails while the flag file exists.
    let body = format!(
        r#"
resource "terraform_data" "a" {{}}
resource "terraform_data" "b" {{
  depends_on = [terraform_data.a]
  provisioner "local-exec" {{
    command = "test ! -e {}"
  }}
}}
"#,
        flag.display()
    );
    let dir = template(tmp.path(), "t", &body);
    let (coord, d) = stack(tmp.path(), "t", &dir).await;

    let job = coord.create_workspace("ws", "t", "alice", &[]).await;
    let failed = coord.wait_job(&job).await;
    assert_eq!(failed.status, "failed");
    assert!(
        failed.error.contains("apply"),
        "error names the stage: {}",
        failed.error
    );

    std::fs::remove_file(&flag).unwrap();
    let job = coord.build("ws", Transition::Start).await;
    coord.wait_succeeded(&job).await;
    let logs = coord.logs(&job).await;
    let summary = logs
        .iter()
        .find(|l| l.output.starts_with("Plan:"))
        .expect("plan summary");
    // With the partial state, `a` exists and only the tainted `b` is
    // replaced; without it, both would be added.
    assert!(summary.output.contains("1 to add"), "{}", summary.output);
    assert!(
        summary.output.contains("1 to destroy"),
        "{}",
        summary.output
    );
    d.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_log_line_arrives_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"
resource "terraform_data" "w" {
  provisioner "local-exec" {
    command = "i=1; while [ $i -le 2000 ]; do echo line-$i; i=$((i+1)); done"
  }
}
"#;
    let dir = template(tmp.path(), "t", body);
    let (coord, d) = stack(tmp.path(), "t", &dir).await;
    let job = coord.create_workspace("ws", "t", "alice", &[]).await;
    let j = coord.wait_succeeded(&job).await;
    let logs = coord.logs(&job).await;
    assert_eq!(logs.len() as u64, j.log_count);
    let seqs: Vec<u64> = logs.iter().map(|l| l.seq).collect();
    assert_eq!(
        seqs,
        (1..=logs.len() as u64).collect::<Vec<_>>(),
        "sequence numbers without gaps"
    );
    let printed: Vec<u32> = logs
        .iter()
        .filter(|l| l.source == LogSource::Terraform as i32)
        .filter_map(|l| {
            l.output
                .rsplit_once("line-")
                .and_then(|(_, n)| n.trim().parse().ok())
        })
        .collect();
    assert_eq!(
        printed,
        (1..=2000).collect::<Vec<_>>(),
        "each line once, in order"
    );
    let stages: Vec<&str> = logs.iter().map(|l| l.stage.as_str()).collect();
    assert_eq!(stages.first(), Some(&"Setting up"));
    assert!(stages.contains(&"Planning Infrastructure"));
    d.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_restart_keeps_keys_jobs_and_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let coord = Coord::start(&data).await;
    let token = coord.token.clone();
    let key = coord.create_key("k", &[("pool", "a")]).await;
    let d = Daemon::start(&coord.url, &key, "d1", &tmp.path().join("c1"));
    coord
        .wait_succeeded(
            &coord
                .push("basic", &examples_template(), &[("pool", "a")])
                .await,
        )
        .await;
    let job = coord.create_workspace("dev", "basic", "alice", &[]).await;
    coord.wait_succeeded(&job).await;
    let logs_before = coord.logs(&job).await;
    let id_before = coord.workspace("dev").await.unwrap().outputs["id"].clone();
    // Stop with the daemon still connected: its session is ended, and it
    // reconnects to the next coordinator on the same address by itself.
    let addr: std::net::SocketAddr = coord.url.trim_start_matches("http://").parse().unwrap();
    coord.stop().await;

    let coord = Coord::start_at(&data, addr, std::time::Duration::from_secs(60)).await;
    assert_eq!(coord.token, token, "the admin token is created once");
    let j = coord.job(&job).await;
    assert_eq!(j.status, "succeeded");
    let logs_after = coord.logs(&job).await;
    assert_eq!(logs_after.len(), logs_before.len());
    assert!(
        logs_after
            .iter()
            .zip(&logs_before)
            .all(|(a, b)| a.output == b.output && a.seq == b.seq)
    );
    // The key still works and the state is still there: the next build
    // plans no changes against it.
    crate::common::wait_connected(&coord, 1).await;
    let job = coord.build("dev", Transition::Start).await;
    coord.wait_succeeded(&job).await;
    assert!(coord.logs(&job).await.iter().any(|l| {
        l.output
            .contains("Plan: 0 to add, 0 to change, 0 to destroy.")
    }));
    assert_eq!(
        coord.workspace("dev").await.unwrap().outputs["id"],
        id_before
    );
    d.stop().await.unwrap();
    coord.stop().await;
}
