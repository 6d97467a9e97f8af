//! The daemon's blob transfers: a job's inputs fetched with GetJobInput
//! (archive and state, checked against the offer's sizes and sha256s),
//! and a job's result sent as FinishJob's stream (header, then the state in
//! chunks). Every caller reporting a result goes through [`send_finish`].

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Status;

use super::record::{Records, Report};
use super::rpc::{self, Client};
use crate::chunk::{self, Assembly, ChunkError};
use crate::proto::{GetJobInputRequest, JobOffer, job_input_chunk::Chunk};

/// Bytes per second the time limit of a transfer assumes at worst, on top
/// of [`rpc::RPC_TIMEOUT`]: a 256 MiB state gets about 4 more minutes, a
/// small one the usual bound.
const SLOWEST_BYTES_PER_SEC: u64 = 1024 * 1024;

fn limit_for(bytes: u64) -> Duration {
    rpc::RPC_TIMEOUT.saturating_add(Duration::from_secs(bytes / SLOWEST_BYTES_PER_SEC))
}

/// One FinishJob: the header, then the state's chunks; a retry calls this
/// again and sends the whole stream anew.
pub(super) async fn send_finish(client: &Client, report: &Report) -> Result<(), Status> {
    let size = report.state.as_ref().map_or(0, |s| s.len() as u64);
    let parts = chunk::finish_job_parts(report.header.clone(), report.state.as_deref());
    let mut c = client.clone();
    let call = c.finish_job(tokio_stream::iter(parts));
    match tokio::time::timeout(limit_for(size), call).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "finish job: no answer within {}s",
            limit_for(size).as_secs()
        ))),
    }
}

/// FinishJob through [`send_finish`]; a state the coordinator refuses as
/// invalid (over its `--max-state-bytes`) is kept in
/// `CACHE/refused-states/<job>.tfstate` and the job is reported failed
/// without it, the error naming the file — so the job ends and the state
/// is not lost. If the state cannot be kept, the answer is a retryable
/// error: the caller keeps the state with the job's record.
pub(super) async fn finish_keeping_state(
    client: &Client,
    records: &Records,
    report: &Report,
) -> Result<(), Status> {
    let refusal = match send_finish(client, report).await {
        Err(st) if st.code() == tonic::Code::InvalidArgument && report.state.is_some() => st,
        other => return other,
    };
    let job_id = &report.header.job_id;
    let state = report.state.as_deref().unwrap_or_default();
    let kept = records.keep_refused_state(job_id, state).map_err(|e| {
        Status::unavailable(format!(
            "finish job {job_id}: the coordinator refused the state ({}) and keeping it \
             failed: {e}",
            refusal.message()
        ))
    })?;
    tracing::error!(
        job_id,
        error = %rpc::describe(&refusal),
        kept = %kept.display(),
        "terraform state refused by the coordinator; kept on disk, job reported failed"
    );
    send_finish(client, &without_state(report, &refusal, &kept)).await
}

/// `report` as a failure without its state, saying where the state is.
fn without_state(report: &Report, refusal: &Status, kept: &std::path::Path) -> Report {
    let mut header = report.header.clone();
    let why = format!(
        "the coordinator refused the terraform state ({}); the daemon kept it at {}",
        refusal.message(),
        kept.display()
    );
    header.error = if header.error.is_empty() {
        why
    } else {
        format!("{}; {why}", header.error)
    };
    header.outcome = crate::proto::JobOutcome::Failed as i32;
    header.has_state = false;
    Report {
        header,
        state: None,
    }
}

/// Why fetching a job's input failed.
#[derive(Debug)]
pub(super) enum FetchError {
    /// The call failed (to be judged like any RPC error).
    Rpc(Status),
    /// The bytes did not match the offer: retried like a broken stream.
    Mismatch(ChunkError),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Rpc(st) => write!(f, "fetch job input: {}", rpc::describe(st)),
            FetchError::Mismatch(e) => write!(f, "fetch job input: {e}"),
        }
    }
}

/// The offer's template archive and previous state, fetched once and
/// checked against the sizes and sha256s the offer announced. Nothing
/// beyond what the offer announced is ever read into memory.
pub(super) async fn fetch_input(
    client: &Client,
    offer: &JobOffer,
) -> Result<(Vec<u8>, Vec<u8>), FetchError> {
    let (state_size, state_sha) = offer
        .workspace_build
        .as_ref()
        .map_or((0, chunk::sha256_hex(&[])), |b| {
            (b.state_size, b.state_sha256.clone())
        });
    let mismatch = FetchError::Mismatch;
    // The offer's sizes are the limits: the coordinator set them.
    let mut archive = Assembly::new(
        "template archive",
        offer.template_archive_size,
        &offer.template_archive_sha256,
        offer.template_archive_size,
    )
    .map_err(mismatch)?;
    let mut state = Assembly::new("state", state_size, &state_sha, state_size).map_err(mismatch)?;
    let limit = limit_for(offer.template_archive_size.saturating_add(state_size));
    let fetch = async {
        let mut c = client.clone();
        let req = GetJobInputRequest {
            job_id: offer.job_id.clone(),
            job_secret: offer.job_secret.clone(),
        };
        let mut stream = c
            .get_job_input(req)
            .await
            .map_err(FetchError::Rpc)?
            .into_inner();
        while let Some(msg) = stream.next().await {
            match msg.map_err(FetchError::Rpc)?.chunk {
                // Archive chunks all come first.
                Some(Chunk::Archive(_)) if state.received() > 0 => {
                    return Err(FetchError::Rpc(Status::internal(
                        "an archive chunk came after state chunks",
                    )));
                }
                Some(Chunk::Archive(c)) => archive.push(&c).map_err(mismatch)?,
                Some(Chunk::State(c)) => state.push(&c).map_err(mismatch)?,
                None => {}
            }
        }
        Ok::<_, FetchError>(())
    };
    match tokio::time::timeout(limit, fetch).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(FetchError::Rpc(Status::deadline_exceeded(format!(
                "no answer within {}s",
                limit.as_secs()
            ))));
        }
    }
    let archive = archive.finish().map_err(mismatch)?;
    let state = state.finish().map_err(mismatch)?;
    Ok((archive, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_mismatch_names_the_blob_and_both_sizes() {
        let e = FetchError::Mismatch(ChunkError::Size {
            what: "state",
            got: 10,
            expected: 20,
        });
        assert_eq!(
            e.to_string(),
            "fetch job input: state is 10 bytes, expected 20"
        );
        let e = FetchError::Rpc(Status::permission_denied("job j is not owned"));
        assert!(
            e.to_string()
                .starts_with("fetch job input: PermissionDenied"),
            "{e}"
        );
    }

    #[test]
    fn transfers_get_more_time_per_byte() {
        assert_eq!(limit_for(0), rpc::RPC_TIMEOUT);
        assert_eq!(
            limit_for(256 << 20),
            rpc::RPC_TIMEOUT + Duration::from_secs(256)
        );
    }
}
