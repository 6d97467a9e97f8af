//! Measures the coordinator's own throughput: J workspace builds queued,
//! then S simulated daemons (one process, `support::sim`) that on each
//! offer at once acknowledge, confirm, fetch the input and finish
//! succeeded. Jobs per second from the first offer to the last finish,
//! the coordinator's CPU meanwhile, and a check that every job ran
//! exactly once (each offered to one daemon only, and the coordinator
//! lists each succeeded, run by a simulated daemon). On PostgreSQL
//! replicas (`support::engine`) the daemons and the creates go
//! round-robin over them; each replica's CPU and the server's are reported.
//!
//!   cargo build --release && cargo run --release --example bench_sim_throughput -- [--daemons S] [--jobs J]
//!
//! Prints a human summary and one `JSON {...}` line (scripts/bench.sh reads it).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[path = "support/mod.rs"]
mod support;
use support::procs::{self, Coordinator};
use support::{engine, sim};

#[derive(Parser)]
struct Args {
    /// Simulated daemons.
    #[arg(long, default_value_t = 50)]
    daemons: usize,
    /// Jobs queued before they connect.
    #[arg(long, default_value_t = 2000)]
    jobs: usize,
    /// Simulated sessions per HTTP/2 connection.
    #[arg(long, default_value_t = 25)]
    per_channel: usize,
    /// Give up after this long from the daemons connecting.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    limit: Duration,
}

const EMPTY: &str = "resource \"terraform_data\" \"w\" {}\n";

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let tmp = tempfile::tempdir()?;
    let mut c = Coordinator::start(&tmp.path().join("data")).await?;
    let key = c.key("sim", &[]).await?;
    let open_limit = Duration::from_secs(30);

    // One simulated daemon imports the template, then goes, so the queue
    // below fills with nobody waiting.
    // Each replica's connections, for the daemons round-robin over them.
    let n = c.urls.len();
    let mut channels = Vec::with_capacity(n);
    for r in 0..n {
        let sessions = a.daemons.div_ceil(n);
        channels.push(sim::channels(c.url_at(r), sessions, a.per_channel).await?);
    }
    {
        let s = sim::Session::open(&channels[0][0], &key, "import", open_limit).await?;
        let (tx, mut rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let w = tokio::spawn(sim::worker(s, tx, stop.clone()));
        support::push_template(&mut c.admin, tmp.path(), "t", EMPTY).await?;
        tokio::time::timeout(open_limit, rx.recv())
            .await
            .context("import: the simulated daemon never finished it")?;
        stop.cancel();
        w.await??;
    }
    let t = Instant::now();
    let mut admins = Vec::with_capacity(n);
    for r in 0..n {
        admins.push(c.admin_at(r).await?);
    }
    let created = procs::create_many_on(&admins, "t", "w", a.jobs, 16).await?;
    let create_s = t.elapsed().as_secs_f64();
    println!(
        "{} jobs queued in {create_s:.1} s ({:.0}/s)",
        a.jobs,
        a.jobs as f64 / create_s
    );

    let pids = c.pids();
    let ticks = pids
        .iter()
        .map(|p| procs::cpu_ticks(*p))
        .collect::<Result<Vec<_>>>()?;
    let pg_ticks = engine::pg_cpu_ticks();
    let stop = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(1024);
    let mut workers = tokio::task::JoinSet::new();
    let deadline = tokio::time::Instant::now() + a.limit;
    for i in 0..a.daemons {
        let on = &channels[i % n];
        let (ch, key) = (on[(i / n) % on.len()].clone(), key.clone());
        let (tx, stop) = (tx.clone(), stop.clone());
        workers.spawn(async move {
            let s = sim::Session::open(&ch, &key, &format!("sim-{i:03}"), open_limit).await?;
            sim::worker(s, tx, stop).await
        });
    }
    drop(tx);
    let mut ran = Vec::with_capacity(a.jobs);
    let mut timed_out = false;
    while ran.len() < a.jobs {
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) => ran.push(r),
                None => break,
            },
            Some(w) = workers.join_next() => w??,
            _ = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break;
            }
        }
    }
    let mut busy = Vec::with_capacity(n);
    for (pid, t) in pids.iter().zip(&ticks) {
        busy.push((procs::cpu_ticks(*pid)? - t) as f64 / procs::TICKS_PER_SEC);
    }
    let pg_busy = pg_ticks
        .zip(engine::pg_cpu_ticks())
        .map(|(a, b)| (b - a) as f64 / procs::TICKS_PER_SEC);
    stop.cancel();
    while let Some(w) = workers.join_next().await {
        w??;
    }
    if ran.is_empty() {
        bail!("no job ran within {:?}", a.limit);
    }
    let first = ran
        .iter()
        .map(|r| r.offered)
        .min()
        .unwrap_or_else(Instant::now);
    let last = ran.iter().map(|r| r.finished).max().unwrap_or(first);
    let secs = (last - first).as_secs_f64().max(1e-6);
    let per_s = ran.len() as f64 / secs;
    let replica_pct: Vec<f64> = busy.iter().map(|b| 100.0 * b / secs).collect();
    let cpu_pct: f64 = replica_pct.iter().sum();
    let pg_pct = pg_busy.map(|b| 100.0 * b / secs);

    // Exactly once: no job offered twice, and the coordinator's record
    // agrees that each ran, succeeded, on a simulated daemon.
    let mut seen = HashSet::new();
    let duplicates = ran.iter().filter(|r| !seen.insert(&r.job_id)).count();
    let want: HashSet<&String> = created.iter().collect();
    let stray = seen.iter().filter(|id| !want.contains(*id)).count();
    let listed: HashMap<String, String> = procs::jobs(&mut c.admin, "succeeded")
        .await?
        .into_iter()
        .map(|j| (j.id, j.daemon))
        .collect();
    let recorded = created
        .iter()
        .filter(|id| listed.get(*id).is_some_and(|d| d.starts_with("sim-")))
        .count();
    println!(
        "{} simulated daemons: {} of {} jobs in {secs:.2} s: {per_s:.0} jobs/s (coordinator {}% of a core{}){}",
        a.daemons,
        ran.len(),
        a.jobs,
        replica_pct
            .iter()
            .map(|p| format!("{p:.0}"))
            .collect::<Vec<_>>()
            .join("/"),
        pg_pct.map_or(String::new(), |p| format!(", PostgreSQL {p:.0}%")),
        if timed_out { ", limit reached" } else { "" }
    );
    println!(
        "JSON {}",
        serde_json::json!({"sim_throughput": {
            "daemons": a.daemons,
            "jobs": a.jobs,
            "done": ran.len(),
            "seconds": secs,
            "jobs_per_s": per_s,
            "cpu_pct": cpu_pct,
            "replica_cpu_pct": replica_pct,
            "pg_cpu_pct": pg_pct,
            "create_per_s": a.jobs as f64 / create_s,
            "timed_out": timed_out,
            "limit_s": a.limit.as_secs_f64(),
            "duplicates": duplicates,
            "recorded_succeeded": recorded,
        }})
    );
    if duplicates > 0 || stray > 0 {
        bail!("{duplicates} jobs were offered twice, {stray} offered jobs were not ours");
    }
    if !timed_out && recorded != a.jobs {
        bail!(
            "the coordinator lists {recorded} of {} jobs succeeded on a simulated daemon",
            a.jobs
        );
    }
    Ok(())
}
