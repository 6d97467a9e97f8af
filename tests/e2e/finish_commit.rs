//! A FinishJob counts only once its sender ended the stream: one canceled
//! after its last chunk stores nothing. A job's report, once taken, stands:
//! the same report again is acknowledged (a retry whose answer was lost),
//! a different one is refused, naming the difference.

use std::time::Duration;

use provisionerd::chunk::{finish_job_parts, sha256_hex};
use provisionerd::grpc::CHUNK_BYTES;
use provisionerd::proto::{DaemonState, FinishJobRequest, JobOutcome};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::common::procs::{self, Proc};
use crate::common::{Coord, TIMEOUT};
use crate::raw::RawDaemon;
use crate::{QUICK, template};

/// A state of two chunks, told apart by `tag`.
fn state(tag: &str) -> Vec<u8> {
    let mut s = format!("{{\"version\":4,\"tag\":\"{tag}\",\"pad\":\"").into_bytes();
    s.resize(CHUNK_BYTES + 1000, b'x');
    s.extend_from_slice(b"\"}");
    s
}

fn report(job: &str, outcome: JobOutcome) -> FinishJobRequest {
    FinishJobRequest {
        job_id: job.into(),
        outcome: outcome as i32,
        ..Default::default()
    }
}

/// Waits until the coordinator's log shows it is done with the canceled
/// finish of `job`: refused (nothing stored), or taken (the bug).
async fn wait_finish_handled(serve: &Proc, job: &str) {
    let refused = format!("finish job {job}: the request stream broke");
    let taken = format!("job finished job={job}");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let log = serve.log_text();
        if log.contains(&refused) || log.contains(&taken) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the coordinator never handled the canceled finish:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canceled_finish_stores_nothing_and_a_taken_report_stands() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (serve, url, token) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("raw", &[]).await;
    let import = coord
        .push("t", &template(tmp.path(), "t", QUICK), &[])
        .await;
    let mut d = RawDaemon::open(&coord, &key, "raw", DaemonState::Idle).await;
    assert_eq!(d.claim().await.job_id, import);
    d.finish(report(&import, JobOutcome::Succeeded), None)
        .await
        .expect("the import is reported");
    let build = coord.create_workspace("ws", "t", "alice", &[]).await;
    assert_eq!(d.claim().await.job_id, build);

    // Header and every state chunk, then the call is dropped without the
    // stream ever ending: hyper resets the HTTP/2 stream (CANCEL).
    let first = state("first");
    let header = FinishJobRequest {
        job_secret: d.secret(&build),
        ..report(&build, JobOutcome::Succeeded)
    };
    let parts = finish_job_parts(header, Some(&first));
    assert_eq!(parts.len(), 3, "a header and two chunks");
    let (tx, rx) = mpsc::channel(parts.len());
    let mut client = d.client.clone();
    let call = tokio::spawn(async move { client.finish_job(ReceiverStream::new(rx)).await });
    for p in parts {
        tx.send(p).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while tx.capacity() < tx.max_capacity() {
        assert!(tokio::time::Instant::now() < deadline, "parts never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The client has taken every part; give its connection task time to
    // write them out, so the reset follows the last chunk on the wire (the
    // case that used to commit). What follows holds however it lands.
    tokio::time::sleep(Duration::from_secs(2)).await;
    call.abort();
    let _ = call.await;
    wait_finish_handled(&serve, &build).await;
    let job = coord.job(&build).await;
    assert_eq!(job.status, "running", "a canceled finish ends nothing");
    assert_eq!(coord.stored_state("ws"), None, "and stores no state");
    drop(tx);

    // The whole report again, ended properly: taken.
    let ok = state("ok");
    d.finish(report(&build, JobOutcome::Succeeded), Some(&ok))
        .await
        .expect("a complete finish is taken");
    assert_eq!(coord.job(&build).await.status, "succeeded");
    assert_eq!(coord.stored_state("ws"), Some(ok.clone()));

    // Another state: refused, naming both hashes; the first one stays.
    let other = state("other");
    let err = d
        .finish(report(&build, JobOutcome::Succeeded), Some(&other))
        .await
        .expect_err("a different state is refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let names = format!(
        "state sha256 {} (this report: sha256 {})",
        sha256_hex(&ok),
        sha256_hex(&other)
    );
    assert!(err.message().contains(&names), "{names:?} not in {err:?}");
    assert!(err.message().contains(&build), "names the job: {err:?}");
    // Another outcome (and no state): refused, naming both.
    let err = d
        .finish(report(&build, JobOutcome::Failed), None)
        .await
        .expect_err("a different outcome is refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("outcome succeeded (this report: failed)"),
        "{err:?}"
    );
    assert_eq!(coord.stored_state("ws"), Some(ok.clone()), "kept");
    let job = coord.job(&build).await;
    assert_eq!((job.status.as_str(), job.error.as_str()), ("succeeded", ""));

    // The same report again (its answer was lost): acknowledged.
    d.finish(report(&build, JobOutcome::Succeeded), Some(&ok))
        .await
        .expect("an identical repeat is acknowledged");
    assert_eq!(coord.stored_state("ws"), Some(ok));
}
