//! The release binary as processes for the benchmarks (`provisionerd
//! serve` and `provisionerd start` with `scripts/noop-terraform`), what
//! they cost (CPU ticks and memory from /proc), and the admin calls the
//! benchmarks make in bulk: many creates at once, every page of a list.
//! Every wait takes its limit from the caller: a slow build under test
//! must end the benchmark with a figure "> limit", never hang it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use provisionerd::grpc::Credentials;
use provisionerd::proto::{self, admin_client::AdminClient};

use super::engine::{self, Engine};
use super::{Admin, Proc, binary, wait_file};

/// Linux reports /proc/PID/stat times in USER_HZ, which is 100 on every
/// architecture the kernel's ABI fixes it for.
pub const TICKS_PER_SEC: f64 = 100.0;

/// `provisionerd serve` on a free port with its own data dir, and an admin
/// client for it; or, on PostgreSQL (see [`engine::DATABASE_ENV`]), several
/// replicas of it, the admin client on the first.
pub struct Coordinator {
    /// The first replica's process (the only one on SQLite).
    pub proc: Proc,
    /// The first replica's URL.
    pub url: String,
    pub admin: Admin,
    /// Every replica's process after the first, and every replica's URL.
    pub others: Vec<Proc>,
    pub urls: Vec<String>,
}

impl Coordinator {
    /// One SQLite coordinator under `data`, or on PostgreSQL (see
    /// [`engine::DATABASE_ENV`]) replicas with data dirs under it.
    pub async fn start(data: &Path) -> Result<Coordinator> {
        match Engine::from_env()? {
            Engine::Sqlite => Self::start_sqlite(data).await,
            Engine::Postgres { server, replicas } => {
                let (mut procs, urls) = engine::start_replicas(&server, replicas, data).await?;
                let admin = admin(&urls[0], engine::REPLICA_TOKEN).await?;
                let proc = procs.remove(0);
                Ok(Coordinator {
                    proc,
                    url: urls[0].clone(),
                    admin,
                    others: procs,
                    urls,
                })
            }
        }
    }

    async fn start_sqlite(data: &Path) -> Result<Coordinator> {
        let mut serve = Command::new(binary()?);
        serve.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]);
        serve.arg(data).env("RUST_LOG", "warn");
        quiet(&mut serve);
        let proc = Proc(serve.spawn().context("start provisionerd serve")?);
        let url = wait_file(&data.join("address")).await?;
        let token = wait_file(&data.join("admin-token")).await?;
        let admin = admin(&url, &token).await?;
        Ok(Coordinator {
            proc,
            urls: vec![url.clone()],
            url,
            admin,
            others: Vec::new(),
        })
    }

    /// Replica `i`'s URL, round-robin (always the one on SQLite).
    pub fn url_at(&self, i: usize) -> &str {
        &self.urls[i % self.urls.len()]
    }

    /// An admin client on replica `i` (round-robin, as [`Self::url_at`]).
    pub async fn admin_at(&self, i: usize) -> Result<Admin> {
        if i.is_multiple_of(self.urls.len()) {
            return Ok(self.admin.clone());
        }
        // Only replicas get here: their token is the one they were given.
        admin(self.url_at(i), engine::REPLICA_TOKEN).await
    }

    /// Every replica's process id, the first first.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(&self.proc)
            .chain(&self.others)
            .map(|p| p.0.id())
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// Creates provisioner key `name` with `tags`; returns its secret.
    pub async fn key(&mut self, name: &str, tags: &[(&str, &str)]) -> Result<String> {
        let req = proto::CreateKeyRequest {
            name: name.into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        Ok(self.admin.create_key(req).await?.into_inner().secret)
    }
}

pub(super) async fn admin(url: &str, token: &str) -> Result<Admin> {
    let channel = tonic::transport::Channel::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connect to the coordinator at {url}"))?;
    Ok(AdminClient::with_interceptor(
        channel,
        Credentials::bearer(token).map_err(anyhow::Error::msg)?,
    ))
}

fn quiet(c: &mut Command) {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
}

/// `provisionerd start` named `name` with the no-op terraform, its cache
/// under `cache`; the terraform stand-in stamps each command into `stamps`
/// (appends of one short line: many daemons may share the file).
pub fn daemon(url: &str, key: &str, name: &str, cache: &Path, stamps: &Path) -> Result<Proc> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut start = Command::new(binary()?);
    start.args(["start", "--name", name, "--url", url, "--cache-dir"]);
    start
        .arg(cache)
        .arg("--terraform-path")
        .arg(super::noop_terraform(root))
        .env("PROVISIONERD_KEY", key)
        .env("NOOP_TF_STAMPS", stamps)
        .env("RUST_LOG", "warn");
    quiet(&mut start);
    Ok(Proc(
        start
            .spawn()
            .with_context(|| format!("start daemon {name}"))?,
    ))
}

/// User plus system CPU time of `pid` so far, in ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat: field {} missing", i + 3))
    };
    // utime and stime are fields 14 and 15; this slice starts at field 3.
    Ok(field(11)? + field(12)?)
}

