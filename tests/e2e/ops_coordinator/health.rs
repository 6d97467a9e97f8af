//! A failing pool's hard limit: after three consecutive failed creates
//! the reconciler stops creating for the preset (status, metric and one
//! log line say so) until `prebuilds reset` or a new template version.

use std::time::Duration;

use provisionerd::proto;

use super::metrics::scrape_until;
use super::reconciler::{ready, stack_with};
use super::{cli, eventually, ops_addr, pool_template, prebuild_jobs, prebuilds};
use crate::common::Coord;

const REACHED: &str = "prebuilds: hard limit reached";

async fn creates(coord: &Coord) -> Vec<proto::Job> {
    prebuild_jobs(coord)
        .await
        .into_iter()
        .filter(|j| j.transition == proto::Transition::Start as i32)
        .collect()
}

async fn preset_status(coord: &Coord) -> serde_json::Value {
    let (code, out, err) = cli(coord, &["prebuilds", "status", "-o", "json"], "").await;
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    status["presets"][0].clone()
}

fn hard_limited_line(value: u8) -> String {
    format!(
        r#"coderd_prebuilt_workspaces_preset_hard_limited{{template_name="broken",preset_name="small",organization_name="default"}} {value}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failed_creates_stop_the_pool_until_a_reset_or_a_new_version() {
    let tmp = tempfile::tempdir().unwrap();
    let (procs, coord) = stack_with(tmp.path(), &["--metrics-address", "127.0.0.1:0"]).await;
    let serve = &procs[0];
    let addr = ops_addr(serve).await;
    let dir = pool_template(tmp.path(), "broken", 1, "echo failing; exit 1");
    let import = coord.push("broken", &dir, &[]).await;
    coord.wait_succeeded(&import).await;

    eventually("the preset hard-limited", || async {
        preset_status(&coord).await["hard_limited"] == true
    })
    .await;
    // The pass that saw the limit logs it (after the status can show it).
    serve.wait_log(REACHED).await;
    let made = creates(&coord).await;
    assert_eq!(made.len(), 3, "{made:?}");
    assert!(made.iter().all(|j| j.status == "failed"), "{made:?}");
    // Ten reconcile intervals (300 ms): no fourth create, one log line.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(creates(&coord).await.len(), 3, "no create past the limit");
    let preset = preset_status(&coord).await;
    assert_eq!(preset["hard_limited"], true, "{preset}");
    assert_eq!(preset["failures"].as_u64(), Some(3), "{preset}");
    assert_eq!(serve.log_text().matches(REACHED).count(), 1, "logged once");
    let (_, table, _) = cli(&coord, &["prebuilds", "status"], "").await;
    assert!(table.contains("HARD LIMITED"), "{table}");
    let body = scrape_until(&addr, |b| b.contains(&hard_limited_line(1))).await;
    assert!(body.contains(&hard_limited_line(1)), "{body}");
    assert!(
        body.contains(r#"coderd_prebuilt_workspaces_failed_total{template_name="broken",preset_name="small",organization_name="default"} 3"#),
        "{body}"
    );
    // Failed prebuilds are still deleted.
    eventually("the failed prebuilds destroyed", || async {
        prebuilds(&coord).await.is_empty()
    })
    .await;

    // A reset names a real pool, or is refused.
    let (code, _, err) = cli(&coord, &["prebuilds", "reset", "broken", "large"], "").await;
    assert_ne!(code, 0);
    assert!(err.contains("no preset \"large\""), "{err}");
    // A reset: the failures so far stop counting and creates resume; three
    // more failures stop the pool again.
    let (code, _, err) = cli(&coord, &["prebuilds", "reset", "broken", "small"], "").await;
    assert_eq!(code, 0, "{err}");
    eventually("a fourth create", || async {
        creates(&coord).await.len() >= 4
    })
    .await;
    eventually("hard-limited again after three more", || async {
        let p = preset_status(&coord).await;
        p["hard_limited"] == true && p["failures"] == 3
    })
    .await;
    assert_eq!(creates(&coord).await.len(), 6);

    // A fixed version: a new pool, which fills.
    let fixed = pool_template(&tmp.path().join("v2"), "broken", 1, "echo built");
    let import = coord.push("broken", &fixed, &[]).await;
    coord.wait_succeeded(&import).await;
    eventually("the fixed pool filled", || async {
        ready(&prebuilds(&coord).await) == 1
    })
    .await;
    let preset = preset_status(&coord).await;
    assert_eq!(
        (&preset["hard_limited"], preset["failures"].as_u64()),
        (&serde_json::Value::Bool(false), Some(0)),
        "{preset}"
    );
    let body = scrape_until(&addr, |b| b.contains(&hard_limited_line(0))).await;
    assert!(body.contains(&hard_limited_line(0)), "{body}");
}
