//! Measures what prebuilt workspaces buy a person: `workspaces create
//! --preset P --wait` that claims a prebuild against a fresh build of the
//! same template (`--preset none`), both as the CLI process a person runs.
//! The stack is real: release `provisionerd serve` (reconciling every
//! 500 ms), a general daemon and a prebuild-pool daemon (`is_prebuild=true`)
//! running real terraform with the stand-in coder provider. The template's
//! "VM" takes 10 s (a local-exec sleep) and does not depend on the owner, so
//! it runs on a prebuild's first create and on a fresh build, never on a
//! claim build. Before each timed create the pool is full and nothing else
//! runs, so the two figures compete for nothing.
//!
//!   PROVISIONERD_TEST_TERRAFORM=… PROVISIONERD_TEST_TF_CLI_CONFIG=… \
//!     cargo run --release --example bench_claim -- [ROUNDS]
//!
//! Prints a human table and one `JSON {...}` line (scripts/bench.sh reads it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use provisionerd::grpc::Credentials;
use provisionerd::proto::{self, admin_client::AdminClient};

#[path = "support/mod.rs"]
mod support;
use support::{Admin, Proc, binary, pct, wait_file};

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

data "coder_workspace_preset" "p" {
  name = "p"
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

resource "terraform_data" "vm" {
  provisioner "local-exec" {
    command = "sleep 10"
  }
}

resource "terraform_data" "home" {
  triggers_replace = [data.coder_workspace_owner.me.name]
}
"#;

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (scripts/bench.sh sets it)"))
}

/// Waits (180 s at most) until the pool of template `t` holds one eligible
/// prebuild and no create is in flight.
async fn wait_pool_full(admin: &mut Admin) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = admin
            .get_prebuild_status(proto::GetPrebuildStatusRequest {})
            .await?
            .into_inner();
        if let Some(p) = s.presets.iter().find(|p| p.template == "t") {
            if !p.error.is_empty() && p.failures > 0 {
                bail!("prebuild create failed: {}", p.error);
            }
            if p.eligible == 1 && p.in_flight == 0 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the prebuild pool did not fill within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `provisionerd workspaces create NAME … --preset PRESET --wait`;
/// returns its wall time in seconds and whether it claimed a prebuild.
fn timed_create(
    bin: &Path,
    url: &str,
    token: &Path,
    name: &str,
    preset: &str,
) -> Result<(f64, bool)> {
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["workspaces", "create", name, "--template", "t", "--owner"])
        .args([name, "--preset", preset, "--wait", "--log-format", "text"])
        .env("PROVISIONERD_URL", url)
        .env("PROVISIONERD_TOKEN_FILE", token)
        .stdin(Stdio::null())
        .output()
        .context("run workspaces create")?;
    let secs = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("workspaces create {name} failed: {stderr}");
    }
    Ok((secs, stderr.contains("claimed prebuild")))
}

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(3), |s| s.parse())?;
    let terraform = env("PROVISIONERD_TEST_TERRAFORM")?;
    let tfrc = env("PROVISIONERD_TEST_TF_CLI_CONFIG")?;
    let bin = binary()?;
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let quiet = |c: &mut Command| {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    let mut serve = Command::new(&bin);
    serve.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]);
    serve
        .arg(&data)
        .args(["--prebuild-reconcile-interval", "500ms"])
        .env("RUST_LOG", "warn");
    quiet(&mut serve);
    let coord = Proc(serve.spawn().context("start serve")?);
    let url = wait_file(&data.join("address")).await?;
    let token = wait_file(&data.join("admin-token")).await?;
    let channel = tonic::transport::Channel::from_shared(url.clone())?
        .connect()
        .await?;
    let mut admin = AdminClient::with_interceptor(
        channel,
        Credentials::bearer(&token).map_err(anyhow::Error::msg)?,
    );
    let mut daemons = Vec::new();
    for (name, tags) in [("general", vec![]), ("pool", vec![("is_prebuild", "true")])] {
        let key = admin
            .create_key(proto::CreateKeyRequest {
                name: name.into(),
                tags: tags
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            })
            .await?
            .into_inner()
            .secret;
        let mut start = Command::new(&bin);
        start.args(["start", "--name", name, "--url", &url, "--cache-dir"]);
        start
            .arg(tmp.path().join(format!("cache-{name}")))
            .args(["--terraform-path", &terraform])
            .env("PROVISIONERD_KEY", key.as_str())
            .env("TF_CLI_CONFIG_FILE", &tfrc)
            .env("RUST_LOG", "warn");
        quiet(&mut start);
        daemons.push(Proc(start.spawn().context("start daemon")?));
    }

    support::push_template(&mut admin, tmp.path(), "t", TEMPLATE).await?;
    let token_file = data.join("admin-token");
    let (mut claim, mut fresh) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        wait_pool_full(&mut admin).await?;
        let (secs, claimed) = timed_create(&bin, &url, &token_file, &format!("claim{i}"), "p")?;
        if !claimed {
            bail!("round {i}: the create with the preset built instead of claiming");
        }
        claim.push(secs);
        // The refill runs on the pool daemon: let it finish first.
        wait_pool_full(&mut admin).await?;
        let (secs, claimed) = timed_create(&bin, &url, &token_file, &format!("fresh{i}"), "none")?;
        if claimed {
            bail!("round {i}: the create without a preset claimed a prebuild");
        }
        fresh.push(secs);
    }
    for v in [&mut claim, &mut fresh] {
        v.sort_by(f64::total_cmp);
    }
    let (c50, f50) = (pct(&claim, 0.5), pct(&fresh, 0.5));
    println!("workspaces create --wait, template with a 10 s VM, {rounds} rounds (s)");
    println!(
        "  claim a prebuild (--preset p)      p50 {c50:>6.2}  max {:>6.2}",
        claim[claim.len() - 1]
    );
    println!(
        "  fresh build (--preset none)        p50 {f50:>6.2}  max {:>6.2}",
        fresh[fresh.len() - 1]
    );
    println!("  claim / fresh (p50)                {:>10.3}", c50 / f50);
    println!(
        "JSON {}",
        serde_json::json!({
            "claim_rounds": rounds,
            "claim_create_s": {"p50": c50, "max": claim[claim.len() - 1]},
            "fresh_create_s": {"p50": f50, "max": fresh[fresh.len() - 1]},
            "claim_over_fresh": c50 / f50,
        })
    );
    drop(daemons);
    drop(coord);
    Ok(())
}
