//! `jobs cancel`: ask the coordinator to cancel a job, and optionally wait
//! until it has ended.

use std::time::Duration;

use tokio_stream::StreamExt;

use super::client::Client;
use super::{CliError, print_job};
use crate::config::Output;
use crate::proto;

/// The statuses a job never leaves.
const FINISHED: [&str; 3] = ["succeeded", "failed", "canceled"];

fn is_finished(job: &proto::Job) -> bool {
    FINISHED.contains(&job.status.as_str())
}

/// Cancels job `id` and prints it (after it ended, with `wait`). Any final
/// status exits 0: a job whose terraform finished before the interrupt
/// reached it is reported as it ended, and the printed status says so.
pub(super) async fn cancel(
    c: &mut Client,
    id: &str,
    wait: bool,
    output: Output,
) -> Result<(), CliError> {
    let mut job = c
        .cancel_job(proto::CancelJobRequest { id: id.to_string() })
        .await?
        .into_inner();
    if job.status == "canceling" {
        eprintln!(
            "Job {id} is canceling: daemon {:?} was told to interrupt it.",
            job.daemon
        );
    }
    if wait {
        job = wait_ended(c, job).await?;
    }
    match job.status.as_str() {
        "canceled" => eprintln!("Job {id} canceled."),
        "canceling" => {}
        other => eprintln!("Job {id} {other} before the cancel took effect."),
    }
    print_job(&job, output);
    Ok(())
}

/// Waits until the job has ended. The coordinator's log follow ends the
/// stream when the job ends, so no polling is needed; the lines themselves
/// are not wanted.
async fn wait_ended(c: &mut Client, mut job: proto::Job) -> Result<proto::Job, CliError> {
    while !is_finished(&job) {
        let mut stream = c
            .stream_job_logs(proto::StreamJobLogsRequest {
                job_id: job.id.clone(),
                after_seq: job.log_count,
                follow: true,
            })
            .await?
            .into_inner();
        while let Some(line) = stream.next().await {
            line?;
        }
        job = c
            .get_job(proto::GetJobRequest { id: job.id.clone() })
            .await?
            .into_inner();
        if !is_finished(&job) {
            // The follow ended early (the coordinator is stopping): look
            // again shortly rather than spin.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(job)
}
