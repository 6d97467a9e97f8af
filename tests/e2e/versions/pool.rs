//! The prebuild pool follows the active version: a new version replaces
//! the pool's prebuild, and so does a rollback (a promote). Real terraform
//! with the stand-in coder provider.

use std::path::Path;

use provisionerd::proto;

use super::{promote, push, versions};
use crate::common::wait_connected;
use crate::ops_coordinator::{daemon, eventually, prebuilds, serve};
use crate::template;

/// A preset keeping one prebuild; its resource says `which` version built
/// it. No workspace tags: one daemon builds everything.
fn pool_version(root: &Path, which: &str) -> std::path::PathBuf {
    let body = format!(
        r#"
terraform {{
  required_providers {{
    coder = {{
      source = "coder/coder"
    }}
  }}
}}

data "coder_workspace" "me" {{}}

data "coder_workspace_preset" "small" {{
  name    = "small"
  default = true
  prebuilds {{
    instances = 1
  }}
}}

resource "terraform_data" "w" {{
  input = "{which}"
}}

output "version" {{
  value = terraform_data.w.output
}}
"#
    );
    template(root, &format!("pool-{which}"), &body)
}

/// The pool's one prebuild once it is built from `version` (its state
/// saying `out`) and nothing else is in the pool: its name.
async fn pool_is(coord: &crate::common::Coord, version: &str, out: &str) -> String {
    let what = format!("one ready prebuild, of {version}, and no other");
    eventually(&what, || async {
        let p = prebuilds(coord).await;
        p.len() == 1
            && p[0].template_version_name == version
            && p[0].latest_job_status == "succeeded"
            && p[0].latest_transition == proto::Transition::Start as i32
    })
    .await;
    let p = prebuilds(coord).await.remove(0);
    assert_eq!(
        p.outputs.get("version").map(String::as_str),
        Some(format!("\"{out}\"").as_str())
    );
    p.name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prebuild_pool_follows_the_active_version_across_a_promote() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (_serve, coord) = serve(root, &["--prebuild-reconcile-interval", "300ms"]).await;
    let key = coord.create_key("k", &[]).await;
    let _d = daemon(&coord, &key, "d1", root);
    wait_connected(&coord, 1).await;

    let v1 = push(&coord, "pool", &pool_version(root, "one"), "", false).await;
    coord.wait_succeeded(&v1.job_id).await;
    let first = pool_is(&coord, "v1", "one").await;

    // v2 becomes active: the pool's prebuild is rebuilt from it and v1's
    // is destroyed.
    let v2 = push(&coord, "pool", &pool_version(root, "two"), "", false).await;
    coord.wait_succeeded(&v2.job_id).await;
    let second = pool_is(&coord, "v2", "two").await;
    assert_ne!(second, first);
    let gone = coord.workspace(&first).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "{}", gone.message());

    // Roll back: the pool is of v1 again.
    promote(&coord, "pool", "v1").await.unwrap();
    let third = pool_is(&coord, "v1", "one").await;
    assert!(third != first && third != second, "{third}");
    let gone = coord.workspace(&second).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound, "{}", gone.message());

    // A create from v2 explicitly never claims v1's prebuild; a create
    // from the active version does.
    let create = |name: &str, version: &str| {
        let coord = &coord;
        let (name, version) = (name.to_string(), version.to_string());
        async move {
            coord
                .admin()
                .await
                .create_workspace(proto::CreateWorkspaceRequest {
                    name,
                    template: "pool".into(),
                    owner: "alice".into(),
                    preset: "small".into(),
                    template_version: version,
                    // A claim takes the person's setting, not the
                    // prebuild's.
                    automatic_updates: "always".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let mine = create("alice-two", "v2").await;
    assert_eq!(mine.claimed_from, "", "built from v2, not claimed");
    let job = coord.wait_succeeded(&mine.job_id).await;
    assert_eq!(job.template_version_name, "v2");
    let ws = coord.workspace("alice-two").await.unwrap();
    assert_eq!(
        ws.outputs.get("version").map(String::as_str),
        Some("\"two\"")
    );
    assert!(
        coord.workspace(&third).await.is_ok(),
        "the prebuild is still there"
    );
    let claimed = create("alice-one", "v1").await;
    assert_eq!(
        claimed.claimed_from, third,
        "the active version's create claims"
    );
    coord.wait_succeeded(&claimed.job_id).await;
    let ws = coord.workspace("alice-one").await.unwrap();
    assert_eq!(
        (ws.owner.as_str(), ws.automatic_updates.as_str()),
        ("alice", "always")
    );

    // Paused (so the refill of v1 stays), then v2 active again: a create
    // from v1 explicitly builds anew, though a v1 prebuild is ready:
    // only the active version's creates claim.
    let refill = pool_is(&coord, "v1", "one").await;
    coord
        .admin()
        .await
        .pause_prebuilds(proto::PausePrebuildsRequest {})
        .await
        .unwrap();
    promote(&coord, "pool", "v2").await.unwrap();
    let old = create("alice-old", "v1").await;
    assert_eq!(old.claimed_from, "", "v1 is no longer active");
    let job = coord.wait_succeeded(&old.job_id).await;
    assert_eq!(job.template_version_name, "v1");
    let still = coord.workspace(&refill).await.unwrap();
    assert_eq!(still.owner, "prebuilds", "not claimed");
    let vs = versions(&coord, "pool", false).await;
    let counts: Vec<(&str, bool, u64)> = vs
        .iter()
        .map(|v| (v.name.as_str(), v.active, v.workspaces))
        .collect();
    // v2: alice-two; v1: alice-one, alice-old and the refill.
    assert_eq!(counts, [("v2", true, 1), ("v1", false, 3)]);
}
