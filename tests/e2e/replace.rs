//! Resource replacement on claim, end to end with real terraform and the
//! stand-in coder provider: a claim whose plan replaces a resource (its
//! input follows the owner) is warned about in the log, shown by
//! `jobs show` and counted; with `ignore_changes` the resource keeps its id
//! and nothing is reported.

use provisionerd::proto;

use crate::common::wait_connected;
use crate::ops_coordinator::{cli, daemon, eventually, http_get, ops_addr, prebuilds, serve};

/// One prebuild of the default preset; `home` follows the owner's name.
/// `LIFECYCLE` is replaced with nothing or with an `ignore_changes` block.
const TEMPLATE: &str = r#"
terraform {
  required_providers {
    coder = {
      source = "coder/coder"
    }
  }
}

data "coder_workspace_owner" "me" {}

data "coder_workspace_preset" "small" {
  name    = "small"
  default = true
  prebuilds {
    instances = 1
  }
}

resource "terraform_data" "home" {
  triggers_replace = [data.coder_workspace_owner.me.name]
  LIFECYCLE
}

output "home_id" {
  value = terraform_data.home.id
}
"#;

const KEEP: &str = "lifecycle {\n    ignore_changes = [triggers_replace]\n  }";

/// Claims the pool's one ready prebuild of `template` for `owner`; returns
/// the prebuild's `home_id` and the finished claim job.
async fn claim(
    coord: &crate::common::Coord,
    template: &str,
    owner: &str,
) -> (String, proto::Job, proto::Workspace) {
    let pre = eventually_ready(coord, template).await;
    let resp = coord
        .admin()
        .await
        .create_workspace(proto::CreateWorkspaceRequest {
            name: format!("{owner}-ws"),
            template: template.into(),
            owner: owner.into(),
            preset: "small".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.claimed_from, pre.name);
    let job = coord.wait_succeeded(&resp.job_id).await;
    let ws = coord.workspace(&format!("{owner}-ws")).await.unwrap();
    (pre.outputs["home_id"].clone(), job, ws)
}

async fn eventually_ready(coord: &crate::common::Coord, template: &str) -> proto::Workspace {
    let ready = |ws: Vec<proto::Workspace>| {
        ws.into_iter().find(|w| {
            w.template == template
                && w.latest_job_status == "succeeded"
                && w.latest_transition == proto::Transition::Start as i32
        })
    };
    eventually("the pool filled", || async {
        ready(prebuilds(coord).await).is_some()
    })
    .await;
    ready(prebuilds(coord).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_replaces_a_resource_is_warned_shown_and_counted() {
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
    let key = coord.create_key("general", &[]).await;
    let _d = daemon(&coord, &key, "general-1", root);
    wait_connected(&coord, 1).await;
    for (name, lifecycle) in [("replacing", ""), ("keeping", KEEP)] {
        let dir = crate::template(root, name, &TEMPLATE.replace("LIFECYCLE", lifecycle));
        coord
            .wait_succeeded(&coord.push(name, &dir, &[]).await)
            .await;
    }

    // Without ignore_changes: replaced, warned once, shown, counted.
    let (pre_id, job, ws) = claim(&coord, "replacing", "alice").await;
    assert_ne!(ws.outputs["home_id"], pre_id, "the claim re-created it");
    let logs: Vec<String> = coord
        .logs(&job.id)
        .await
        .into_iter()
        .map(|l| l.output)
        .collect();
    let warnings: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("Claiming this prebuilt workspace replaces"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs:#?}");
    let w = warnings[0];
    assert!(
        w.contains("1 resource(s): terraform_data.home (forced by triggers_replace).")
            && w.contains("lifecycle { ignore_changes = [triggers_replace] }"),
        "{w}"
    );
    assert_eq!(job.replacements.len(), 1, "{job:?}");
    assert_eq!(
        job.replacements[0], "terraform_data.home (forced by triggers_replace)",
        "{job:?}"
    );
    let (code, out, err) = cli(&coord, &["jobs", "show", &job.id], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l.starts_with("replacements")
            && l.ends_with("terraform_data.home (forced by triggers_replace)")),
        "{out}"
    );

    // With ignore_changes: the resource keeps its id, nothing reported.
    let (pre_id, job, ws) = claim(&coord, "keeping", "bob").await;
    assert_eq!(ws.outputs["home_id"], pre_id, "kept");
    assert!(job.replacements.is_empty(), "{job:?}");
    let logs = coord.logs(&job.id).await;
    assert!(
        logs.iter().all(|l| !l.output.contains("replaces")),
        "{logs:#?}"
    );
    // A build that replaces outside a claim (the prebuild's own first build
    // creates; a person's own rebuild is not a claim) is not counted: only
    // `replacing` has a count, and it is 1.
    let addr = ops_addr(&serve_proc).await;
    let want = r#"coderd_prebuilt_workspaces_resource_replacements_total{template_name="replacing",preset_name="small",organization_name="default"} 1"#;
    eventually("the replacement counted", || async {
        http_get(&addr, "/metrics").await.1.contains(want)
    })
    .await;
    let (_, body) = http_get(&addr, "/metrics").await;
    assert!(
        !body.contains(r#"resource_replacements_total{template_name="keeping""#),
        "{body}"
    );
}
