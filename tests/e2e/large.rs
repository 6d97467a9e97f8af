//! Blobs larger than one gRPC message: a 20 MiB terraform state makes the
//! whole trip with real terraform (stored from a chunked FinishJob, fetched
//! back in chunks by the next build), and oversized or inconsistent
//! transfers are refused without storing anything (`limits`, driven with a
//! raw client).

mod limits;

use std::path::Path;
use std::time::Duration;

use provisionerd::proto::{self, Transition};
use tokio::time::Instant;

use crate::common::{Coord, Daemon, stack};
use crate::template;

/// One `terraform_data` whose input is 220 000 × 50 characters (11 MB);
/// its state holds it twice (input and output): about 22 MB.
const BIG: &str = r#"
resource "terraform_data" "big" {
  input = join("", [for i in range(1000) : join("", [for j in range(220) : "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"])])
}
"#;

/// How long a job of BIG may take: terraform evaluates an 11 MB expression
/// and writes a 22 MB state, which on a loaded machine takes more than a
/// minute (the usual bound) per job.
const BIG_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits up to [`BIG_TIMEOUT`] for job `id` to succeed.
async fn wait_big(coord: &Coord, id: &str) -> proto::Job {
    let deadline = Instant::now() + BIG_TIMEOUT;
    loop {
        let job = coord.job(id).await;
        match job.status.as_str() {
            "succeeded" => return job,
            "failed" | "canceled" => panic!("job {id} {}: {}", job.status, job.error),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "job {id} still {} after {BIG_TIMEOUT:?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The id terraform gave `terraform_data.big`, and the length of its input.
fn big_resource(state: &[u8]) -> (String, usize) {
    let v: serde_json::Value = serde_json::from_slice(state).expect("state is JSON");
    let attrs = &v["resources"][0]["instances"][0]["attributes"];
    (
        attrs["id"].as_str().expect("an id").to_string(),
        // `input` is dynamic: stored as {"value": …, "type": …}.
        attrs["input"]["value"].as_str().expect("an input").len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_20_mib_state_round_trips_in_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = template(tmp.path(), "big", BIG);
    // A 5 MiB file beside main.tf: the archive itself spans chunks too.
    let blob: Vec<u8> = (0..5u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("blob.bin"), blob).unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let d = Daemon::start(&coord.url, &key, "d1", &tmp.path().join("c1"));
    wait_big(&coord, &coord.push("big", &dir, &[]).await).await;

    // Create: terraform's 22 MB state comes back in a chunked FinishJob.
    let create = coord.create_workspace("ws", "big", "alice", &[]).await;
    let job = wait_big(&coord, &create).await;
    eprintln!("create: {} ms", job.finished_at - job.started_at);
    let state = coord.stored_state("ws").expect("the state is stored");
    assert!(state.len() >= 20 << 20, "state is {} bytes", state.len());
    let (id, input_len) = big_resource(&state);
    assert_eq!(input_len, 11_000_000);
    // Start again: the daemon fetches the 22 MB state in chunks; terraform
    // sees its resource and changes nothing.
    let start = coord.build("ws", Transition::Start).await;
    let job = wait_big(&coord, &start).await;
    eprintln!("start again: {} ms", job.finished_at - job.started_at);
    let again = coord.stored_state("ws").expect("the state is kept");
    assert_eq!(big_resource(&again), (id, input_len), "the same resource");
    let logs = coord.logs(&start).await;
    let text: Vec<&str> = logs.iter().map(|l| l.output.as_str()).collect();
    assert!(
        text.iter()
            .any(|l| l.contains("0 to add, 0 to change, 0 to destroy")),
        "the plan changes nothing: {text:#?}"
    );

    let delete = coord.build("ws", Transition::Destroy).await;
    wait_big(&coord, &delete).await;
    assert!(
        coord.workspace("ws").await.is_err(),
        "the workspace is gone"
    );
    d.stop().await.unwrap();
    coord.stop().await;
}

/// A coordinator with an untagged key, template `t` imported by a daemon
/// that is gone again, so jobs wait for a raw client to take them.
pub async fn quiet_stack(root: &Path) -> (Coord, String) {
    let dir = template(root, "t", crate::QUICK);
    let (coord, d) = stack(root, "t", &dir).await;
    d.stop().await.unwrap();
    let key = coord.create_key("raw", &[]).await;
    (coord, key)
}

/// A state over `--max-state-bytes` is refused; the daemon keeps it in its
/// cache dir and reports the job failed, naming the file — the job ends,
/// the workspace keeps its previous state, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_state_over_the_limit_is_kept_by_the_daemon_and_the_job_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start_config(provisionerd::coordinator::ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: tmp.path().join("data"),
        allow_new_database: false,
        job_lease: std::time::Duration::from_secs(60),
        tls: None,
        archive_limits: Default::default(),
        max_state_bytes: 64 * 1024,
        metrics_address: None,
        prebuild_reconcile_interval: None,
        prebuild_failure_hard_limit: 3,
        offer_timeout: provisionerd::coordinator::DEFAULT_OFFER_TIMEOUT,
        connections: Default::default(),

        database_url: provisionerd::coordinator::store::testdb::url_for(&tmp.path().join("data"))
            .unwrap(),

        database_pool: 16,

        admin_token_file: None,
    })
    .await;
    let key = coord.create_key("k", &[]).await;
    let cache = tmp.path().join("c1");
    let d = crate::common::Daemon::start(&coord.url, &key, "d1", &cache);
    let body = r#"
resource "terraform_data" "big" {
  input = join("", [for i in range(40) : join("", [for j in range(50) : "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"])])
}
"#;
    let dir = template(tmp.path(), "big", body);
    coord
        .wait_succeeded(&coord.push("big", &dir, &[]).await)
        .await;

    let create = coord.create_workspace("ws", "big", "alice", &[]).await;
    let job = coord.wait_job(&create).await;
    assert_eq!(job.status, "failed", "{job:?}");
    assert!(
        job.error
            .contains("over the --max-state-bytes limit of 64KiB"),
        "{}",
        job.error
    );
    let kept = cache
        .join("refused-states")
        .join(format!("{create}.tfstate"));
    assert!(
        job.error
            .contains(&format!("the daemon kept it at {}", kept.display())),
        "{}",
        job.error
    );
    let state = std::fs::read(&kept).expect("the refused state is kept");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // A state holds secrets: owner only, the directory and the file.
    assert_eq!(mode(kept.parent().unwrap()), 0o700);
    assert_eq!(mode(&kept), 0o600);
    let (_, input_len) = big_resource(&state);
    assert_eq!(input_len, 100_000, "the whole state");
    assert_eq!(coord.stored_state("ws"), None, "nothing stored");
    d.stop().await.unwrap();
    coord.stop().await;
}
