//! Template versions end to end with real terraform: a failed import
//! leaves the active version alone, a rollback is a promote, workspaces
//! keep their version unless they follow the active one (`always`) or are
//! updated, and an outdated workspace's stop and delete run with its own
//! version (`versions/rollback.rs`); the prebuild pool follows the active
//! version (`versions/pool.rs`); of two pushes in a row the second wins.

mod pool;
mod rollback;

use std::path::Path;

use provisionerd::proto::{self, Transition};

use crate::common::{Coord, Daemon};
use crate::template;

/// A template whose state names its version: the resource's input and an
/// output `version` both say `which`.
pub fn versioned(root: &Path, which: &str) -> std::path::PathBuf {
    let body = format!(
        r#"
resource "terraform_data" "w" {{
  input = "{which}"
}}

output "version" {{
  value = terraform_data.w.output
}}
"#
    );
    template(root, which, &body)
}

/// Pushes `dir` as a version of template `t` (`name` empty: generated).
pub async fn push(
    coord: &Coord,
    t: &str,
    dir: &Path,
    name: &str,
    no_activate: bool,
) -> proto::PushTemplateResponse {
    let header = proto::PushTemplateRequest {
        name: t.into(),
        version_name: name.into(),
        message: format!("from {}", dir.file_name().unwrap().to_string_lossy()),
        no_activate,
        ..Default::default()
    };
    let archive = provisionerd::archive::tar_dir(dir).unwrap();
    let parts = provisionerd::chunk::push_template_parts(header, &archive);
    coord
        .admin()
        .await
        .push_template(tokio_stream::iter(parts))
        .await
        .expect("push template")
        .into_inner()
}

/// The template's versions, newest first (archived ones too if asked).
pub async fn versions(
    coord: &Coord,
    t: &str,
    include_archived: bool,
) -> Vec<proto::TemplateVersion> {
    coord
        .admin()
        .await
        .list_template_versions(proto::ListTemplateVersionsRequest {
            template: t.into(),
            include_archived,
            ..Default::default()
        })
        .await
        .expect("list template versions")
        .into_inner()
        .versions
}

pub async fn promote(
    coord: &Coord,
    t: &str,
    v: &str,
) -> Result<proto::TemplateVersion, tonic::Status> {
    coord
        .admin()
        .await
        .promote_template_version(proto::PromoteTemplateVersionRequest {
            template: t.into(),
            version: v.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn archive(coord: &Coord, t: &str, v: &str) -> Result<proto::TemplateVersion, tonic::Status> {
    coord
        .admin()
        .await
        .archive_template_version(proto::ArchiveTemplateVersionRequest {
            template: t.into(),
            version: v.into(),
            unarchive: false,
        })
        .await
        .map(|r| r.into_inner())
}

/// Creates workspace `name` of template `t` (from `version` if not
/// empty) with `automatic_updates`; its first build's job id.
async fn create(
    coord: &Coord,
    name: &str,
    t: &str,
    version: &str,
    automatic_updates: &str,
) -> Result<String, tonic::Status> {
    coord
        .admin()
        .await
        .create_workspace(proto::CreateWorkspaceRequest {
            name: name.into(),
            template: t.into(),
            template_version: version.into(),
            automatic_updates: automatic_updates.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().job_id)
}

/// Builds `name` (`update`: `workspaces update`) and waits for success.
async fn build(coord: &Coord, name: &str, t: Transition, update: bool) -> proto::Job {
    let job = coord
        .admin()
        .await
        .build_workspace(proto::BuildWorkspaceRequest {
            name: name.into(),
            transition: t as i32,
            update,
            ..Default::default()
        })
        .await
        .expect("build workspace")
        .into_inner()
        .job_id;
    coord.wait_succeeded(&job).await
}

/// (version name, what its state's output says, outdated) of `name`.
async fn on(coord: &Coord, name: &str) -> (String, String, bool) {
    let ws = coord.workspace(name).await.unwrap();
    let out = ws.outputs.get("version").cloned().unwrap_or_default();
    (ws.template_version_name, out, ws.outdated)
}

fn on_(version: &str, out: &str, outdated: bool) -> (String, String, bool) {
    (version.into(), format!("\"{out}\""), outdated)
}

/// (name, status, active, workspaces) of each listed version.
fn summary(vs: &[proto::TemplateVersion]) -> Vec<(String, String, bool, u64)> {
    vs.iter()
        .map(|v| (v.name.clone(), v.status.clone(), v.active, v.workspaces))
        .collect()
}

fn row(name: &str, status: &str, active: bool, workspaces: u64) -> (String, String, bool, u64) {
    (name.into(), status.into(), active, workspaces)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_pushes_in_a_row_the_second_ends_active() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let coord = Coord::start(&root.join("data")).await;
    // Both pushed before any daemon runs: the first import surely
    // finishes (and activates) after the second push.
    let v1 = push(&coord, "app", &versioned(root, "one"), "", false).await;
    let v2 = push(&coord, "app", &versioned(root, "two"), "", false).await;
    let key = coord.create_key("k", &[]).await;
    let d = Daemon::start(&coord.url, &key, "d1", &root.join("c1"));
    let first = coord.wait_succeeded(&v1.job_id).await;
    let second = coord.wait_succeeded(&v2.job_id).await;
    assert!(
        first.finished_at <= second.started_at,
        "imported in push order"
    );
    let vs = versions(&coord, "app", false).await;
    assert_eq!(
        summary(&vs),
        [
            row("v2", "succeeded", true, 0),
            row("v1", "succeeded", false, 0)
        ]
    );
    // In pages of one: the cursor is the last version's id.
    let page = |after: String| {
        let coord = &coord;
        async move {
            coord
                .admin()
                .await
                .list_template_versions(proto::ListTemplateVersionsRequest {
                    template: "app".into(),
                    limit: 1,
                    after,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = page(String::new()).await;
    assert_eq!(summary(&first.versions), [row("v2", "succeeded", true, 0)]);
    assert_eq!(first.next_cursor, v2.template_version_id);
    let second = page(first.next_cursor).await;
    assert_eq!(
        summary(&second.versions),
        [row("v1", "succeeded", false, 0)]
    );
    assert_eq!(second.next_cursor, "", "the last page");
    coord
        .wait_succeeded(&create(&coord, "ws", "app", "", "").await.unwrap())
        .await;
    assert_eq!(on(&coord, "ws").await, on_("v2", "two", false));
    d.stop().await.unwrap();
    coord.stop().await;
}
