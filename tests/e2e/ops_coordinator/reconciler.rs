//! The prebuild reconciler: fills a preset's pool, stops while paused,
//! refills on resume, and backs off a pool whose creates fail.

use std::time::Duration;

use provisionerd::proto;

use super::{cli, daemon, eventually, pool_template, prebuild_jobs, prebuilds, serve};
use crate::common::procs::Proc;
use crate::common::{Coord, wait_connected};

const INTERVAL_MS: i64 = 300;

/// A coordinator reconciling every 300 ms, with a general daemon and a
/// prebuild-pool daemon (`is_prebuild=true`) connected. The processes are
/// returned to keep them alive.
pub async fn stack(root: &std::path::Path) -> (Vec<Proc>, Coord) {
    stack_with(root, &[]).await
}

/// [`stack`] with further `serve` flags.
pub async fn stack_with(root: &std::path::Path, extra: &[&str]) -> (Vec<Proc>, Coord) {
    let mut flags = vec!["--prebuild-reconcile-interval", "300ms"];
    flags.extend_from_slice(extra);
    let (serve_proc, coord) = serve(root, &flags).await;
    let general = coord.create_key("general", &[]).await;
    let pool = coord.create_key("pool", &[("is_prebuild", "true")]).await;
    let g = daemon(&coord, &general, "general-1", root);
    let p = daemon(&coord, &pool, "pool-1", root);
    wait_connected(&coord, 2).await;
    (vec![serve_proc, g, p], coord)
}

