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
