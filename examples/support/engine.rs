//! The database the benchmarks' coordinators use. By default one SQLite
//! coordinator (`procs::Coordinator::start`); with a PostgreSQL server in
//! `PROVISIONERD_BENCH_DATABASE_URL` (a URL as `scripts/postgres.sh`
//! prints; `scripts/bench.sh --postgres` sets it), several replicas of
//! `serve --database-url` sharing a schema of their own, so the same
//! benchmarks measure a cluster. Also the server's own CPU, when
//! `PROVISIONERD_BENCH_PG_DIR` names its `scripts/postgres.sh` dir.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::{Proc, binary, wait_file};

pub const DATABASE_ENV: &str = "PROVISIONERD_BENCH_DATABASE_URL";
/// How many replicas (default 3).
pub const REPLICAS_ENV: &str = "PROVISIONERD_BENCH_REPLICAS";
pub const PG_DIR_ENV: &str = "PROVISIONERD_BENCH_PG_DIR";

/// The admin token every replica is given (`--admin-token-file`).
pub const REPLICA_TOKEN: &str = "pda_bench_replicas_token_0123456789";

pub enum Engine {
    Sqlite,
    Postgres { server: String, replicas: usize },
}

impl Engine {
    pub fn from_env() -> Result<Engine> {
        let Some(server) = std::env::var(DATABASE_ENV).ok().filter(|s| !s.is_empty()) else {
            return Ok(Engine::Sqlite);
        };
        let replicas = match std::env::var(REPLICAS_ENV) {
            Ok(n) => n
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("{REPLICAS_ENV}={n}: not a positive number"))?,
            Err(_) => 3,
        };
        Ok(Engine::Postgres { server, replicas })
    }

    /// For titles: "SQLite" or "PostgreSQL ×3".
    pub fn describe(&self) -> String {
        match self {
            Engine::Sqlite => "SQLite".into(),
            Engine::Postgres { replicas, .. } => format!("PostgreSQL ×{replicas}"),
        }
    }
}

/// Starts `n` replicas of `serve --database-url` on a fresh schema of
/// `server` (named after `data`, a fresh temp dir, as the tests do), each
/// with its data dir `data/rI`, all with one admin token; returns their
/// processes and URLs, in order.
pub async fn start_replicas(
    server: &str,
    n: usize,
    data: &Path,
) -> Result<(Vec<Proc>, Vec<String>)> {
    let db = provisionerd::coordinator::store::testdb::url_on(server, data)
        .with_context(|| format!("make a schema for {} on {server}", data.display()))?;
    std::fs::create_dir_all(data)?;
    let token_file = data.join("admin-token");
    std::fs::write(&token_file, REPLICA_TOKEN)?;
    let (mut procs, mut urls) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let dir = data.join(format!("r{i}"));
        std::fs::create_dir_all(&dir)?;
        // Warnings to a file: a replica that refuses to start says why.
        let log_path = data.join(format!("r{i}.log"));
        let mut serve = Command::new(binary()?);
        serve
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .args(["--database-url", &db, "--admin-token-file"])
            .arg(&token_file)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?);
        let proc = serve
            .spawn()
            .with_context(|| format!("start provisionerd serve, replica {i}"))?;
        procs.push(Proc(proc));
        let url = wait_file(&dir.join("address")).await.with_context(|| {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            format!("replica {i} did not start: {}", log.trim())
        })?;
        urls.push(url);
    }
    Ok((procs, urls))
}

/// CPU ticks the PostgreSQL server has used so far: the postmaster, its
/// live processes (backends, writers), and those it has reaped;
/// `None` without `PROVISIONERD_BENCH_PG_DIR`.
pub fn pg_cpu_ticks() -> Option<u64> {
    let dir = std::env::var_os(PG_DIR_ENV)?;
    let pidfile = std::fs::read_to_string(Path::new(&dir).join("data/postmaster.pid")).ok()?;
    let master: u32 = pidfile.lines().next()?.trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{master}/stat")).ok()?;
    // utime, stime, cutime, cstime: fields 14 to 17 (11 to 14 after the
    // command name); the last two hold the reaped children's.
    let rest: Vec<u64> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse().ok())
        .collect();
    let mut total: u64 = rest.iter().sum();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The parent pid is the second field after the command name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(master) {
            total += super::procs::cpu_ticks(pid).unwrap_or(0);
        }
    }
    Some(total)
}
