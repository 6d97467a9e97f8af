//! Measures log throughput end to end, as a user runs it: the release
//! `provisionerd serve` and `provisionerd start` as processes, and
//! `scripts/noop-terraform` with `NOOP_TF_LINES` (its `apply` prints that
//! many `-json` provisioner lines as fast as awk can) so only provisionerd's
//! own cost shows.
//!
//! Cases: one job of LINES lines on one daemon, then JOBS jobs of
//! LINES/JOBS lines each, at once, on JOBS daemons. Each is timed from the
//! first create call to the last job succeeded; then every job's stored
//! lines are read back through the Admin API (`StreamJobLogs`): the flood
//! lines must be exactly 1..=N in order, and the stream as long as the
//! job's `log_count`. Peak RSS (VmHWM) of the coordinator and the largest
//! daemon's, per case (fresh processes each). On PostgreSQL replicas
//! (`support::engine`) everything goes through the first replica.
//!
//!   cargo build --release && cargo run --release --example bench_logs -- [LINES] [JOBS]
//!
//! `PROVISIONERD_BENCH_BIN` runs another `provisionerd` binary (an older
//! build, to compare). Prints a human table and one `JSON {...}` line
//! (scripts/bench.sh reads it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use provisionerd::proto;
use tokio_stream::StreamExt;

#[path = "support/mod.rs"]
mod support;
use support::procs::Coordinator;
use support::{Admin, Proc, binary};

/// How long one case may take before the benchmark gives up.
const CASE_LIMIT: Duration = Duration::from_secs(600);

/// Peak resident memory of `pid` in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) `pid` has used, its children excluded.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces); utime and
    // stime are the 14th and 15th of the line, in clock ticks (100 Hz).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    tick(11).zip(tick(12)).map_or(0.0, |(u, s)| (u + s) / 100.0)
}

struct Case {
    jobs: usize,
    lines_each: u64,
    secs: f64,
    coord_kib: u64,
    daemon_kib: u64,
    /// CPU seconds of the coordinator, and of all daemons together.
    coord_cpu: f64,
    daemon_cpu: f64,
}

impl Case {
    fn lines_per_sec(&self) -> f64 {
        (self.jobs as u64 * self.lines_each) as f64 / self.secs
    }
}

