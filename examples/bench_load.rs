//! Measures dispatch under load: N simulated daemons (one process, a few
//! HTTP/2 connections) under a key tagged `pool=sim`, and M pending jobs
//! tagged `pool=deep` (a template whose `coder_workspace_tags` says so)
//! that none of them can take. Then one real `provisionerd start` (untagged
//! key, `scripts/noop-terraform`) takes untagged jobs, one per round: the
//! time from the create call's answer to terraform's `init` starting.
//!
//! Also: how long the N daemons connecting at once take to settle (every
//! session Welcomed with its Acquire sent, and `ListDaemons` showing all N
//! `idle`), the coordinator's CPU over a window after that, when it went
//! quiet (the first second under 5% of a core: "idle" in `ListDaemons`
//! does not say the coordinator has finished handling their Acquires), and
//! its memory.
//! Every wait has a limit: a build that cannot keep up yields "> limit".
//! On PostgreSQL replicas (`support::engine`) the simulated daemons go
//! round-robin over them, the real daemon's session is on the second and
//! the jobs are created through the first; CPU is the replicas' sum,
//! memory the largest replica's.
//!
//!   cargo build --release && cargo run --release --example bench_load -- [--daemons N] [--jobs M] ...
//!
//! Prints a human summary and one `JSON {...}` line (scripts/bench.sh reads it).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use provisionerd::proto::{self, daemon_message::Msg as In};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[path = "support/mod.rs"]
mod support;
use support::procs::{self, Coordinator, now_us};
use support::{pct, sim};

#[derive(Parser)]
struct Args {
    /// Simulated daemons that match none of the queued jobs.
    #[arg(long, default_value_t = 1000)]
    daemons: usize,
    /// Pending jobs none of them (nor the real daemon) can take.
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,
    /// Jobs for the real daemon, one at a time.
    #[arg(long, default_value_t = 30)]
    rounds: usize,
    /// Simulated sessions per HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    per_channel: usize,
    /// Give up waiting for the daemons to settle after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    settle_limit: Duration,
    /// Give up on a round (job start, then its end) after this long.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    round_limit: Duration,
    /// How long the coordinator's CPU is measured once settled.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    cpu_window: Duration,
}

const EMPTY: &str = "resource \"terraform_data\" \"w\" {}\n";
const DEEP: &str = r#"
data "coder_workspace_tags" "t" {
  tags = {
    "pool" = "deep"
  }
}
resource "terraform_data" "w" {}
"#;

/// The largest replica's `field` of /proc/PID/status (KiB).
fn largest(pids: &[u32], field: &str) -> u64 {
    pids.iter()
        .map(|p| procs::mem_kib(*p, field))
        .max()
        .unwrap_or(0)
}

