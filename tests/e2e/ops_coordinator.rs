//! The coordinator's operations surface with the real binary: `/metrics`
//! and `/readyz`, the prebuild reconciler (pools, pause/resume, backoff)
//! and the seed's queue runbook (pause, list pending prebuild jobs, cancel
//! them through `jobs cancel -`, resume).

mod health;
mod metrics;
mod reconciler;
mod runbook;

use std::path::Path;
use std::time::Duration;

use provisionerd::proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::procs::{self, Proc};
use crate::common::{Coord, TIMEOUT};

/// A template with one preset keeping `instances` prebuilds; prebuild jobs
/// are tagged `is_prebuild=true` (the seed's conditional workspace tags);
/// the apply runs `command`.
pub fn pool_template(root: &Path, name: &str, instances: u32, command: &str) -> std::path::PathBuf {
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
data "coder_workspace_owner" "me" {{}}

data "coder_workspace_preset" "small" {{
  name = "small"
  prebuilds {{
    instances = {instances}
  }}
}}

data "coder_workspace_tags" "prebuilds" {{
  count = data.coder_workspace_owner.me.name == "prebuilds" ? 1 : 0
  tags = {{
    "is_prebuild" = "true"
  }}
}}

resource "terraform_data" "w" {{
  provisioner "local-exec" {{
    command = "{command}"
  }}
}}
"#
    );
    super::template(root, name, &body)
}

/// `provisionerd serve` with `extra` flags, attached as a `Coord`.
pub async fn serve(root: &Path, extra: &[&str]) -> (Proc, Coord) {
    let data = root.join("data");
    let (p, url, token) = procs::serve_with(&data, "127.0.0.1:0", "60s", extra).await;
    let coord = Coord::attach(&url, &data, &token);
    (p, coord)
}

/// A daemon process that can fetch the stand-in coder provider.
pub fn daemon(coord: &Coord, key: &str, name: &str, root: &Path) -> Proc {
    procs::start_coder(&coord.url, key, name, root)
}

/// The operations endpoint's address, from the coordinator's log line.
pub async fn ops_addr(serve: &Proc) -> String {
    serve.wait_log("operations endpoint listening").await;
    let log = serve.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("operations endpoint listening"))
        .unwrap();
    let at = line.find("addr=").expect("addr= in the log line") + 5;
    line[at..].split_whitespace().next().unwrap().to_string()
}

/// GET `path` over plain HTTP/1.0: (status code, body).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut out))
        .await
        .expect("answer in time")
        .unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (code, body.unwrap_or_default())
}

/// Runs the CLI against `coord` with `stdin`: (exit code, stdout, stderr).
pub async fn cli(coord: &Coord, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_provisionerd"))
        .args(args)
        .env("PROVISIONERD_URL", &coord.url)
        .env("PROVISIONERD_TOKEN", &coord.token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn provisionerd");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .expect("CLI finished in time")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Live workspaces owned by `prebuilds`.
pub async fn prebuilds(coord: &Coord) -> Vec<proto::Workspace> {
    coord
        .admin()
        .await
        .list_workspaces(proto::ListWorkspacesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .workspaces
        .into_iter()
        .filter(|w| w.owner == "prebuilds")
        .collect()
}

/// Jobs initiated by `prebuilds`, oldest first.
pub async fn prebuild_jobs(coord: &Coord) -> Vec<proto::Job> {
    let mut jobs = coord
        .admin()
        .await
        .list_jobs(proto::ListJobsRequest {
            initiator: "prebuilds".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    jobs.reverse();
    jobs
}

/// Polls `check` every 100 ms until it holds; panics with `what` after
/// the timeout.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT * 2;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
