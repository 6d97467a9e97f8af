//! Template metadata read at push: bad templates refused with file:line,
//! `templates show`, and workspace tags routing the import.

use std::path::Path;

use provisionerd::proto;

use crate::common::{Coord, TIMEOUT};
use crate::template;

fn coder_prebuilds() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates/coder-prebuilds")
}

async fn push(coord: &Coord, name: &str, dir: &Path) -> Result<String, tonic::Status> {
    let header = proto::PushTemplateRequest {
        name: name.into(),
        ..Default::default()
    };
    coord
        .push_archive(header, &provisionerd::archive::tar_dir(dir).unwrap())
        .await
}

#[tokio::test]
async fn a_bad_schedule_is_refused_at_push_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let dir = template(
        tmp.path(),
        "bad",
        r#"
data "coder_workspace_preset" "p" {
  name = "p"
  prebuilds {
    instances = 1
    scheduling {
      timezone = "Europe/Nowhere"
      schedule {
        cron      = "* 8-18 * * 1-5"
        instances = 2
      }
    }
  }
}
"#,
    );
    let err = push(&coord, "bad", &dir).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let msg = err.message();
    assert!(msg.starts_with("push template \"bad\": "), "{msg}");
    assert!(msg.contains("main.tf:"), "{msg}");
    assert!(msg.contains("Europe/Nowhere"), "{msg}");
    // Nothing was stored: the template does not exist.
    let listed = coord
        .admin()
        .await
        .list_templates(proto::ListTemplatesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .templates;
    assert!(listed.is_empty());
    coord.stop().await;
}

#[tokio::test]
async fn templates_show_prints_parameters_tags_and_presets() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let import = push(&coord, "cp", &coder_prebuilds()).await.unwrap();
    // The import is routed by the workspace tags at their defaults: the
    // owner is nobody, so no is_prebuild tag; general daemons import it.
    assert!(coord.job(&import).await.tags.is_empty());

    let out = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_provisionerd"))
            .args(["templates", "show", "cp", "-o", "json", "--url", &coord.url])
            .env("PROVISIONERD_TOKEN", &coord.token)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("templates show timed out")
    .expect("run provisionerd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let meta = &v["meta"];
    let names: Vec<&str> = meta["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["region", "cpus", "dotfiles_repo"]);
    assert_eq!(meta["workspace_tags"][0]["key"], "is_prebuild");
    assert_eq!(meta["presets"][0]["name"], "Frankfurt, 4 cores");
    assert_eq!(meta["presets"][0]["prebuilds"]["instances"], 3);
    assert!(meta["readme"].as_str().is_some());

    let table = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisionerd"))
        .args(["templates", "show", "cp", "--url", &coord.url])
        .env("PROVISIONERD_TOKEN", &coord.token)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains(
            "region (string) = eu-west options: eu-west, us-east, ap-southeast immutable"
        ),
        "{text}"
    );
    assert!(text.contains("Frankfurt, 4 cores (default)"), "{text}");
    coord.stop().await;
}

/// A template written only in terraform's JSON syntax, whose workspace tag
/// goes through a local: pushed (the archive's only config file is a
/// `.tf.json`), routed by the local's value at import and per build, and
/// imported by real terraform with its JSON-declared variable set.
#[tokio::test]
async fn a_tf_json_template_routes_through_its_locals() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let dir = tmp.path().join("json");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf.json"),
        r#"{
  "terraform": {"required_providers": {"coder": {"source": "coder/coder"}}},
  "variable": {"pool": {"type": "string"}},
  "locals": {"pool": "${var.pool}-${data.coder_parameter.region.value}"},
  "data": {
    "coder_parameter": {"region": {"name": "region", "default": "eu", "mutable": true}},
    "coder_workspace_tags": {"t": {"tags": {"pool": "${local.pool}"}}}
  },
  "resource": {"terraform_data": {"w": {"input": "${local.pool}"}}}
}
"#,
    )
    .unwrap();
    let header = proto::PushTemplateRequest {
        name: "json".into(),
        variables: [("pool".to_string(), "gpu".to_string())].into(),
        ..Default::default()
    };
    let archive = provisionerd::archive::tar_dir(&dir).unwrap();
    let import = coord.push_archive(header, &archive).await.unwrap();
    let tags = coord.job(&import).await.tags;
    assert_eq!(tags.get("pool").map(String::as_str), Some("gpu-eu"));

    let key = coord.create_key("k", &[("pool", "gpu-eu")]).await;
    // Its terraform gets the stand-in coder provider.
    let daemon = crate::common::procs::start_coder(&coord.url, &key, "d1", tmp.path());
    coord.wait_succeeded(&import).await;

    let build = coord
        .admin()
        .await
        .create_workspace(proto::CreateWorkspaceRequest {
            name: "ws".into(),
            template: "json".into(),
            owner: "alice".into(),
            variables: [("pool".to_string(), "gpu".to_string())].into(),
            parameters: [("region".to_string(), "us".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .job_id;
    let tags = coord.job(&build).await.tags;
    assert_eq!(tags.get("pool").map(String::as_str), Some("gpu-us"));
    drop(daemon);
    coord.stop().await;
}
