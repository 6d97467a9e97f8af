//! Oversized and inconsistent transfers are refused, and store nothing:
//! template pushes over the archive limit or not matching their header,
//! FinishJob states over the limit or not matching theirs, job input for a
//! daemon that does not own the job, and any single message over 4 MiB.

use provisionerd::archive::{Limits, Size};
use provisionerd::chunk::{self, finish_job_parts, push_template_parts, sha256_hex};
use provisionerd::coordinator::DEFAULT_MAX_STATE_BYTES as MAX_STATE_BYTES;
use provisionerd::grpc::MAX_MESSAGE_BYTES;
use provisionerd::proto::{
    self, FinishJobPart, FinishJobRequest, JobOutcome, PushTemplatePart, PushTemplateRequest,
    finish_job_part::Part as FinishPart, job_input_chunk::Chunk,
    push_template_part::Part as PushPart,
};
use tokio_stream::StreamExt;
use tonic::Code;

use super::quiet_stack;
use crate::common::{Coord, TIMEOUT};
use crate::raw::{self, Client, RawDaemon};
use crate::{QUICK, template};

/// Bytes that compress badly and are not all alike.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn push_header(name: &str) -> PushTemplateRequest {
    PushTemplateRequest {
        name: name.into(),
        ..Default::default()
    }
}

async fn push_raw(coord: &Coord, parts: Vec<PushTemplatePart>) -> Result<String, tonic::Status> {
    let call = async {
        coord
            .admin()
            .await
            .push_template(tokio_stream::iter(parts))
            .await
            .map(|r| r.into_inner().job_id)
    };
    tokio::time::timeout(TIMEOUT, call)
        .await
        .expect("push answered in time")
}

