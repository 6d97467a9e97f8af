//! The seed's "managing prebuild provisioning queues" runbook, end to end
//! with the real binary: pause, assess, cancel the pending prebuild jobs
//! (`jobs list … -o json | jq -r '.[].id' | jobs cancel -`), resume.

use std::collections::BTreeSet;

use provisionerd::proto;

use super::{cli, daemon, eventually, pool_template, prebuild_jobs, serve};
use crate::common::wait_connected;

/// The runbook's assessment: `jobs list --status pending --initiator
/// prebuilds -o json`.
const LIST_PENDING_PREBUILDS: &[&str] = &[
    "jobs",
    "list",
    "--status",
    "pending",
    "--initiator",
    "prebuilds",
    "-o",
    "json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_prebuild_jobs_are_listed_and_canceled_and_human_jobs_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let (_serve, coord) = serve(tmp.path(), &["--prebuild-reconcile-interval", "300ms"]).await;
    let general = coord.create_key("general", &[]).await;
    let mut g = daemon(&coord, &general, "general-1", tmp.path());
    wait_connected(&coord, 1).await;
    let dir = pool_template(tmp.path(), "small", 3, "echo built");
    let import = coord.push("small", &dir, &[]).await;
    coord.wait_succeeded(&import).await;
    // No daemon left: every job now waits. The reconciler queues three
    // prebuild creates (no prebuild pool exists to take them).
    g.kill9().await;
    eventually("the general daemon offline", || async {
        coord.daemons().await.iter().all(|d| d.status == "offline")
    })
    .await;
    eventually("three prebuild creates pending", || async {
        prebuild_jobs(&coord)
            .await
            .iter()
            .filter(|j| j.status == "pending")
            .count()
            == 3
    })
    .await;
    let human = coord
        .create_workspace("alice-1", "small", "alice", &[])
        .await;

    // 1. Pause, so cancels are not replaced.
    let (code, _, err) = cli(&coord, &["prebuilds", "pause"], "").await;
    assert_eq!(code, 0, "{err}");
    // 2. Assess.
    let (code, out, err) = cli(&coord, LIST_PENDING_PREBUILDS, "").await;
    assert_eq!(code, 0, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: BTreeSet<String> = listed
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|j| {
            assert_eq!(j["initiator"], "prebuilds", "{j}");
            assert_eq!(j["status"], "pending", "{j}");
            j["id"].as_str().unwrap().to_string()
        })
        .collect();
    let expected: BTreeSet<String> = prebuild_jobs(&coord)
        .await
        .into_iter()
        .filter(|j| j.status == "pending")
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, expected);
    assert!(!ids.contains(&human));
    // 3. Cancel them: the ids on stdin, one a line (what `jq -r` prints).
    let stdin: String = ids.iter().map(|id| format!("{id}\n")).collect();
    let (code, out, err) = cli(&coord, &["jobs", "cancel", "-", "-o", "json"], &stdin).await;
    assert_eq!(code, 0, "{err}");
    let canceled: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(canceled.as_array().unwrap().len(), 3, "{out}");
    for id in &ids {
        assert_eq!(coord.job(id).await.status, "canceled");
    }
    assert_eq!(
        coord.job(&human).await.status,
        "pending",
        "human job untouched"
    );
    let (_, out, _) = cli(&coord, LIST_PENDING_PREBUILDS, "").await;
    assert_eq!(out.trim(), "[]");

    // The seed's xargs form cancels one id per call; a bad id among good
    // ones is reported by name and fails the command, the rest still done.
    let (code, _, err) = cli(&coord, &["jobs", "cancel", &human, "no-such-job"], "").await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no-such-job"), "{err}");
    assert_eq!(coord.job(&human).await.status, "canceled");

    // 5. Resume: the reconciler works again (the canceled creates'
    // workspaces are cleaned up, new creates queue).
    let (code, _, err) = cli(&coord, &["prebuilds", "resume"], "").await;
    assert_eq!(code, 0, "{err}");
    eventually("new prebuild jobs after resume", || async {
        prebuild_jobs(&coord)
            .await
            .iter()
            .any(|j| j.status == "pending")
    })
    .await;
    let status = coord
        .admin()
        .await
        .get_prebuild_status(proto::GetPrebuildStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!status.paused);
}