pub fn ready(ws: &[proto::Workspace]) -> usize {
    ws.iter()
        .filter(|w| {
            w.latest_job_status == "succeeded"
                && w.latest_transition == proto::Transition::Start as i32
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_is_kept_full_and_a_pause_stops_it_until_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let (_procs, coord) = stack(tmp.path()).await;
    let dir = pool_template(tmp.path(), "small", 2, "echo built");
    let import = coord.push("small", &dir, &[]).await;
    coord.wait_succeeded(&import).await;

    eventually("two prebuilds built", || async {
        ready(&prebuilds(&coord).await) == 2
    })
    .await;
    let ws = prebuilds(&coord).await;
    for w in &ws {
        assert!(w.name.starts_with("prebuild-small-small-"), "{}", w.name);
        let job = coord.job(&w.latest_job_id).await;
        assert_eq!(job.daemon, "pool-1", "tagged is_prebuild=true");
    }
    let creates = prebuild_jobs(&coord).await.len();
    assert_eq!(creates, 2, "no more creates than the pool needs");

    let (code, _, err) = cli(&coord, &["prebuilds", "pause"], "").await;
    assert_eq!(code, 0, "{err}");
    let gone = &ws[0].name;
    let destroy = coord.build(gone, proto::Transition::Destroy).await;
    coord.wait_succeeded(&destroy).await;
    // Ten intervals: nothing is recreated while paused.
    tokio::time::sleep(Duration::from_millis(10 * INTERVAL_MS as u64)).await;
    assert_eq!(prebuilds(&coord).await.len(), 1);
    assert_eq!(
        prebuild_jobs(&coord).await.len(),
        creates + 1,
        "only the destroy"
    );
    let (code, out, err) = cli(&coord, &["prebuilds", "status", "-o", "json"], "").await;
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["paused"], true, "{out}");
    let preset = &status["presets"][0];
    assert_eq!(
        (preset["template"].as_str(), preset["preset"].as_str()),
        (Some("small"), Some("small"))
    );
    assert_eq!(
        (preset["desired"].as_u64(), preset["running"].as_u64()),
        (Some(2), Some(1)),
        "{out}"
    );
    assert_eq!(preset["in_flight"].as_u64(), Some(0), "{out}");

    let (code, _, err) = cli(&coord, &["prebuilds", "resume"], "").await;
    assert_eq!(code, 0, "{err}");
    eventually("the pool refilled", || async {
        ready(&prebuilds(&coord).await) == 2
    })
    .await;
    assert!(prebuilds(&coord).await.iter().all(|w| w.name != *gone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pool_backs_off_doubling_the_wait_between_creates() {
    let tmp = tempfile::tempdir().unwrap();
    // No hard limit: it would stop the pool at the third failure.
    let (_procs, coord) = stack_with(tmp.path(), &["--prebuild-failure-hard-limit", "0"]).await;
    let dir = pool_template(tmp.path(), "broken", 1, "echo failing; exit 1");
    let import = coord.push("broken", &dir, &[]).await;
    coord.wait_succeeded(&import).await;

    let creates = |jobs: Vec<proto::Job>| -> Vec<proto::Job> {
        jobs.into_iter()
            .filter(|j| j.transition == proto::Transition::Start as i32)
            .collect()
    };
    eventually("four failed creates", || async {
        creates(prebuild_jobs(&coord).await)
            .iter()
            .filter(|j| j.status == "failed")
            .count()
            >= 4
    })
    .await;
    let jobs = creates(prebuild_jobs(&coord).await);
    // After the k-th consecutive failure the next create waits at least
    // interval × 2^(k-1) from that failure.
    for (k, pair) in jobs.windows(2).enumerate() {
        let (failed, next) = (&pair[0], &pair[1]);
        assert_eq!(failed.status, "failed", "{failed:?}");
        let gap = next.created_at - failed.finished_at;
        let wait = INTERVAL_MS << k;
        assert!(
            gap >= wait,
            "create {} came {gap} ms after failure {}, backoff {wait} ms",
            k + 2,
            k + 1
        );
    }
    let (_, out, _) = cli(&coord, &["prebuilds", "status", "-o", "json"], "").await;
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        status["presets"][0]["failures"].as_u64().unwrap() >= 3,
        "{out}"
    );
    // Failed prebuilds are cleaned up (destroyed), never left to pile up.
    eventually("failed prebuilds destroyed", || async {
        prebuilds(&coord).await.iter().all(|w| {
            w.latest_job_status != "failed"
                || w.latest_transition != proto::Transition::Start as i32
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_made_prebuilds_owner_workspaces_are_not_the_reconcilers() {
    let tmp = tempfile::tempdir().unwrap();
    let (_procs, coord) = stack(tmp.path()).await;
    let dir = pool_template(tmp.path(), "small", 2, "echo built");
    // Paused while the hand-made ones are made, so the pool fills after.
    let (code, _, err) = cli(&coord, &["prebuilds", "pause"], "").await;
    assert_eq!(code, 0, "{err}");
    let import = coord.push("small", &dir, &[]).await;
    coord.wait_succeeded(&import).await;
    // As the README does: `--owner prebuilds`, one without a preset and
    // one with the pool's preset.
    let plain = coord
        .create_workspace("hand-plain", "small", "prebuilds", &[])
        .await;
    let preset = coord
        .admin()
        .await
        .create_workspace(proto::CreateWorkspaceRequest {
            name: "hand-small".into(),
            template: "small".into(),
            owner: "prebuilds".into(),
            preset: "small".into(),
            ..Default::default()
        })
        .await
        .expect("create hand-small")
        .into_inner()
        .job_id;
    coord.wait_succeeded(&plain).await;
    coord.wait_succeeded(&preset).await;
    let (code, _, err) = cli(&coord, &["prebuilds", "resume"], "").await;
    assert_eq!(code, 0, "{err}");

    let made = |ws: &[proto::Workspace]| {
        ws.iter()
            .filter(|w| w.name.starts_with("prebuild-"))
            .cloned()
            .collect::<Vec<_>>()
    };
    eventually("the pool filled to its two", || async {
        ready(&made(&prebuilds(&coord).await)) == 2
    })
    .await;
    // Several intervals: the hand-made ones stay, built, and the pool
    // (which does not count them) stays at two.
    tokio::time::sleep(Duration::from_millis(8 * INTERVAL_MS as u64)).await;
    let ws = prebuilds(&coord).await;
    for name in ["hand-plain", "hand-small"] {
        let w = ws.iter().find(|w| w.name == name);
        let w = w.unwrap_or_else(|| panic!("{name} was destroyed: {ws:?}"));
        assert_eq!(
            (w.latest_job_status.as_str(), w.latest_transition),
            ("succeeded", proto::Transition::Start as i32),
            "{name}"
        );
    }
    assert_eq!(made(&ws).len(), 2, "{ws:?}");
    let jobs = prebuild_jobs(&coord).await;
    assert!(
        jobs.iter()
            .all(|j| j.transition != proto::Transition::Destroy as i32),
        "nothing destroyed: {jobs:?}"
    );
}