/// `None` (the limit passed) as JSON null.
fn secs(d: Option<Duration>) -> serde_json::Value {
    d.map_or(serde_json::Value::Null, |d| d.as_secs_f64().into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let tmp = tempfile::tempdir()?;
    let mut c = Coordinator::start(&tmp.path().join("data")).await?;
    let live_key = c.key("live", &[]).await?;
    let sim_key = c.key("sim", &[("pool", "sim")]).await?;
    let stamps = tmp.path().join("stamps");

    // Two daemons import the templates (the literal workspace tag routes
    // the deep template's import too), then go: while they waited, every
    // create below would make the coordinator look for a job for them.
    let deep_key = c.key("deep", &[("pool", "deep")]).await?;
    let importers = [
        procs::daemon(
            &c.url,
            &live_key,
            "import-t",
            &tmp.path().join("c0"),
            &stamps,
        )?,
        procs::daemon(
            &c.url,
            &deep_key,
            "import-deep",
            &tmp.path().join("c1"),
            &stamps,
        )?,
    ];
    support::push_template(&mut c.admin, tmp.path(), "t", EMPTY).await?;
    support::push_template(&mut c.admin, tmp.path(), "deep", DEEP).await?;
    drop(importers);

    let t = Instant::now();
    let deep = procs::create_many(&c.admin, "deep", "deep-", a.jobs, 16).await?;
    let create_s = t.elapsed().as_secs_f64();
    if let Some(id) = deep.first() {
        let job = c
            .admin
            .get_job(proto::GetJobRequest { id: id.clone() })
            .await?;
        let tags = job.into_inner().tags;
        if tags.get("pool").map(String::as_str) != Some("deep") {
            bail!("deep-queue job {id} is tagged {tags:?}, not pool=deep");
        }
    }
    println!(
        "{} pending jobs (pool=deep) created in {create_s:.1} s ({:.0}/s)",
        a.jobs,
        a.jobs as f64 / create_s
    );

    // All daemons at once; each reports when its Acquire is sent.
    let n = c.urls.len();
    let mut channels = Vec::with_capacity(n);
    for r in 0..n {
        let sessions = a.daemons.div_ceil(n);
        channels.push(sim::channels(c.url_at(r), sessions, a.per_channel).await?);
    }
    let stop = CancellationToken::new();
    let (ready_tx, mut ready_rx) = mpsc::channel::<Result<()>>(a.daemons.max(1));
    let mut idle = tokio::task::JoinSet::new();
    let t0 = Instant::now();
    for i in 0..a.daemons {
        let on = &channels[i % n];
        let (ch, key) = (on[(i / n) % on.len()].clone(), sim_key.clone());
        // Longer than the settle wait: a slow open is "not settled", only
        // a refused one is an error.
        let limit = a.settle_limit + Duration::from_secs(30);
        let (ready, stop) = (ready_tx.clone(), stop.clone());
        idle.spawn(async move {
            let opened = async {
                let s = sim::Session::open(&ch, &key, &format!("sim-{i:05}"), limit).await?;
                s.send(In::Acquire(proto::Acquire {})).await?;
                Ok(s)
            };
            // A session still opening when the benchmark ends (the build
            // under test could not keep up) is given up, not waited for.
            let opened = tokio::select! {
                _ = stop.cancelled() => return Ok(0),
                r = opened => r,
            };
            match opened {
                Ok(s) => {
                    let _ = ready.send(Ok(())).await;
                    sim::idle(s, stop).await
                }
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                    Ok(0)
                }
            }
        });
    }
    drop(ready_tx);
    let deadline = t0 + a.settle_limit;
    let mut acquired = 0;
    while acquired < a.daemons {
        match tokio::time::timeout_at(deadline.into(), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => acquired += 1,
            Ok(Some(Err(e))) => bail!("simulated daemon: {e:#}"),
            Ok(None) | Err(_) => break,
        }
    }
    let all_acquired = (acquired == a.daemons).then(|| t0.elapsed());
    let left = deadline.saturating_duration_since(Instant::now());
    let listed = all_acquired.is_some()
        && procs::wait_daemons(&mut c.admin, "sim-", "idle", a.daemons, left).await?;
    let settle = listed.then(|| t0.elapsed());
    match settle {
        Some(d) => println!("{} daemons settled in {:.2} s", a.daemons, d.as_secs_f64()),
        None => println!(
            "{} daemons: not settled within {:?} ({acquired} sent Acquire)",
            a.daemons, a.settle_limit
        ),
    }

    let pids = c.pids();
    let cpu = procs::cpu_after(&pids, t0, a.cpu_window, settle.map(|_| deadline)).await?;
    let cpu_pct = cpu.pct;
    match cpu.quiet {
        Some(d) => println!(
            "coordinator quiet (< {}% of a core for 1 s) {:.2} s after the daemons connected",
            procs::QUIET_PCT,
            d.as_secs_f64()
        ),
        None => println!("coordinator not quiet within {:?}", a.settle_limit),
    }
    let (rss, hwm) = (largest(&pids, "VmRSS"), largest(&pids, "VmHWM"));
    println!(
        "coordinator after settling: {cpu_pct:.1}% of a core over {:?}, RSS {} MiB (peak {} MiB)",
        a.cpu_window,
        rss / 1024,
        hwm / 1024
    );

    let live = procs::daemon(
        c.url_at(1),
        &live_key,
        "live",
        &tmp.path().join("c2"),
        &stamps,
    )?;
    let rounds = dispatch_rounds(&mut c, &a, &stamps).await?;
    let (hwm_end, rss_end) = (largest(&pids, "VmHWM"), largest(&pids, "VmRSS"));

    stop.cancel();
    let mut stray = 0;
    while let Some(r) = idle.join_next().await {
        stray += r??;
    }
    drop(live);
    let mut ms = rounds.ms.clone();
    ms.sort_by(f64::total_cmp);
    let stat = |p: f64| (!ms.is_empty()).then(|| pct(&ms, p));
    match (rounds.timed_out, stat(0.5)) {
        (false, Some(p50)) => println!(
            "matching job: create returned → terraform started: first {:.2} ms, p50 {p50:.2}, p99 {:.2}, max {:.2} ({} rounds)",
            rounds.ms[0],
            pct(&ms, 0.99),
            ms[ms.len() - 1],
            ms.len()
        ),
        _ => println!(
            "matching job: round {} did not start within {:?} ({} done)",
            ms.len() + 1,
            a.round_limit,
            ms.len()
        ),
    }
    if stray > 0 {
        bail!("simulated daemons were offered {stray} jobs they cannot take");
    }
    println!(
        "JSON {}",
        serde_json::json!({"load": {
            "daemons": a.daemons,
            "jobs": a.jobs,
            "create_per_s": a.jobs as f64 / create_s,
            "settle_s": secs(settle),
            "acquired_s": secs(all_acquired),
            "settle_limit_s": a.settle_limit.as_secs_f64(),
            "cpu_pct": cpu_pct,
            "quiet_s": secs(cpu.quiet),
            "cpu_window_s": a.cpu_window.as_secs_f64(),
            "rss_kib": rss,
            "hwm_kib": hwm.max(hwm_end),
            "rss_end_kib": rss_end,
            "dispatch_ms": {
                "first": rounds.ms.first(),
                "p50": stat(0.5),
                "p99": stat(0.99),
                "max": ms.last(),
                "rounds": ms.len(),
                "timed_out": rounds.timed_out,
                "limit_ms": a.round_limit.as_millis() as u64,
            },
        }})
    );
    Ok(())
}

