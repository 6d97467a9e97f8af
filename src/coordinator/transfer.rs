//! Reading the client-streamed requests (FinishJob, PushTemplate): the
//! header first, then the blob's chunks, assembled under a limit and
//! checked against the header's size and sha256 before the caller stores
//! anything. Also the chunks GetJobInput streams back.

use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::{Code, Streaming};

use super::error::{CoordError, Result};
use super::store::{DeclaredVar, JobReport, JobStatus};
use crate::chunk::{self, Assembly, ChunkError};
use crate::proto::{
    FinishJobPart, FinishJobRequest, JobInputChunk, JobOutcome, PushTemplatePart,
    PushTemplateRequest, finish_job_part::Part as FinishPart, job_input_chunk::Chunk,
    push_template_part::Part as PushPart,
};

/// Longest a client stream may stay silent between two parts: a stalled
/// sender must not hold a stream (and the coordinator's shutdown) forever.
const STREAM_IDLE: Duration = Duration::from_secs(60);

/// A stream's next message; a broken or stalled stream is an abort
/// (nothing stored, the sender retries), its end is `None`. A message over
/// the size limit is the sender's error, not worth a retry.
async fn next<T>(action: &str, stream: &mut Streaming<T>) -> Result<Option<T>> {
    let next = tokio::time::timeout(STREAM_IDLE, stream.next())
        .await
        .map_err(|_| {
            CoordError::Aborted(format!(
                "{action}: nothing arrived for {}s",
                STREAM_IDLE.as_secs()
            ))
        })?;
    match next {
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

/// A client-streamed upload: a header, then the chunks of one blob.
trait Upload: Sized {
    type Header;
    /// What the call does ("finish job"), for messages.
    const ACTION: &'static str;
    /// The blob, for messages ("state").
    const WHAT: &'static str;
    /// The flag that bounds the blob.
    const FLAG: &'static str;
    fn into_part(self) -> Option<Part<Self::Header>>;
    /// The action with its subject ("finish job J").
    fn action(header: &Self::Header) -> String;
    /// The blob's announced size and sha256.
    fn announced(header: &Self::Header) -> (u64, &str);
}

enum Part<H> {
    Header(H),
    Chunk(Vec<u8>),
}

impl Upload for FinishJobPart {
    type Header = FinishJobRequest;
    const ACTION: &'static str = "finish job";
    const WHAT: &'static str = "state";
    const FLAG: &'static str = "--max-state-bytes";
    fn into_part(self) -> Option<Part<FinishJobRequest>> {
        match self.part? {
            FinishPart::Header(h) => Some(Part::Header(h)),
            FinishPart::State(c) => Some(Part::Chunk(c)),
        }
    }
    fn action(h: &FinishJobRequest) -> String {
        format!("finish job {}", h.job_id)
    }
    fn announced(h: &FinishJobRequest) -> (u64, &str) {
        (h.state_size, &h.state_sha256)
    }
}

impl Upload for PushTemplatePart {
    type Header = PushTemplateRequest;
    const ACTION: &'static str = "push template";
    const WHAT: &'static str = "template archive";
    const FLAG: &'static str = "--max-archive-bytes";
    fn into_part(self) -> Option<Part<PushTemplateRequest>> {
        match self.part? {
            PushPart::Header(h) => Some(Part::Header(h)),
            PushPart::Archive(c) => Some(Part::Chunk(c)),
        }
    }
    fn action(h: &PushTemplateRequest) -> String {
        format!("push template {:?}", h.name)
    }
    fn announced(h: &PushTemplateRequest) -> (u64, &str) {
        (h.archive_size, &h.archive_sha256)
    }
}

/// Reads an upload whole and checked: the header, which `admit` may refuse
/// before a single chunk is read (who may send it), then the blob under
/// `limit` — refused as soon as it is announced or exceeded — with `tick`
/// after each chunk (a long upload is alive).
async fn read_upload<U: Upload>(
    mut stream: Streaming<U>,
    limit: u64,
    admit: impl FnOnce(&U::Header) -> Result<()>,
    mut tick: impl FnMut() -> Result<()>,
) -> Result<(U::Header, Vec<u8>)> {
    let header = match next(U::ACTION, &mut stream).await?.and_then(U::into_part) {
        Some(Part::Header(h)) => h,
        _ => {
            return Err(CoordError::Invalid(format!(
                "{}: the first part must be the header",
                U::ACTION
            )));
        }
    };
    admit(&header)?;
    let action = U::action(&header);
    let (size, sha) = U::announced(&header);
    let mut blob =
        Assembly::new(U::WHAT, size, sha, limit).map_err(|e| over(&action, U::FLAG, e))?;
    while let Some(part) = next(&action, &mut stream).await? {
        match part.into_part() {
            Some(Part::Chunk(c)) => {
                blob.push(&c).map_err(|e| over(&action, U::FLAG, e))?;
                tick()?;
            }
            _ => {
                return Err(CoordError::Invalid(format!(
                    "{action}: only {} chunks may follow the header",
                    U::WHAT
                )));
            }
        }
    }
    let blob = blob.finish().map_err(|e| refused(&action, e))?;
    Ok((header, blob))
}

/// FinishJob's header and state (empty when it has none), whole and
/// checked; see [`read_upload`] for `admit` and `tick`.
pub async fn read_finish(
    stream: Streaming<FinishJobPart>,
    limit: u64,
    admit: impl FnOnce(&FinishJobRequest) -> Result<()>,
    tick: impl FnMut() -> Result<()>,
) -> Result<(FinishJobRequest, Vec<u8>)> {
    let (header, state) = read_upload(stream, limit, admit, tick).await?;
    if !header.has_state && !state.is_empty() {
        return Err(CoordError::Invalid(format!(
            "finish job {}: a state was sent but has_state is false",
            header.job_id
        )));
    }
    Ok((header, state))
}

/// FinishJob's header as the store takes it: its outcome a final job
/// status (anything else is refused), the state's hash only when it has
/// one.
pub fn job_report(req: &FinishJobRequest) -> Result<JobReport> {
    let outcome = match JobOutcome::try_from(req.outcome) {
        Ok(JobOutcome::Succeeded) => JobStatus::Succeeded,
        Ok(JobOutcome::Failed) => JobStatus::Failed,
        Ok(JobOutcome::Canceled) => JobStatus::Canceled,
        _ => {
            return Err(CoordError::Invalid(format!(
                "finish job {}: outcome {} is not a final outcome",
                req.job_id, req.outcome
            )));
        }
    };
    Ok(JobReport {
        job_id: req.job_id.clone(),
        outcome,
        error: req.error.clone(),
        log_count: req.log_count,
        state_sha256: req.has_state.then(|| req.state_sha256.to_ascii_lowercase()),
        variables: req
            .variables
            .iter()
            .map(|v| DeclaredVar {
                name: v.name.clone(),
                description: v.description.clone(),
                r#type: v.r#type.clone(),
                default_json: v.default_json.clone(),
                sensitive: v.sensitive,
                required: v.required,
            })
            .collect(),
        replacements: req.replacements.clone(),
    })
}

/// PushTemplate's header and archive, whole and checked.
pub async fn read_push(
    stream: Streaming<PushTemplatePart>,
    limit: u64,
) -> Result<(PushTemplateRequest, Vec<u8>)> {
    read_upload(stream, limit, |_| Ok(()), || Ok(())).await
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
