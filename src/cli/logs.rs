//! `jobs logs` and the log stream of `--wait`: printing a job's lines, and
//! a follow that survives its coordinator stopping or dying.

use tokio_stream::StreamExt;

use super::client::Client;
use super::{CliError, job_status, render};
use crate::coordinator::store::JobStatus;
use crate::proto;

/// Prints a job's logs. A follow whose stream breaks or ends before the
/// job has (the coordinator stopped or died) resumes after the last line
/// printed — on the next `--url` when that one is unreachable — for up to
/// [`RESUME_PATIENCE`] without a stream.
pub(super) async fn print_logs(c: &mut Client, job_id: &str, follow: bool) -> Result<(), CliError> {
    let mut printed = 0;
    let mut stage = String::new();
    let mut lost_since: Option<tokio::time::Instant> = None;
    loop {
        let request = proto::StreamJobLogsRequest {
            job_id: job_id.to_string(),
            after_seq: printed,
            follow,
        };
        let broken = match c.stream_job_logs(request).await {
            Ok(stream) => {
                lost_since = None;
                let mut stream = stream.into_inner();
                loop {
                    match stream.next().await {
                        Some(Ok(line)) => {
                            if line.stage != stage {
                                stage = line.stage.clone();
                                println!("==> {stage}");
                            }
                            println!("{}", render::log_line(&line));
                            printed = line.seq;
                        }
                        Some(Err(st)) => break st,
                        None if !follow => return Ok(()),
                        None => {
                            // Ended: the job did, or the coordinator is
                            // stopping (then the job goes on elsewhere).
                            let job = c
                                .get_job(proto::GetJobRequest {
                                    id: job_id.to_string(),
                                })
                                .await
                                .map(tonic::Response::into_inner);
                            match job {
                                Ok(j) if is_ended(&j) => return Ok(()),
                                Ok(_) => break tonic::Status::unavailable("log stream ended"),
                                Err(st) => break st,
                            }
                        }
                    }
                }
            }
            Err(st) => st,
        };
        let since = *lost_since.get_or_insert_with(tokio::time::Instant::now);
        if !follow || !is_transport_trouble(&broken) || since.elapsed() > RESUME_PATIENCE {
            return Err(broken.into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Whether a failed read may be tried again: how a broken connection
/// shows (a reset stream reads as Unknown or Internal, a refused
/// connection as Unavailable). Only reads are retried this way.
fn is_transport_trouble(st: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        st.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
    )
}

/// How long a log follow keeps trying to get its stream back.
const RESUME_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

fn is_ended(job: &proto::Job) -> bool {
    // A status this CLI does not know (a newer coordinator's) ends it too.
    job_status(job).is_none_or(JobStatus::is_finished)
}