/// Polls (20 ms apart) until job `id` ended; fails unless it succeeded.
async fn wait_succeeded(admin: &mut Admin, id: &str, deadline: Instant) -> Result<()> {
    loop {
        let job = admin
            .get_job(proto::GetJobRequest { id: id.into() })
            .await?
            .into_inner();
        match job.status.as_str() {
            "succeeded" => return Ok(()),
            "failed" | "canceled" => bail!("job {id} ended {} ({})", job.status, job.error),
            _ if Instant::now() > deadline => bail!("job {id} still {} at the limit", job.status),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Reads job `id`'s stored lines back: the flood lines must be exactly
/// `flood 1..=want` in order, and the stream as long as `log_count`.
async fn check_stored(admin: &mut Admin, id: &str, want: u64) -> Result<()> {
    let log_count = admin
        .get_job(proto::GetJobRequest { id: id.into() })
        .await?
        .into_inner()
        .log_count;
    let mut stream = admin
        .stream_job_logs(proto::StreamJobLogsRequest {
            job_id: id.into(),
            after_seq: 0,
            follow: false,
        })
        .await?
        .into_inner();
    let (mut read, mut flood) = (0u64, 0u64);
    while let Some(line) = stream.next().await {
        let line = line?;
        read += 1;
        if line.seq != read {
            bail!("job {id}: line {read} has seq {}", line.seq);
        }
        if let Some(i) = line.output.split("(local-exec): flood ").nth(1) {
            flood += 1;
            if i != flood.to_string() {
                bail!("job {id}: flood line {flood} reads {:?}", line.output);
            }
        }
    }
    if flood != want || read != log_count {
        bail!(
            "job {id}: {flood} flood lines stored (want {want}), {read} lines read, log_count {log_count}"
        );
    }
    Ok(())
}

/// One case on fresh processes: `jobs` jobs of `lines_each` lines at once,
/// one daemon each.
async fn run_case(jobs: usize, lines_each: u64) -> Result<Case> {
    let bin = binary()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir()?;
    let mut c = Coordinator::start(&tmp.path().join("data")).await?;
    let key = c.key("bench", &[]).await?;
    let (url, coord) = (c.url.clone(), c.pid());
    let admin = &mut c.admin;
    let quiet = |c: &mut Command| {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    let mut daemons = Vec::new();
    for d in 0..jobs {
        let mut start = Command::new(&bin);
        let name = format!("bench{d}");
        start.args(["start", "--name", &name, "--url", &url, "--cache-dir"]);
        start
            .arg(tmp.path().join(&name))
            .arg("--terraform-path")
            .arg(root.join("scripts/noop-terraform"))
            .env("PROVISIONERD_KEY", key.as_str())
            .env("NOOP_TF_LINES", lines_each.to_string())
            .env("RUST_LOG", "warn");
        quiet(&mut start);
        daemons.push(Proc(start.spawn().context("start daemon")?));
    }
    let empty = "resource \"terraform_data\" \"w\" {}\n";
    support::push_template(admin, tmp.path(), "t", empty).await?;
    // Every daemon connected and idle before the clock starts, so each
    // takes one job.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let idle = admin
            .list_daemons(proto::ListDaemonsRequest::default())
            .await?
            .into_inner()
            .daemons
            .iter()
            .filter(|d| d.status == "idle")
            .count();
        if idle == jobs {
            break;
        }
        if Instant::now() > deadline {
            bail!("{idle} of {jobs} daemons idle after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    let mut ids = Vec::new();
    for j in 0..jobs {
        ids.push(support::create_workspace(admin, &format!("w{j}")).await?);
    }
    let deadline = started + CASE_LIMIT;
    for id in &ids {
        wait_succeeded(admin, id, deadline).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let coord_kib = peak_rss_kib(coord);
    let daemon_kib = daemons
        .iter()
        .map(|d| peak_rss_kib(d.0.id()))
        .max()
        .unwrap_or(0);
    let coord_cpu = cpu_secs(coord);
    let daemon_cpu = daemons.iter().map(|d| cpu_secs(d.0.id())).sum();
    for id in &ids {
        check_stored(admin, id, lines_each).await?;
    }
    drop(daemons);
    drop(c);
    Ok(Case {
        jobs,
        lines_each,
        secs,
        coord_kib,
        daemon_kib,
        coord_cpu,
        daemon_cpu,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let lines: u64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let jobs: usize = args.next().map_or(Ok(10), |s| s.parse())?;
    if lines == 0 || jobs == 0 {
        bail!("bench_logs: LINES and JOBS must be positive");
    }
    let one = run_case(1, lines).await?;
    let many = run_case(jobs, lines / jobs as u64).await?;
    println!("log throughput, create → every job succeeded, every line checked");
    for c in [&one, &many] {
        println!(
            "  {:>2} job(s) × {:>9} lines  {:>7.2} s  {:>9.0} lines/s  peak RSS coordinator {:>5.1} MiB, daemon {:>5.1} MiB",
            c.jobs,
            c.lines_each,
            c.secs,
            c.lines_per_sec(),
            c.coord_kib as f64 / 1024.0,
            c.daemon_kib as f64 / 1024.0
        );
        println!(
            "  {:>27}  CPU: coordinator {:.2} s, daemon(s) {:.2} s",
            "", c.coord_cpu, c.daemon_cpu
        );
    }
    let json = |c: &Case| {
        serde_json::json!({
            "jobs": c.jobs,
            "lines_each": c.lines_each,
            "secs": c.secs,
            "lines_per_sec": c.lines_per_sec(),
            "peak_rss_kib": {"coordinator": c.coord_kib, "daemon": c.daemon_kib},
            "cpu_s": {"coordinator": c.coord_cpu, "daemons": c.daemon_cpu},
        })
    };
    println!(
        "JSON {}",
        serde_json::json!({ "logs": { "one": json(&one), "many": json(&many) } })
    );
    Ok(())
}
