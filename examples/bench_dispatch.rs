//! Measures job start with one idle daemon, as a user runs it: the release
//! `provisionerd serve` and `provisionerd start` as processes, and
//! a no-op terraform (`examples/noop_terraform.rs`, or `scripts/noop-terraform`
//! when that is not built: answers every command at once and stamps the
//! time it started) so only provisionerd's own cost shows. Per round: the
//! `CreateWorkspace` call's own time, and from its answer to terraform's
//! first command (`init`) starting in the daemon's work dir. After the
//! rounds, the idle RSS of both processes. On PostgreSQL replicas
//! (`support::engine`) the daemon's session is on the second replica and
//! the jobs are created through the first: the cross-replica path.
//!
//!   cargo build --release && cargo run --release --example bench_dispatch -- [ROUNDS]
//!
//! Prints a human table and one `JSON {...}` line (scripts/bench.sh reads it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

#[path = "support/mod.rs"]
mod support;
use support::procs::{self, Coordinator};
use support::{pct, wait_status};

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(50), |s| s.parse())?;
    let tmp = tempfile::tempdir()?;
    let mut coord = Coordinator::start(&tmp.path().join("data")).await?;
    let key = coord.key("bench", &[]).await?;
    let stamps = tmp.path().join("stamps");
    let cache = tmp.path().join("cache");
    // Its session on another replica than the creates (when there are).
    let daemon = procs::daemon(coord.url_at(1), &key, "bench", &cache, &stamps)?;
    let admin = &mut coord.admin;

    let empty = "resource \"terraform_data\" \"w\" {}\n";
    support::push_template(admin, tmp.path(), "t", empty).await?;

    let mut offset = std::fs::read_to_string(&stamps).map_or(0, |s| s.len());
    let (mut call, mut to_tf) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let before = now_us();
        let job = support::create_workspace(admin, &format!("w{i}")).await?;
        let returned = now_us();
        let (init, len) = procs::next_init(&stamps, offset, Duration::from_secs(30))
            .await?
            .context("terraform init never started")?;
        offset = len;
        call.push((returned - before) / 1000.0);
        to_tf.push((init - returned) / 1000.0);
        wait_status(admin, &job, "succeeded").await?;
        offset = std::fs::read_to_string(&stamps).map_or(offset, |s| s.len());
    }
    // Let both settle before reading their idle memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (coord_rss, daemon_rss) = (
        procs::mem_kib(coord.pid(), "VmRSS"),
        procs::mem_kib(daemon.0.id(), "VmRSS"),
    );
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
            "engine": support::engine::Engine::from_env()?.describe(),
            "create_call_ms": {"p50": pct(&call, 0.5), "p99": pct(&call, 0.99)},
            "dispatch_idle_ms": {"p50": pct(&to_tf, 0.5), "p99": pct(&to_tf, 0.99), "max": to_tf[to_tf.len() - 1]},
            "idle_rss_kib": {"coordinator": coord_rss, "daemon": daemon_rss},
        })
    );
    drop(daemon);
    drop(coord);
    Ok(())
}
