//! Reading the client-streamed requests (FinishJob, PushTemplate): the
//! header first, then the blob's chunks, assembled under a limit and
//! checked against the header's size and sha256 before the caller stores
//! anything. Also the chunks GetJobInput streams back.

use tokio_stream::StreamExt;
use tonic::{Code, Streaming};

use super::error::{CoordError, Result};
use crate::chunk::{self, Assembly, ChunkError};
use crate::proto::{
    FinishJobPart, FinishJobRequest, JobInputChunk, PushTemplatePart, PushTemplateRequest,
    finish_job_part::Part as FinishPart, job_input_chunk::Chunk,
    push_template_part::Part as PushPart,
};

/// A stream's next message; a broken stream is an abort (nothing stored,
/// the sender retries), its end is `None`. A message over the size limit
/// is the sender's error, not worth a retry.
async fn next<T>(action: &str, stream: &mut Streaming<T>) -> Result<Option<T>> {
    match stream.next().await {
        Some(Ok(m)) => Ok(Some(m)),
        Some(Err(st)) if matches!(st.code(), Code::OutOfRange | Code::ResourceExhausted) => {
            Err(CoordError::Invalid(format!("{action}: {}", st.message())))
        }
        Some(Err(st)) => Err(CoordError::Aborted(format!(
            "{action}: the request stream broke: {}",
            st.message()
        ))),
        None => Ok(None),
    }
}

fn refused(action: &str, e: ChunkError) -> CoordError {
    CoordError::Invalid(format!("{action}: {e}"))
}

/// Over the limit: the message names the flag that sets it.
fn over(action: &str, flag: &str, e: ChunkError) -> CoordError {
    match e {
        ChunkError::TooLarge { what, size, limit } => CoordError::Invalid(format!(
            "{action}: {what} is {size} bytes, over the {flag} limit of {}",
            crate::archive::Size(limit)
        )),
        other => refused(action, other),
    }
}

/// FinishJob's header and state (empty when it has none), whole and
/// checked. A state over `limit` is refused as soon as it is announced or
/// exceeded, without reading the rest.
pub async fn read_finish(
    mut stream: Streaming<FinishJobPart>,
    limit: u64,
) -> Result<(FinishJobRequest, Vec<u8>)> {
    let header = match next("finish job", &mut stream).await? {
        Some(FinishJobPart {
            part: Some(FinishPart::Header(h)),
        }) => h,
        _ => {
            return Err(CoordError::Invalid(
                "finish job: the first part must be the header".into(),
            ));
        }
    };
    let action = format!("finish job {}", header.job_id);
    let mut state = Assembly::new("state", header.state_size, &header.state_sha256, limit)
        .map_err(|e| over(&action, "--max-state-bytes", e))?;
    while let Some(part) = next(&action, &mut stream).await? {
        match part.part {
            Some(FinishPart::State(c)) => state
                .push(&c)
                .map_err(|e| over(&action, "--max-state-bytes", e))?,
            _ => {
                return Err(CoordError::Invalid(format!(
                    "{action}: only state chunks may follow the header"
                )));
            }
        }
    }
    let state = state.finish().map_err(|e| refused(&action, e))?;
    if !header.has_state && !state.is_empty() {
        return Err(CoordError::Invalid(format!(
            "{action}: a state was sent but has_state is false"
        )));
    }
    Ok((header, state))
}

/// PushTemplate's header and archive, whole and checked. An archive over
/// `limit` is refused as soon as it is announced or exceeded.
pub async fn read_push(
    mut stream: Streaming<PushTemplatePart>,
    limit: u64,
) -> Result<(PushTemplateRequest, Vec<u8>)> {
    let header = match next("push template", &mut stream).await? {
        Some(PushTemplatePart {
            part: Some(PushPart::Header(h)),
        }) => h,
        _ => {
            return Err(CoordError::Invalid(
                "push template: the first part must be the header".into(),
            ));
        }
    };
    let action = format!("push template {:?}", header.name);
    let mut archive = Assembly::new(
        "template archive",
        header.archive_size,
        &header.archive_sha256,
        limit,
    )
    .map_err(|e| over(&action, "--max-archive-bytes", e))?;
    while let Some(part) = next(&action, &mut stream).await? {
        match part.part {
            Some(PushPart::Archive(c)) => archive
                .push(&c)
                .map_err(|e| over(&action, "--max-archive-bytes", e))?,
            _ => {
                return Err(CoordError::Invalid(format!(
                    "{action}: only archive chunks may follow the header"
                )));
            }
        }
    }
    let archive = archive.finish().map_err(|e| refused(&action, e))?;
    Ok((header, archive))
}

/// GetJobInput's answer: the archive's chunks, then the state's.
pub fn input_chunks(archive: Vec<u8>, state: Vec<u8>) -> impl Iterator<Item = JobInputChunk> {
    let archive = chunk::owned_pieces(archive).map(|c| JobInputChunk {
        chunk: Some(Chunk::Archive(c)),
    });
    let state = chunk::owned_pieces(state).map(|c| JobInputChunk {
        chunk: Some(Chunk::State(c)),
    });
    archive.chain(state)
}
