//! Measures how fast an operator's cancel reaches terraform: the time from
//! the `CancelJob` admin call being made to the daemon's "Job canceled:
//! interrupting terraform" log line, and to the job ending `canceled`.
//! Target: the interrupt within 100 ms (the coordinator pushes the cancel on
//! the daemon's session; nobody waits for a heartbeat).
//!
//!   scripts/install-terraform.sh
//!   cargo run --release --example bench_cancel -- [ROUNDS]
//!
//! Uses a real coordinator and daemon in this process and the project's
//! terraform (`PROVISIONERD_TEST_TERRAFORM` or `.tools/terraform/bin/terraform`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use provisionerd::coordinator::{Coordinator, ServeConfig};
use provisionerd::daemon::{self, DaemonConfig, Shutdown};
use provisionerd::grpc::Credentials;
use provisionerd::proto::{self, admin_client::AdminClient};
use tokio_util::sync::CancellationToken;

#[path = "support/mod.rs"]
mod support;
use support::{Admin, pct, wait_status};

const TEMPLATE: &str = r#"
resource "terraform_data" "w" {
  provisioner "local-exec" {
    command = "echo started; sleep 300"
  }
}
"#;
const INTERRUPT_LINE: &str = "Job canceled: interrupting terraform";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn terraform() -> Result<PathBuf> {
    let p = std::env::var_os("PROVISIONERD_TEST_TERRAFORM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/terraform/bin/terraform")
        });
    if !p.is_file() {
        bail!(
            "terraform not found at {}: run scripts/install-terraform.sh",
            p.display()
        );
    }
    Ok(p)
}

async fn logs(admin: &mut Admin, id: &str) -> Result<Vec<proto::LogLine>> {
    let mut stream = admin
        .stream_job_logs(proto::StreamJobLogsRequest {
            job_id: id.into(),
            after_seq: 0,
            follow: false,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(l) = stream.message().await? {
        out.push(l);
    }
    Ok(out)
}

/// Polls until `pred` holds for the job's logs (10 ms apart, 60 s at most).
async fn wait_logs(
    admin: &mut Admin,
    id: &str,
    pred: impl Fn(&[proto::LogLine]) -> bool,
) -> Result<Vec<proto::LogLine>> {
    for _ in 0..6000 {
        let l = logs(admin, id).await?;
        if pred(&l) {
            return Ok(l);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("job {id}: expected log line never came")
}

#[tokio::main]
async fn main() -> Result<()> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(10), |s| s.parse())?;
    let tmp = tempfile::tempdir()?;
    let coordinator = Coordinator::bind(ServeConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: tmp.path().join("data"),
        allow_new_database: false,
        job_lease: Duration::from_secs(60),
        tls: None,
        archive_limits: Default::default(),
        max_state_bytes: provisionerd::coordinator::DEFAULT_MAX_STATE_BYTES,
        metrics_address: None,
        prebuild_reconcile_interval: None,
        prebuild_failure_hard_limit: 3,
        offer_timeout: provisionerd::coordinator::DEFAULT_OFFER_TIMEOUT,
        connections: Default::default(),

        database_url: None,

        database_pool: 16,

        admin_token_file: None,
    })
    .await?;
    let url = format!("http://{}", coordinator.local_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(coordinator.run(stop.clone()));
    let token = std::fs::read_to_string(tmp.path().join("data/admin-token"))?;
    let channel = tonic::transport::Channel::from_shared(url.clone())?
        .connect()
        .await?;
    let mut admin = AdminClient::with_interceptor(
        channel,
        Credentials::bearer(token.trim()).map_err(anyhow::Error::msg)?,
    );

    let key = admin
        .create_key(proto::CreateKeyRequest {
            name: "bench".into(),
            tags: Default::default(),
        })
        .await?
        .into_inner()
        .secret;
    let shutdown = Shutdown::new();
    let daemon = tokio::spawn(daemon::run(
        DaemonConfig {
            urls: vec![url],
            key: key.as_str().into(),
            tls: Default::default(),
            name: "bench".into(),
            name_conflict_timeout: Duration::from_secs(60),
            cache_dir: tmp.path().join("cache"),
            terraform_path: terraform()?,
            cancel_grace: Duration::from_secs(10),
            drain_timeout: None,
            archive_limits: Default::default(),
            ops: Default::default(),
        },
        shutdown.clone(),
    ));
    support::push_template(&mut admin, tmp.path(), "t", TEMPLATE).await?;

    let (mut to_interrupt, mut to_canceled) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let job = support::create_workspace(&mut admin, &format!("w{i}")).await?;
        wait_logs(&mut admin, &job, |l| {
            l.iter().any(|l| l.output.ends_with(": started"))
        })
        .await?;
        // Measured from before the call: the push may beat its answer.
        let canceled_at = now_ms();
        admin
            .cancel_job(proto::CancelJobRequest {
                id: job.clone(),
                ..Default::default()
            })
            .await
            .context("cancel job")?;
        wait_status(&mut admin, &job, "canceled").await?;
        let done = now_ms();
        let l = wait_logs(&mut admin, &job, |l| {
            l.iter().any(|l| l.output == INTERRUPT_LINE)
        })
        .await?;
        let interrupted = l
            .iter()
            .find(|l| l.output == INTERRUPT_LINE)
            .map_or(0, |l| l.created_at);
        to_interrupt.push(interrupted - canceled_at);
        to_canceled.push(done - canceled_at);
    }
    to_interrupt.sort_unstable();
    to_canceled.sort_unstable();
    println!("cancel latency over {rounds} running jobs (ms; log timestamps have 1 ms resolution)");
    for (what, v) in [
        ("cancel → terraform interrupted", &to_interrupt),
        ("cancel → job canceled", &to_canceled),
    ] {
        println!(
            "  {what:32} p50 {:>5}  p95 {:>5}  max {:>5}",
            pct(v, 0.5),
            pct(v, 0.95),
            v[v.len() - 1]
        );
    }
    shutdown.drain.cancel();
    daemon.await??;
    stop.cancel();
    server.await??;
    Ok(())
}
