//! Measures throughput with real daemon processes: J workspace builds
//! queued, then P `provisionerd start` processes with
//! `scripts/noop-terraform` (three terraform spawns a build: init, plan,
//! apply). Jobs per second from the first job started to the last
//! finished, as the coordinator recorded them.
//!
//!   cargo build --release && cargo run --release --example bench_proc_throughput -- [--daemons P] [--jobs J]
//!
//! Prints a human summary and one `JSON {...}` line (scripts/bench.sh reads it).

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;

#[path = "support/mod.rs"]
mod support;
use support::procs::{self, Coordinator};

#[derive(Parser)]
struct Args {
    /// Daemon processes.
    #[arg(long, default_value_t = 20)]
    daemons: usize,
    /// Jobs queued before they start.
    #[arg(long, default_value_t = 500)]
    jobs: usize,
    /// Give up after this long from the daemons starting.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    limit: Duration,
}

const EMPTY: &str = "resource \"terraform_data\" \"w\" {}\n";

/// How many `apply` commands the no-op terraform has stamped.
fn applies(stamps: &Path) -> usize {
    std::fs::read_to_string(stamps)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.ends_with(" apply"))
        .count()
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Args::parse();
    let tmp = tempfile::tempdir()?;
    let mut c = Coordinator::start(&tmp.path().join("data")).await?;
    let key = c.key("pool", &[]).await?;
    let stamps = tmp.path().join("stamps");

    // One daemon imports the template, then goes, so the queue below
    // fills with nobody waiting.
    let importer = procs::daemon(&c.url, &key, "import", &tmp.path().join("c"), &stamps)?;
    support::push_template(&mut c.admin, tmp.path(), "t", EMPTY).await?;
    drop(importer);
    let created: HashSet<String> = procs::create_many(&c.admin, "t", "w", a.jobs, 16)
        .await?
        .into_iter()
        .collect();

    let t0 = Instant::now();
    let mut daemons = Vec::with_capacity(a.daemons);
    for i in 0..a.daemons {
        let cache = tmp.path().join(format!("c{i}"));
        // Round-robin over the replicas, when there are several.
        daemons.push(procs::daemon(
            c.url_at(i),
            &key,
            &format!("d-{i:03}"),
            &cache,
            &stamps,
        )?);
    }
    // The stamps file says when every apply ran without asking the
    // coordinator (polling it would cost the figure measured).
    let mut timed_out = false;
    while applies(&stamps) < a.jobs {
        if t0.elapsed() > a.limit {
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then until the coordinator has every report (a few ms more).
    let mut jobs = Vec::new();
    while !timed_out {
        jobs = procs::jobs(&mut c.admin, "").await?;
        jobs.retain(|j| created.contains(&j.id));
        if jobs.iter().all(|j| j.finished_at > 0) {
            break;
        }
        if t0.elapsed() > a.limit {
            timed_out = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if timed_out {
        jobs = procs::jobs(&mut c.admin, "").await?;
        jobs.retain(|j| created.contains(&j.id) && j.finished_at > 0);
    }
    drop(daemons);
    let failed: Vec<_> = jobs.iter().filter(|j| j.status != "succeeded").collect();
    if let Some(j) = failed.first() {
        bail!(
            "{} jobs did not succeed, e.g. {} {}: {}",
            failed.len(),
            j.id,
            j.status,
            j.error
        );
    }
    let first = jobs.iter().map(|j| j.started_at).min().unwrap_or(0);
    let last = jobs.iter().map(|j| j.finished_at).max().unwrap_or(first);
    let secs = ((last - first) as f64 / 1000.0).max(1e-3);
    let per_s = jobs.len() as f64 / secs;
    println!(
        "{} daemon processes: {} of {} jobs in {secs:.2} s: {per_s:.0} jobs/s{}",
        a.daemons,
        jobs.len(),
        a.jobs,
        if timed_out { ", limit reached" } else { "" }
    );
    println!(
        "JSON {}",
        serde_json::json!({"proc_throughput": {
            "daemons": a.daemons,
            "jobs": a.jobs,
            "done": jobs.len(),
            "seconds": secs,
            "jobs_per_s": per_s,
            "timed_out": timed_out,
            "limit_s": a.limit.as_secs_f64(),
        }})
    );
    Ok(())
}
