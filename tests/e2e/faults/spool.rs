//! Logs spilled to disk during an outage: delivered once and in order, or,
//! when the spool cannot be read back, the job failed with what arrived.

use std::time::Duration;

use prost::Message;
use provisionerd::proto::LogLine;
use tokio::time::Instant;

use super::{assert_gapless, build, numbered, restart};
use crate::common::procs;
use crate::common::{Coord, Daemon, TIMEOUT};

/// A provisioner that waits at `gate`, prints `line-1..=lines` at once,
/// then touches `done`.
fn gated(gate: &std::path::Path, done: &std::path::Path, lines: u64) -> String {
    format!(
        r#"
resource "terraform_data" "w" {{
  provisioner "local-exec" {{
    command = "while [ ! -e {gate} ]; do sleep 0.1; done; seq -f 'line-%g' 1 {lines}; touch {done}"
  }}
}}
"#,
        gate = gate.display(),
        done = done.display(),
    )
}

/// Waits until the provisioner waits at its gate.
async fn wait_at_gate(coord: &Coord, job: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !coord
        .logs(job)
        .await
        .iter()
        .any(|l| l.output.contains("while [ ! -e"))
    {
        assert!(Instant::now() < deadline, "the provisioner never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the last whole record of the spool at `path` is the line
/// `output`. The spool's format: a little-endian `u32` length, then a
/// protobuf `LogLine` (src/daemon/spool.rs).
async fn wait_spooled_last(path: &std::path::Path, output: &str) {
    let last = || {
        let bytes = std::fs::read(path).ok()?;
        let (mut rest, mut last) = (&bytes[..], None);
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let Some(body) = tail.get(..u32::from_le_bytes(*len) as usize) else {
                break;
            };
            last = Some(LogLine::decode(body).expect("a spool record").output);
            rest = &tail[body.len()..];
        }
        last
    };
    let deadline = Instant::now() + TIMEOUT;
    while last().as_deref() != Some(output) {
        assert!(
            Instant::now() < deadline,
            "the spool's last line is {:?}, never {output:?}",
            last()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until terraform wrote everything, without the coordinator.
async fn wait_done(done: &std::path::Path) {
    let deadline = Instant::now() + TIMEOUT;
    while !done.exists() {
        assert!(
            Instant::now() < deadline,
            "terraform was held up by the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn lines_spilled_to_disk_during_an_outage_arrive_once_in_order() {
    const LINES: u64 = 30_000;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut serve, url, token) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("k", &[]).await;
    let cache = tmp.path().join("c1");
    let d = Daemon::start(&url, &key, "d1", &cache);
    let (gate, done) = (tmp.path().join("gate"), tmp.path().join("done"));
    let job = build(&coord, tmp.path(), &gated(&gate, &done, LINES)).await;

    // The provisioner waits at the gate; the coordinator goes away.
    wait_at_gate(&coord, &job).await;
    serve.kill9().await;
    std::fs::write(&gate, "").unwrap();
    // terraform prints everything without the coordinator: nothing blocks.
    wait_done(&done).await;
    // Lines beyond the memory bound go to disk; the daemon may still be
    // reading terraform's output when the provisioner is done.
    let spool = cache.join(format!("spool/{job}.log"));
    procs::wait_path(&spool, true).await;

    let _serve = restart(&data, &url, "60s").await;
    let finished = coord.wait_succeeded(&job).await;
    let logs = coord.logs(&job).await;
    assert_gapless(&finished, &logs);
    assert_eq!(numbered(&logs), (1..=LINES).collect::<Vec<_>>());
    assert!(!spool.exists(), "the spool is removed once delivered");
    d.stop().await.unwrap();
}

#[tokio::test]
async fn a_spool_that_cannot_be_read_back_fails_the_job_with_its_lines_and_state() {
    const LINES: u64 = 30_000;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut serve, url, token) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("k", &[]).await;
    let cache = tmp.path().join("c1");
    let d = procs::start(&url, &key, "d1", &cache, &[]);
    let (gate, done) = (tmp.path().join("gate"), tmp.path().join("done"));
    let job = build(&coord, tmp.path(), &gated(&gate, &done, LINES)).await;

    wait_at_gate(&coord, &job).await;
    serve.kill9().await;
    std::fs::write(&gate, "").unwrap();
    wait_done(&done).await;
    // The runner's last line is spooled: it returned, nothing appends to
    // the spool any more. Its tail goes (a full disk, a meddling hand):
    // those lines cannot be delivered.
    let spool = cache.join(format!("spool/{job}.log"));
    wait_spooled_last(&spool, "Removing the work dir").await;
    let len = std::fs::metadata(&spool).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&spool)
        .unwrap()
        .set_len(len * 2 / 3)
        .unwrap();

    let _serve = restart(&data, &url, "60s").await;
    let failed = coord.wait_job(&job).await;
    assert_eq!(failed.status, "failed");
    assert!(
        failed.error.contains(&spool.display().to_string())
            && failed.error.ends_with("terraform itself succeeded"),
        "{}",
        failed.error
    );
    let logs = coord.logs(&job).await;
    assert_gapless(&failed, &logs);
    let n = numbered(&logs);
    assert!(
        n.len() > 1000 && (n.len() as u64) < LINES,
        "{} lines",
        n.len()
    );
    assert_eq!(n, (1..=n.len() as u64).collect::<Vec<_>>());
    d.wait_log("read back the job's log spool failed").await;
    assert!(d.log_text().contains(&spool.display().to_string()));

    // The state terraform returned was kept.
    let store = provisionerd::coordinator::store::testdb::open(&data).unwrap();
    let state = store.workspace("ws").unwrap().state.expect("a state");
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["resources"][0]["name"], "w");
    // Removed once the report was taken, after the coordinator stored it.
    procs::wait_path(&cache.join(format!("records/{job}.json")), false).await;
}