struct Rounds {
    /// Create returned → terraform started, per finished round, in order.
    ms: Vec<f64>,
    /// A round passed `--round-limit` (and ended the rounds).
    timed_out: bool,
}

/// The real daemon's rounds: each creates an untagged workspace build and
/// waits for terraform to start, then for the job to succeed.
async fn dispatch_rounds(c: &mut Coordinator, a: &Args, stamps: &Path) -> Result<Rounds> {
    let mut r = Rounds {
        ms: Vec::new(),
        timed_out: false,
    };
    // Rounds start once the daemon is connected (not while it starts).
    if !procs::wait_daemons(&mut c.admin, "live", "idle", 1, a.round_limit).await? {
        r.timed_out = true;
        return Ok(r);
    }
    let mut offset = std::fs::read_to_string(stamps).map_or(0, |s| s.len());
    for i in 0..a.rounds {
        let job = support::create_workspace(&mut c.admin, &format!("w{i}")).await?;
        let returned = now_us();
        let Some((init, _)) = procs::next_init(stamps, offset, a.round_limit).await? else {
            r.timed_out = true;
            break;
        };
        if !procs::wait_job(&mut c.admin, &job, "succeeded", a.round_limit).await? {
            r.timed_out = true;
            break;
        }
        r.ms.push((init - returned) / 1000.0);
        offset = std::fs::read_to_string(stamps).map_or(offset, |s| s.len());
    }
    Ok(r)
}
