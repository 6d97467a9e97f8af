//! `/metrics`, `/healthz` and `/readyz` of `provisionerd serve`.

use std::path::Path;

use provisionerd::proto;

use super::{daemon, http_get, ops_addr, serve};

fn has_line(body: &str, line: &str) -> bool {
    body.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_queue_by_tags_and_initiator_outcomes_and_daemons() {
    let tmp = tempfile::tempdir().unwrap();
    let (serve, coord) = serve(
        tmp.path(),
        &[
            "--metrics-address",
            "127.0.0.1:0",
            "--prebuild-reconcile-interval",
            "0",
        ],
    )
    .await;
    let addr = ops_addr(&serve).await;
    assert_eq!(http_get(&addr, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(http_get(&addr, "/readyz").await, (200, "ready\n".into()));

    // Only a general (untagged) daemon: prebuild jobs wait.
    let key = coord.create_key("general", &[]).await;
    let _general = daemon(&coord, &key, "general-1", tmp.path());
    crate::common::wait_connected(&coord, 1).await;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates/coder-prebuilds");
    let import = coord.push("cp", &dir, &[]).await;
    coord.wait_succeeded(&import).await;
    let create = |name: &'static str, owner: &'static str| {
        let coord = &coord;
        async move {
            coord
                .admin()
                .await
                .create_workspace(proto::CreateWorkspaceRequest {
                    name: name.into(),
                    template: "cp".into(),
                    owner: owner.into(),
                    preset: "Frankfurt, 4 cores".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .job_id
        }
    };
    let pre = create("pre-1", "prebuilds").await;
    let mine = create("alice-1", "alice").await;
    coord.wait_succeeded(&mine).await;
    assert_eq!(coord.job(&pre).await.status, "pending");
    // The daemon reports idle after it reported the job.
    super::eventually("the daemon idle", || async {
        coord.daemons().await.iter().all(|d| d.status == "idle")
    })
    .await;

    // The store-backed metrics are a snapshot refreshed every second.
    let body = scrape_until(&addr, |b| {
        has_line(
            b,
            r#"provisionerd_coordinator_daemons{state="idle",tags=""} 1"#,
        )
    })
    .await;
    for line in [
        r#"provisionerd_coordinator_jobs{status="pending",tags="is_prebuild=true",initiator="prebuild"} 1"#,
        r#"provisionerd_coordinator_job_outcomes_total{type="template_import",outcome="succeeded"} 1"#,
        r#"provisionerd_coordinator_job_outcomes_total{type="workspace_build",outcome="succeeded"} 1"#,
        r#"provisionerd_coordinator_job_duration_seconds_count{type="workspace_build",outcome="succeeded"} 1"#,
        r#"provisionerd_coordinator_job_queue_wait_seconds_count{initiator="human"} 2"#,
        r#"provisionerd_coordinator_daemons{state="idle",tags=""} 1"#,
        "provisionerd_coordinator_dispatch_latency_seconds_count 2",
        "coderd_prebuilds_reconciliation_paused 0",
        r#"coderd_prebuilt_workspaces_running{template_name="cp",preset_name="Frankfurt, 4 cores",organization_name="default"} 0"#,
    ] {
        assert!(has_line(&body, line), "no line {line:?} in:\n{body}");
    }
    assert!(
        body.contains(r#"coderd_prebuilt_workspaces_desired{template_name="cp",preset_name="Frankfurt, 4 cores",organization_name="default"}"#),
        "{body}"
    );
    assert!(
        !body.contains(r#"initiator="prebuild"} 0"#),
        "no zero series: {body}"
    );

    // The pending prebuild canceled: gone from the gauge, counted as an
    // outcome; no run time (it never ran).
    coord
        .admin()
        .await
        .cancel_job(proto::CancelJobRequest {
            id: pre.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let body = scrape_until(&addr, |b| {
        !b.contains(r#"provisionerd_coordinator_jobs{status="pending""#)
    })
    .await;
    assert!(
        !body.contains(r#"provisionerd_coordinator_jobs{status="pending""#),
        "{body}"
    );
    assert!(has_line(
        &body,
        r#"provisionerd_coordinator_job_outcomes_total{type="workspace_build",outcome="canceled"} 1"#
    ));
    assert!(
        !body.contains(r#"job_duration_seconds_count{type="workspace_build",outcome="canceled"}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prebuild_pools_show_under_coders_names_and_created_total_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let flags = [
        "--metrics-address",
        "127.0.0.1:0",
        "--prebuild-reconcile-interval",
        "300ms",
    ];
    let (serve1, coord) = serve(tmp.path(), &flags).await;
    let key = coord.create_key("pool", &[("is_prebuild", "true")]).await;
    let _pool = daemon(&coord, &key, "pool-1", tmp.path());
    let key = coord.create_key("general", &[]).await;
    let _general = daemon(&coord, &key, "general-1", tmp.path());
    crate::common::wait_connected(&coord, 2).await;
    let dir = super::pool_template(tmp.path(), "small", 2, "echo built");
    let import = coord.push("small", &dir, &[]).await;
    coord.wait_succeeded(&import).await;
    super::eventually("two prebuilds built", || async {
        super::reconciler::ready(&super::prebuilds(&coord).await) == 2
    })
    .await;

    let labels = r#"{template_name="small",preset_name="small",organization_name="default"}"#;
    let line = |name: &str, v: u32| format!("coderd_prebuilt_workspaces_{name}{labels} {v}");
    let want = [
        line("created_total", 2),
        line("failed_total", 0),
        line("desired", 2),
        line("running", 2),
        line("eligible", 2),
        line("preset_hard_limited", 0),
    ];
    let addr = ops_addr(&serve1).await;
    let body = scrape_until(&addr, |b| want.iter().all(|l| has_line(b, l))).await;
    for l in &want {
        assert!(has_line(&body, l), "no line {l:?} in:\n{body}");
    }
    assert!(
        body.contains("# TYPE coderd_prebuilt_workspaces_created counter"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE coderd_prebuilt_workspaces_eligible gauge"),
        "{body}"
    );
    assert!(!body.contains("provisionerd_coordinator_prebuilds_running"));

    // A new coordinator process on the same store: the counters come back
    // from the job history (the pool is full, so nothing new is created).
    let mut serve1 = serve1;
    serve1.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(serve1.exit_code(crate::common::TIMEOUT).await, 0);
    let (serve2, _coord) = serve(tmp.path(), &flags).await;
    let addr = ops_addr(&serve2).await;
    let body = scrape_until(&addr, |b| has_line(b, &want[0])).await;
    assert!(has_line(&body, &want[0]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_metrics_port_is_a_startup_error_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let data = tmp.path().join("data");
    let mut p = crate::common::procs::Proc::spawn(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--metrics-address",
            &port,
        ],
        &[],
        &tmp.path().join("serve.log"),
    );
    assert_eq!(p.exit_code(crate::common::TIMEOUT).await, 1);
    assert!(
        p.log_text().contains("--metrics-address"),
        "{}",
        p.log_text()
    );
}

/// `/metrics` once `ready` holds for its body (200 each time).
pub async fn scrape_until(addr: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + crate::common::TIMEOUT;
    loop {
        let (code, body) = http_get(addr, "/metrics").await;
        assert_eq!(code, 200, "{body}");
        if ready(&body) || tokio::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