fn refused(r: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needle: &str) {
    let st = r.expect_err("refused");
    assert_eq!(st.code(), code, "{st:?}");
    assert!(st.message().contains(needle), "{needle:?} not in {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_or_inconsistent_pushes_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let dir = template(tmp.path(), "t", QUICK);
    let archive = provisionerd::archive::tar_dir(&dir).unwrap();

    // Over the limit: refused once announced, however honest the sender.
    let max_archive = Limits::default().max_archive_bytes;
    let huge = noise(max_archive as usize + 1);
    let limit = format!(
        "over the --max-archive-bytes limit of {}",
        Size(max_archive)
    );
    refused(
        push_raw(&coord, push_template_parts(push_header("t"), &huge)).await,
        Code::InvalidArgument,
        &limit,
    );
    // Announced small, sent large: refused as the bytes pass the size.
    let mut lying = push_template_parts(push_header("t"), &noise(3 << 20));
    if let Some(PushPart::Header(h)) = &mut lying[0].part {
        h.archive_size = 1000;
    }
    refused(
        push_raw(&coord, lying).await,
        Code::InvalidArgument,
        "template archive is 1048576 bytes, expected 1000",
    );
    // A short stream, and a corrupted one.
    let mut short = push_template_parts(push_header("t"), &archive);
    if let Some(PushPart::Header(h)) = &mut short[0].part {
        h.archive_size += 10;
    }
    let expected = format!(
        "is {} bytes, expected {}",
        archive.len(),
        archive.len() + 10
    );
    refused(
        push_raw(&coord, short).await,
        Code::InvalidArgument,
        &expected,
    );
    let mut corrupt = push_template_parts(push_header("t"), &archive);
    if let Some(PushPart::Header(h)) = &mut corrupt[0].part {
        h.archive_sha256 = sha256_hex(b"something else");
    }
    refused(
        push_raw(&coord, corrupt).await,
        Code::InvalidArgument,
        "sha256",
    );
    // One chunk over the message limit: refused by gRPC, nothing read.
    let mut oversized = push_template_parts(push_header("t"), &archive);
    oversized.truncate(1);
    oversized.push(PushTemplatePart {
        part: Some(PushPart::Archive(noise(MAX_MESSAGE_BYTES + 1))),
    });
    // The coordinator answers INVALID_ARGUMENT, but may reset the stream
    // while the client is still sending the chunk, which then sees only
    // the reset: either way the push fails and nothing is stored.
    let st = push_raw(&coord, oversized).await.unwrap_err();
    assert!(
        matches!(st.code(), Code::InvalidArgument | Code::Internal),
        "{st:?}"
    );
    // Chunks without a header first.
    let headless = push_template_parts(push_header("t"), &archive)[1..].to_vec();
    refused(
        push_raw(&coord, headless).await,
        Code::InvalidArgument,
        "first part must be the header",
    );
    let templates = coord
        .admin()
        .await
        .list_templates(proto::ListTemplatesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .templates;
    assert!(templates.is_empty(), "nothing stored: {templates:?}");

    // Metadata GetTemplate could not return in one message: refused.
    std::fs::write(dir.join("README.md"), "# big\n".repeat(400_000)).unwrap();
    let with_readme = provisionerd::archive::tar_dir(&dir).unwrap();
    refused(
        push_raw(&coord, push_template_parts(push_header("t"), &with_readme)).await,
        Code::InvalidArgument,
        "its metadata (variables, parameters, presets, README) is",
    );
    std::fs::remove_file(dir.join("README.md")).unwrap();
    // An archive of several chunks (a 6 MiB file beside main.tf) is taken.
    std::fs::write(dir.join("blob.bin"), noise(6 << 20)).unwrap();
    let archive = provisionerd::archive::tar_dir(&dir).unwrap();
    assert!(chunk::pieces(&archive).count() > 4);
    push_raw(&coord, push_template_parts(push_header("t"), &archive))
        .await
        .expect("a multi-chunk archive is taken");
    coord.stop().await;
}

async fn finish_raw(client: &Client, parts: Vec<FinishJobPart>) -> Result<(), tonic::Status> {
    let mut c = client.clone();
    let call = c.finish_job(tokio_stream::iter(parts));
    tokio::time::timeout(TIMEOUT, call)
        .await
        .expect("finish answered in time")
        .map(|_| ())
}

/// Everything GetJobInput streams for `job_id` (presenting `secret`), as
/// (archive, state).
async fn fetch(
    client: &Client,
    job_id: &str,
    secret: &str,
) -> Result<(Vec<u8>, Vec<u8>), tonic::Status> {
    let mut c = client.clone();
    let req = proto::GetJobInputRequest {
        job_id: job_id.into(),
        job_secret: secret.into(),
    };
    let mut stream = c.get_job_input(req).await?.into_inner();
    let (mut archive, mut state) = (Vec::new(), Vec::new());
    while let Some(msg) = stream.next().await {
        match msg?.chunk {
            Some(Chunk::Archive(c)) => archive.extend(c),
            Some(Chunk::State(c)) => state.extend(c),
            None => {}
        }
    }
    Ok((archive, state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn job_input_and_finish_refusals_store_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (coord, key) = quiet_stack(tmp.path()).await;
    coord.create_workspace("ws", "t", "alice", &[]).await;
    let mut d = RawDaemon::open(&coord, &key, "raw", proto::DaemonState::Idle).await;
    let offer = d.claim().await;
    let job = offer.job_id.clone();
    let build = offer.workspace_build.clone().expect("a build");
    assert_eq!((build.state_size, build.state_sha256), (0, sha256_hex(b"")));

    // The owner gets the archive the offer announced; nobody else does.
    let secret = offer.job_secret.clone();
    let (archive, state) = fetch(&d.client, &job, &secret).await.unwrap();
    assert_eq!(archive.len() as u64, offer.template_archive_size);
    assert_eq!(sha256_hex(&archive), offer.template_archive_sha256);
    assert!(state.is_empty(), "first build: no state");
    let other = raw::client(&coord, &key, "other").await;
    refused(
        fetch(&other, &job, &secret).await,
        Code::PermissionDenied,
        "not owned",
    );
    refused(
        fetch(&d.client, "no-such-job", &secret).await,
        Code::NotFound,
        "",
    );

    let header = FinishJobRequest {
        job_id: job.clone(),
        outcome: JobOutcome::Succeeded as i32,
        job_secret: secret.clone(),
        ..Default::default()
    };
    let state = noise(5 << 20);
    let with = |f: fn(&mut FinishJobRequest)| {
        let mut parts = finish_job_parts(header.clone(), Some(&state));
        if let Some(FinishPart::Header(h)) = &mut parts[0].part {
            f(h);
        }
        parts
    };
    let limit = format!(
        "over the --max-state-bytes limit of {}",
        Size(MAX_STATE_BYTES)
    );
    refused(
        finish_raw(&d.client, with(|h| h.state_size = MAX_STATE_BYTES + 1)).await,
        Code::InvalidArgument,
        &limit,
    );
    refused(
        finish_raw(&d.client, with(|h| h.state_size = 10)).await,
        Code::InvalidArgument,
        "state is 1048576 bytes, expected 10",
    );
    refused(
        finish_raw(&d.client, with(|h| h.state_size += 1)).await,
        Code::InvalidArgument,
        &format!("state is {} bytes, expected {}", 5 << 20, (5 << 20) + 1),
    );
    refused(
        finish_raw(&d.client, with(|h| h.state_sha256 = sha256_hex(b"x"))).await,
        Code::InvalidArgument,
        "sha256",
    );
    assert_eq!(coord.job(&job).await.status, "running", "nothing stored");
    assert_eq!(coord.stored_state("ws"), None);

    // One message over 4 MiB is refused by gRPC itself.
    let line = proto::LogLine {
        seq: 1,
        output: "x".repeat(MAX_MESSAGE_BYTES),
        ..Default::default()
    };
    let big = proto::UpdateJobRequest {
        job_id: job.clone(),
        logs: vec![line],
        job_secret: secret.clone(),
    };
    let st = d.client.clone().update_job(big).await.unwrap_err();
    assert!(
        matches!(st.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{st:?}"
    );
    assert_eq!(coord.job(&job).await.log_count, 0);

    // The same 5 MiB state, consistent, is stored whole.
    finish_raw(&d.client, finish_job_parts(header, Some(&state)))
        .await
        .expect("a consistent finish is taken");
    assert_eq!(coord.job(&job).await.status, "succeeded");
    assert_eq!(coord.stored_state("ws"), Some(state));
    coord.stop().await;
}
