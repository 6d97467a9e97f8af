//! What the benchmark examples share: the admin client type, pushing a
//! one-file template and waiting for its import, job status polling,
//! percentiles. Included by each example with `#[path]`.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use provisionerd::grpc::Credentials;
use provisionerd::proto::{self, admin_client::AdminClient};

pub type Admin = AdminClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Credentials>,
>;

/// Polls until job `id` is `want` (5 ms apart, 60 s at most); fails at
/// once when it ended otherwise.
pub async fn wait_status(admin: &mut Admin, id: &str, want: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = admin
            .get_job(proto::GetJobRequest { id: id.into() })
            .await?
            .into_inner();
        if job.status == want {
            return Ok(());
        }
        if matches!(job.status.as_str(), "succeeded" | "failed" | "canceled") {
            bail!("job {id} ended {} ({}), not {want}", job.status, job.error);
        }
        if Instant::now() > deadline {
            bail!("job {id} still {} after 60 s", job.status);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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

/// The `p` quantile (0..=1) of sorted, non-empty `sorted`.
pub fn pct<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
