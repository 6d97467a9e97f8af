//! Measures job start with one idle daemon, as a user runs it: the release
//! `provisionerd serve` and `provisionerd start` as processes, and
//! a no-op terraform (`examples/noop_terraform.rs`, or `scripts/noop-terraform`
//! when that is not built: answers every command at once and stamps the
//! time it started) so only provisionerd's own cost shows. Per round: the
//! `CreateWorkspace` call's own time, and from its answer to terraform's
//! first command (`init`) starting in the daemon's work dir. After the
//! rounds, the idle RSS of both processes.
//!
//!   cargo build --release && cargo run --release --example bench_dispatch -- [ROUNDS]
//!
//! Prints a human table and one `JSON {...}` line (scripts/bench.sh reads it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use provisionerd::grpc::Credentials;
use provisionerd::proto::{self, admin_client::AdminClient};

#[path = "support/mod.rs"]
mod support;
use support::{Proc, binary, pct, wait_file, wait_status};

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Waits for the first `init` stamp after byte `from` of the stamps file;
/// returns its time (µs since the epoch) and the file's new length.
async fn next_init(stamps: &Path, from: usize) -> Result<(f64, usize)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(stamps).unwrap_or_default();
        if let Some(rest) = text.get(from..) {
            for line in rest.lines() {
                if let Some(t) = line.strip_suffix(" init") {
                    let secs: f64 = t.trim().parse().context("parse stamp")?;
                    return Ok((secs * 1e6, text.len()));
                }
            }
        }
        if Instant::now() > deadline {
            bail!("terraform init never started");
        }
        // Sub-millisecond polling: the figure is a few milliseconds.
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(50), |s| s.parse())?;
    let bin = binary()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let quiet = |c: &mut Command| {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    let mut serve = Command::new(&bin);
    serve.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]);
    serve.arg(&data).env("RUST_LOG", "warn");
    quiet(&mut serve);
    let coord = Proc(serve.spawn().context("start serve")?);
    let url = wait_file(&data.join("address")).await?;
    let token = wait_file(&data.join("admin-token")).await?;
    let channel = tonic::transport::Channel::from_shared(url.clone())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let mut admin = AdminClient::with_interceptor(
        channel,
        Credentials::bearer(&token).map_err(anyhow::Error::msg)?,
    );
    let key = admin
        .create_key(proto::CreateKeyRequest {
            name: "bench".into(),
            tags: Default::default(),
        })
        .await?
        .into_inner()
        .secret;
    let stamps = tmp.path().join("stamps");
    let mut start = Command::new(&bin);
    start.args(["start", "--name", "bench", "--url", &url, "--cache-dir"]);
    start
        .arg(tmp.path().join("cache"))
        .arg("--terraform-path")
        .arg(support::noop_terraform(root))
        .env("PROVISIONERD_KEY", key.as_str())
        .env("NOOP_TF_STAMPS", &stamps)
        .env("RUST_LOG", "warn");
    quiet(&mut start);
    let daemon = Proc(start.spawn().context("start daemon")?);

    let empty = "resource \"terraform_data\" \"w\" {}\n";
    support::push_template(&mut admin, tmp.path(), "t", empty).await?;

    let mut offset = std::fs::read_to_string(&stamps).map_or(0, |s| s.len());
    let (mut call, mut to_tf) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let before = now_us();
        let job = support::create_workspace(&mut admin, &format!("w{i}")).await?;
        let returned = now_us();
        let (init, len) = next_init(&stamps, offset).await?;
        offset = len;
        call.push((returned - before) / 1000.0);
        to_tf.push((init - returned) / 1000.0);
        wait_status(&mut admin, &job, "succeeded").await?;
        offset = std::fs::read_to_string(&stamps).map_or(offset, |s| s.len());
    }
    // Let both settle before reading their idle memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (coord_rss, daemon_rss) = (rss_kib(coord.0.id()), rss_kib(daemon.0.id()));
    for v in [&mut call, &mut to_tf] {
        v.sort_by(f64::total_cmp);
    }
    println!("job start with one idle daemon, {rounds} rounds (ms)");
    for (what, v) in [
        ("create call", &call),
        ("create returned → terraform started", &to_tf),
    ] {
        println!(
            "  {what:38} p50 {:>7.2}  p99 {:>7.2}  max {:>7.2}",
            pct(v, 0.5),
            pct(v, 0.99),
            v[v.len() - 1]
        );
    }
    println!(
        "  idle RSS: coordinator {} MiB, daemon {} MiB",
        coord_rss / 1024,
        daemon_rss / 1024
    );
    println!(
        "JSON {}",
        serde_json::json!({
            "rounds": rounds,
            "create_call_ms": {"p50": pct(&call, 0.5), "p99": pct(&call, 0.99)},
            "dispatch_idle_ms": {"p50": pct(&to_tf, 0.5), "p99": pct(&to_tf, 0.99), "max": to_tf[to_tf.len() - 1]},
            "idle_rss_kib": {"coordinator": coord_rss, "daemon": daemon_rss},
        })
    );
    drop(daemon);
    drop(coord);
    Ok(())
}