/// `field` of /proc/PID/status in KiB (`VmRSS`, `VmHWM`); 0 if absent.
pub fn mem_kib(pid: u32, field: &str) -> u64 {
    let prefix = format!("{field}:");
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Microseconds since the epoch (terraform's stamps use the same clock).
pub fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Creates workspaces `{prefix}{i}` for i in 0..n from `template`,
/// `concurrency` calls at a time; returns their jobs' ids in order.
pub async fn create_many(
    admin: &Admin,
    template: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Result<Vec<String>> {
    create_many_on(
        std::slice::from_ref(admin),
        template,
        prefix,
        n,
        concurrency,
    )
    .await
}

/// [`create_many`] through several replicas' admin clients: workspace
/// `i` through `admins[i % len]`.
pub async fn create_many_on(
    admins: &[Admin],
    template: &str,
    prefix: &str,
    n: usize,
    concurrency: usize,
) -> Result<Vec<String>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (admins, next) = (admins.to_vec(), next.clone());
        let (template, prefix) = (template.to_string(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(made);
                }
                let req = proto::CreateWorkspaceRequest {
                    name: format!("{prefix}{i}"),
                    template: template.clone(),
                    owner: "bench".into(),
                    ..Default::default()
                };
                let job = admins[i % admins.len()]
                    .clone()
                    .create_workspace(req)
                    .await
                    .with_context(|| format!("create workspace {prefix}{i}"))?
                    .into_inner()
                    .job_id;
                made.push((i, job));
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort();
    Ok(all.into_iter().map(|(_, id)| id).collect())
}

/// Every daemon the coordinator knows, all pages.
pub async fn daemons(admin: &mut Admin) -> Result<Vec<proto::Daemon>> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let req = proto::ListDaemonsRequest {
            limit: 1000,
            after,
            ..Default::default()
        };
        let page = admin.list_daemons(req).await?.into_inner();
        out.extend(page.daemons);
        if page.next_cursor.is_empty() {
            return Ok(out);
        }
        after = page.next_cursor;
    }
}

/// Every job with `status` (empty: any), all pages.
pub async fn jobs(admin: &mut Admin, status: &str) -> Result<Vec<proto::Job>> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let req = proto::ListJobsRequest {
            status: status.into(),
            limit: 1000,
            after,
            ..Default::default()
        };
        let page = admin.list_jobs(req).await?.into_inner();
        out.extend(page.jobs);
        if page.next_cursor.is_empty() {
            return Ok(out);
        }
        after = page.next_cursor;
    }
}

/// Polls until `n` daemons whose names start with `prefix` are `status`
/// (100 ms apart); false if `limit` passed first.
pub async fn wait_daemons(
    admin: &mut Admin,
    prefix: &str,
    status: &str,
    n: usize,
    limit: Duration,
) -> Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        let have = daemons(admin)
            .await?
            .iter()
            .filter(|d| d.name.starts_with(prefix) && d.status == status)
            .count();
        if have >= n {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until job `id` is `want` (5 ms apart); false if `limit` passed
/// first, an error if it ended otherwise.
pub async fn wait_job(admin: &mut Admin, id: &str, want: &str, limit: Duration) -> Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        let job = admin
            .get_job(proto::GetJobRequest { id: id.into() })
            .await?
            .into_inner();
        if job.status == want {
            return Ok(true);
        }
        if matches!(job.status.as_str(), "succeeded" | "failed" | "canceled") {
            bail!("job {id} ended {} ({}), not {want}", job.status, job.error);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for the first `init` stamp after byte `from` of the stamps file;
/// returns its time (µs since the epoch) and the file's new length, or
/// `None` if `limit` passed first.
pub async fn next_init(
    stamps: &Path,
    from: usize,
    limit: Duration,
) -> Result<Option<(f64, usize)>> {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(stamps).unwrap_or_default();
        if let Some(rest) = text.get(from..) {
            for line in rest.lines() {
                if let Some(t) = line.strip_suffix(" init") {
                    let secs: f64 = t.trim().parse().context("parse a terraform stamp")?;
                    return Ok(Some((secs * 1e6, text.len())));
                }
            }
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        // Sub-millisecond polling: the figure is a few milliseconds.
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Below this share of a core a 1 s window counts as quiet.
pub const QUIET_PCT: f64 = 5.0;

pub struct Cpu {
    /// Share of one core over the window right after settling.
    pub pct: f64,
    /// From `t0` (the daemons connecting) to the end of the first 1 s
    /// window below `QUIET_PCT`: when the coordinator had nothing left to
    /// do for them. `None` if none came before the deadline.
    pub quiet: Option<Duration>,
}

/// Samples the coordinator's CPU (the sum of `pids`: its replicas) in
/// 1 s windows: for `window`, then on (while not quiet) until `quiet_by`;
/// no quiet figure without `quiet_by`.
pub async fn cpu_after(
    pids: &[u32],
    t0: Instant,
    window: Duration,
    quiet_by: Option<Instant>,
) -> Result<Cpu> {
    let ticks = || pids.iter().map(|p| cpu_ticks(*p)).sum::<Result<u64>>();
    let start = (Instant::now(), ticks()?);
    let mut last = start;
    let mut total = None;
    let mut quiet = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = (Instant::now(), ticks()?);
        let share = |from: (Instant, u64)| {
            100.0 * (now.1 - from.1) as f64 / TICKS_PER_SEC / (now.0 - from.0).as_secs_f64()
        };
        if quiet.is_none() && quiet_by.is_some() && share(last) < QUIET_PCT {
            quiet = Some(now.0 - t0);
        }
        if total.is_none() && now.0 - start.0 >= window {
            total = Some(share(start));
        }
        last = now;
        let waiting_quiet = quiet.is_none() && quiet_by.is_some_and(|d| now.0 < d);
        if let Some(pct) = total
            && !waiting_quiet
        {
            return Ok(Cpu { pct, quiet });
        }
    }
}
