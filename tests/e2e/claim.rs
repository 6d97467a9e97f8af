//! Claiming prebuilt workspaces end to end: real terraform, the stand-in
//! coder provider, a general daemon and a prebuild-pool daemon. The pool
//! fills on the pool daemon; a person's create claims a prebuild, its
//! claim build runs on the general daemon with the new owner and
//! CODER_WORKSPACE_IS_PREBUILD_CLAIM; the pool refills.

use provisionerd::proto;

use crate::common::wait_connected;
use crate::ops_coordinator::{cli, daemon, eventually, http_get, ops_addr, prebuilds, serve};

/// A preset (the default) with one prebuild and the seed's conditional
/// workspace tags. `w` does not depend on the owner, so a claim keeps it;
/// `claim` does, so the claim build replaces it and its provisioner shows
/// what terraform saw.
const TEMPLATE: &str = r#"
terraform {
  required_providers {
    coder = {
      source = "coder/coder"
    }
  }
}

data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}

data "coder_workspace_preset" "small" {
  name    = "small"
  default = true
  prebuilds {
    instances = 1
  }
}

data "coder_workspace_tags" "prebuilds" {
  count = data.coder_workspace_owner.me.name == "prebuilds" ? 1 : 0
  tags = {
    "is_prebuild" = "true"
  }
}

resource "terraform_data" "w" {
  provisioner "local-exec" {
    command = "echo built $CODER_WORKSPACE_NAME"
  }
}

resource "terraform_data" "claim" {
  triggers_replace = [data.coder_workspace_owner.me.name]
  provisioner "local-exec" {
    command = "echo seen: owner=$CODER_WORKSPACE_OWNER name=$CODER_WORKSPACE_NAME claim=$CODER_WORKSPACE_IS_PREBUILD_CLAIM prebuild=$CODER_WORKSPACE_IS_PREBUILD"
  }
}

output "owner" {
  value = data.coder_workspace_owner.me.name
}
output "is_prebuild_claim" {
  value = data.coder_workspace.me.is_prebuild_claim
}
output "w_id" {
  value = terraform_data.w.id
}
"#;

fn ready(ws: &[proto::Workspace]) -> Vec<proto::Workspace> {
    ws.iter()
        .filter(|w| {
            w.latest_job_status == "succeeded"
                && w.latest_transition == proto::Transition::Start as i32
        })
        .cloned()
        .collect()
}

/// The template with `instances` prebuilds instead of one.
/// The `name`s of a `workspaces list -o json` answer, in order.
fn listed_names(list: &serde_json::Value) -> Vec<&str> {
    let rows = list.as_array().expect("a JSON array");
    rows.iter().map(|w| w["name"].as_str().unwrap()).collect()
}

