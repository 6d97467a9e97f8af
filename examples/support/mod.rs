//! What the benchmark examples share: the admin client type, the release
//! binary and its processes, pushing a one-file template and waiting for
//! its import, job status polling, percentiles. Included by each example with `#[path]`.
//! `procs` starts the coordinator and daemons as processes and reads their
//! CPU and memory; `sim` speaks the daemon protocol itself (hundreds of
//! simulated daemons from one process); `engine` starts PostgreSQL
//! replicas instead of one SQLite coordinator when the environment says so.
#![allow(dead_code)]

pub mod engine;
pub mod procs;
pub mod sim;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use provisionerd::grpc::Credentials;
use provisionerd::proto::{self, admin_client::AdminClient};

pub type Admin = AdminClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Credentials>,
>;

/// Kills the child when the benchmark ends, however it ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The no-op terraform for latency cases: the compiled one beside this
/// example (`examples/noop_terraform.rs`, built by scripts/bench.sh) when
/// it is there, else `scripts/noop-terraform` (bash).
pub fn noop_terraform(root: &Path) -> PathBuf {
    let compiled = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("noop_terraform")));
    match compiled {
        Some(path) if path.is_file() => path,
        _ => root.join("scripts/noop-terraform"),
    }
}

/// The `provisionerd` binary beside this example's (target/release/), or
/// the one `PROVISIONERD_BENCH_BIN` names: the same benchmarks then measure
/// another build (an older release, for a before/after table).
pub fn binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PROVISIONERD_BENCH_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("PROVISIONERD_BENCH_BIN: {} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("provisionerd"))
        .context("locate provisionerd beside the example")?;
    if !bin.is_file() {
        bail!("{} missing: run cargo build --release", bin.display());
    }
    Ok(bin)
}

/// Waits (30 s at most) for `path` to hold a complete line; returns it.
pub async fn wait_file(path: &Path) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.ends_with('\n')
        {
            return Ok(s.trim().to_string());
        }
        if Instant::now() > deadline {
            bail!("{} never appeared", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until job `id` is `want` (5 ms apart, 60 s at most); fails at
/// once when it ended otherwise.
pub async fn wait_status(admin: &mut Admin, id: &str, want: &str) -> Result<()> {
    if !procs::wait_job(admin, id, want, Duration::from_secs(60)).await? {
        bail!("job {id} not {want} after 60 s");
    }
    Ok(())
}

/// Pushes `main_tf` as template `name` (from a dir under `root`) and waits
/// until its import succeeded.
pub async fn push_template(
    admin: &mut Admin,
    root: &Path,
    name: &str,
    main_tf: &str,
) -> Result<()> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("main.tf"), main_tf)?;
    let header = proto::PushTemplateRequest {
        name: name.into(),
        ..Default::default()
    };
    let parts =
        provisionerd::chunk::push_template_parts(header, &provisionerd::archive::tar_dir(&dir)?);
    let import = admin
        .push_template(tokio_stream::iter(parts))
        .await?
        .into_inner()
        .job_id;
    wait_status(admin, &import, "succeeded").await
}

/// Creates workspace `name` from template `t` for owner `bench`; returns
/// its first build's job id.
pub async fn create_workspace(admin: &mut Admin, name: &str) -> Result<String> {
    Ok(admin
        .create_workspace(proto::CreateWorkspaceRequest {
            name: name.into(),
            template: "t".into(),
            owner: "bench".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .job_id)
}

/// The `p` quantile (0..=1) of sorted, non-empty `sorted`.
pub fn pct<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