fn template_with(instances: u32) -> String {
    TEMPLATE.replace("instances = 1", &format!("instances = {instances}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_claim_each_prebuild_once_and_build_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (_serve, coord) = serve(root, &["--prebuild-reconcile-interval", "300ms"]).await;
    let general = coord.create_key("general", &[]).await;
    let pool = coord.create_key("pool", &[("is_prebuild", "true")]).await;
    let _g = daemon(&coord, &general, "general-1", root);
    let _p = daemon(&coord, &pool, "pool-1", root);
    wait_connected(&coord, 2).await;
    let dir = crate::template(root, "many", &template_with(3));
    coord
        .wait_succeeded(&coord.push("many", &dir, &[]).await)
        .await;
    eventually("the pool filled", || async {
        ready(&prebuilds(&coord).await).len() == 3
    })
    .await;
    // Paused, so no refill can become eligible while the creates race.
    let (code, _, err) = cli(&coord, &["prebuilds", "pause"], "").await;
    assert_eq!(code, 0, "{err}");
    let mut pool_names: Vec<String> = ready(&prebuilds(&coord).await)
        .into_iter()
        .map(|w| w.name)
        .collect();
    pool_names.sort();

    let creates = (0..8).map(|i| {
        let coord = &coord;
        async move {
            coord
                .admin()
                .await
                .create_workspace(proto::CreateWorkspaceRequest {
                    name: format!("ws-{i}"),
                    template: "many".into(),
                    owner: format!("user{i}"),
                    preset: "small".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    });
    let results = futures::future::join_all(creates).await;
    let mut claimed: Vec<String> = results
        .iter()
        .filter(|r| !r.claimed_from.is_empty())
        .map(|r| r.claimed_from.clone())
        .collect();
    claimed.sort();
    assert_eq!(claimed, pool_names, "each prebuild claimed exactly once");
    for (i, r) in results.iter().enumerate() {
        let job = coord.wait_succeeded(&r.job_id).await;
        assert_eq!(job.daemon, "general-1");
        let ws = coord.workspace(&format!("ws-{i}")).await.unwrap();
        assert_eq!(ws.owner, format!("user{i}"));
        assert_eq!(
            ws.outputs.get("owner").map(String::as_str),
            Some(format!("\"user{i}\"").as_str())
        );
    }
    assert!(prebuilds(&coord).await.is_empty(), "all three were claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_claims_a_prebuild_on_the_general_pool_and_the_pool_refills() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (serve_proc, coord) = serve(
        root,
        &[
            "--prebuild-reconcile-interval",
            "300ms",
            "--metrics-address",
            "127.0.0.1:0",
        ],
    )
    .await;
    let general = coord.create_key("general", &[]).await;
    let pool = coord.create_key("pool", &[("is_prebuild", "true")]).await;
    let _g = daemon(&coord, &general, "general-1", root);
    let _p = daemon(&coord, &pool, "pool-1", root);
    wait_connected(&coord, 2).await;
    let dir = crate::template(root, "claimy", TEMPLATE);
    let import = coord.push("claimy", &dir, &[]).await;
    coord.wait_succeeded(&import).await;

    eventually("the pool filled", || async {
        ready(&prebuilds(&coord).await).len() == 1
    })
    .await;
    let pre = ready(&prebuilds(&coord).await).remove(0);
    assert_eq!(coord.job(&pre.latest_job_id).await.daemon, "pool-1");
    assert_eq!(
        pre.outputs.get("owner").map(String::as_str),
        Some("\"prebuilds\"")
    );
    let w_id = pre.outputs.get("w_id").cloned().unwrap();

    // A person's create with the preset claims it.
    let resp = coord
        .admin()
        .await
        .create_workspace(proto::CreateWorkspaceRequest {
            name: "alice-ws".into(),
            template: "claimy".into(),
            owner: "alice".into(),
            preset: "small".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.claimed_from, pre.name);
    assert_eq!(resp.workspace_id, pre.id, "the same workspace, renamed");
    let job = coord.wait_succeeded(&resp.job_id).await;
    assert_eq!(job.daemon, "general-1", "tags: {:?}", job.tags);
    assert!(!job.tags.contains_key("is_prebuild"), "{:?}", job.tags);
    assert_eq!(job.initiator, "alice");
    let logs: Vec<String> = coord
        .logs(&job.id)
        .await
        .into_iter()
        .map(|l| l.output)
        .collect();
    assert!(
        logs.iter().any(|l| l.trim_end()
            == "terraform_data.claim: (local-exec): seen: owner=alice name=alice-ws claim=true prebuild="),
        "{logs:?}"
    );
    let ws = coord.workspace("alice-ws").await.unwrap();
    assert_eq!(ws.owner, "alice");
    assert_eq!(ws.claimed_from, pre.name);
    assert_eq!(
        ws.outputs.get("owner").map(String::as_str),
        Some("\"alice\"")
    );
    assert_eq!(
        ws.outputs.get("is_prebuild_claim").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        ws.outputs.get("w_id"),
        Some(&w_id),
        "applied on the prebuild's state: the resource was kept"
    );
    assert!(coord.workspace(&pre.name).await.is_err(), "renamed");

    // The pool refills with a new prebuild.
    eventually("the pool refilled", || async {
        let r = ready(&prebuilds(&coord).await);
        r.len() == 1 && r[0].name != pre.name
    })
    .await;
    let refill = ready(&prebuilds(&coord).await).remove(0);

    // Paused before bob's claim, so the pool is not refilled behind it.
    let (code, _, err) = cli(&coord, &["prebuilds", "pause"], "").await;
    assert_eq!(code, 0, "{err}");
    // The CLI: no --preset means the default preset, which claims.
    let (code, out, err) = cli(
        &coord,
        &[
            "workspaces",
            "create",
            "bob-ws",
            "--template",
            "claimy",
            "--owner",
            "bob",
            "-o",
            "json",
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("claimed prebuild {} (built ", refill.name)) && err.contains(" ago)"),
        "{err}"
    );
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["claimed_from"], refill.name.as_str(), "{out}");
    // When the prebuild was built, to the millisecond (RFC 3339).
    let built = created["claimed_built_at"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(built).is_ok() && built.len() == 24,
        "{out}"
    );
    let bob_job = created["job_id"].as_str().unwrap().to_string();

    // Once bob took the last prebuild the paused pool stays empty (no
    // create in flight that could finish meanwhile): a create with the
    // preset builds anew.
    let (code, out, err) = cli(
        &coord,
        &[
            "workspaces",
            "create",
            "dave-ws",
            "--template",
            "claimy",
            "--owner",
            "dave",
            "--preset",
            "small",
            "-o",
            "json",
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no eligible prebuild: building"), "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["claimed_from"], serde_json::Value::Null, "{out}");
    assert_eq!(
        created["claimed_built_at"],
        serde_json::Value::Null,
        "{out}"
    );
    // `--preset none`: no preset, no claim, no claim message.
    let (code, _, err) = cli(
        &coord,
        &[
            "workspaces",
            "create",
            "carol-ws",
            "--template",
            "claimy",
            "--owner",
            "carol",
            "--preset",
            "none",
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("prebuild"), "{err}");
    coord.wait_succeeded(&bob_job).await;

    // `workspaces show` keeps the history; list filters by owner/template.
    let (code, out, err) = cli(&coord, &["workspaces", "show", "bob-ws"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("Claimed:     from prebuild {}", refill.name)),
        "{out}"
    );
    let (code, out, err) = cli(
        &coord,
        &["workspaces", "list", "--owner", "alice", "-o", "json"],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names = listed_names(&list);
    assert_eq!(names, ["alice-ws"], "{out}");
    assert_eq!(list[0]["claimed_from"], pre.name.as_str());
    // Filters keep the cursor working: pages of one, only claimy's people.
    let (code, out, err) = cli(
        &coord,
        &[
            "workspaces",
            "list",
            "--template",
            "claimy",
            "--limit",
            "3",
            "-o",
            "json",
        ],
        "",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names = listed_names(&list);
    assert_eq!(names, ["alice-ws", "bob-ws", "carol-ws"], "{out}");
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = coord
            .admin()
            .await
            .list_workspaces(proto::ListWorkspacesRequest {
                limit: 1,
                after: after.clone(),
                owner: String::new(),
                template: "claimy".into(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.workspaces.into_iter().map(|w| w.name));
        if page.next_cursor.is_empty() {
            break;
        }
        after = page.next_cursor;
    }
    assert_eq!(seen, ["alice-ws", "bob-ws", "carol-ws", "dave-ws"]);

    // Two claims, counted with Coder's name and labels.
    let addr = ops_addr(&serve_proc).await;
    let want = r#"coderd_prebuilt_workspaces_claimed_total{template_name="claimy",preset_name="small",organization_name="default"} 2"#;
    eventually("the claims counted", || async {
        http_get(&addr, "/metrics").await.1.contains(want)
    })
    .await;
    let (_, body) = http_get(&addr, "/metrics").await;
    assert!(
        body.contains(r#"coderd_prebuilt_workspace_claim_duration_seconds_count{template_name="claimy",preset_name="small",organization_name="default"} 2"#),
        "{body}"
    );
}
