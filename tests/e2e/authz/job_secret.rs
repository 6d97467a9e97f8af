//! Job secrets: daemons sharing a key are no longer one principal. A
//! sibling holding the same key and naming itself after the daemon a job
//! was offered to is refused on every call about that job — without the
//! job's secret, with a made-up one, or with the secret of its own job —
//! and nothing about the job changes; the owner then finishes it normally.

use std::time::Duration;

use provisionerd::chunk::sha256_hex;
use provisionerd::proto::{self, DaemonState, JobOutcome, daemon_message::Msg as In};
use tokio::time::Instant;
use tonic::Code;

use crate::common::{Coord, Daemon, TIMEOUT};
use crate::raw::{self, Client, RawDaemon};
use crate::{QUICK, template};

fn line(seq: u64, output: &str) -> proto::LogLine {
    proto::LogLine {
        seq,
        output: output.into(),
        ..Default::default()
    }
}

/// The refusal every forged call gets: PERMISSION_DENIED naming the job,
/// never the secret it was given.
fn assert_denied(what: &str, r: Result<(), tonic::Status>, job: &str, secret: &str) {
    let st = r.expect_err(what);
    assert_eq!(st.code(), Code::PermissionDenied, "{what}: {st:?}");
    let m = st.message();
    assert!(
        m.contains(&format!("job {job} belongs to another daemon")),
        "{what}: {m}"
    );
    let why = if secret.is_empty() {
        "the request did not carry its job secret"
    } else {
        "the request's job secret is not the one its offer handed out"
    };
    assert!(m.ends_with(why), "{what}: {m}");
    assert!(
        secret.is_empty() || !m.contains(secret),
        "{what}: the secret is repeated: {m}"
    );
}

/// UpdateJob (a line), GetJobInput and FinishJob (with a state) for `job`,
/// each presenting `secret`: all refused.
async fn forge(client: &mut Client, job: &str, secret: &str) {
    let update = client
        .update_job(proto::UpdateJobRequest {
            job_id: job.into(),
            logs: vec![line(2, "forged line")],
            job_secret: secret.into(),
        })
        .await;
    assert_denied("UpdateJob", update.map(|_| ()), job, secret);
    let input = client
        .get_job_input(proto::GetJobInputRequest {
            job_id: job.into(),
            job_secret: secret.into(),
        })
        .await;
    assert_denied("GetJobInput", input.map(|_| ()), job, secret);
    let forged = proto::FinishJobRequest {
        job_id: job.into(),
        outcome: JobOutcome::Failed as i32,
        error: "forged failure".into(),
        log_count: 2,
        job_secret: secret.into(),
        ..Default::default()
    };
    let finish = raw::finish(client, forged, Some(b"{\"forged\": true}")).await;
    assert_denied("FinishJob", finish, job, secret);
}

/// Template `t` imported, no daemon connected, and key `raw` for the raw
/// daemons. Offers stay a minute: the forged calls made while the job is
/// only offered must not race the offer's timeout on a loaded machine.
async fn patient_stack(root: &std::path::Path) -> (Coord, String) {
    let coord = Coord::start_config(provisionerd::coordinator::ServeConfig {
        offer_timeout: Duration::from_secs(60),
        ..Coord::config(&root.join("data"))
    })
    .await;
    let dir = template(root, "t", QUICK);
    let importer = coord.create_key("k", &[]).await;
    let d = Daemon::start(&coord.url, &importer, "d1", &root.join("c1"));
    coord
        .wait_succeeded(&coord.push("t", &dir, &[]).await)
        .await;
    d.stop().await.unwrap();
    let key = coord.create_key("raw", &[]).await;
    (coord, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sibling_with_the_same_key_and_a_forged_name_is_refused_and_the_owner_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let (coord, key) = patient_stack(tmp.path()).await;
    let job = coord.create_workspace("ws", "t", "alice", &[]).await;
    let mut owner = RawDaemon::open(&coord, &key, "owner", DaemonState::Idle).await;
    owner.send(In::Acquire(proto::Acquire {})).await;
    let offer = owner.offer().await;
    assert_eq!(offer.job_id, job);
    let secret = owner.secret(&job);
    assert!(secret.starts_with("pdj_") && secret.len() == 68, "{secret}");

    // A sibling of the same key runs a job of its own: it holds a real
    // secret, of another job.
    let other_job = coord.create_workspace("ws2", "t", "alice", &[]).await;
    let mut sibling = RawDaemon::open(&coord, &key, "sibling", DaemonState::Idle).await;
    assert_eq!(sibling.claim().await.job_id, other_job);
    let own_secret = sibling.secret(&other_job);
    // It names itself after the owner on its calls.
    let mut forger = raw::client(&coord, &key, "owner").await;
    let made_up = format!("pdj_{}", "0".repeat(64));
    let secrets = ["", made_up.as_str(), own_secret.as_str()];

    // While the job is only offered: the forgery does not acknowledge it.
    for s in secrets {
        forge(&mut forger, &job, s).await;
    }
    let offered = coord.job(&job).await;
    assert_eq!(
        (offered.status.as_str(), offered.offered_to.as_str()),
        ("pending", "owner"),
        "still the owner's offer"
    );

    owner.ack(&job).await;
    owner
        .update(&job)
        .await
        .expect("the owner confirms the job");
    owner
        .client
        .update_job(proto::UpdateJobRequest {
            job_id: job.clone(),
            logs: vec![line(1, "the owner's line")],
            job_secret: secret.clone(),
        })
        .await
        .expect("the owner ships");

    // Running: the same, and nothing about the job changes.
    for s in secrets {
        forge(&mut forger, &job, s).await;
    }
    let now = coord.job(&job).await;
    assert_eq!(
        (
            now.status.as_str(),
            now.daemon.as_str(),
            now.log_count,
            now.error.as_str()
        ),
        ("running", "owner", 1, ""),
        "the forgeries changed nothing"
    );
    let outputs: Vec<String> = coord
        .logs(&job)
        .await
        .into_iter()
        .map(|l| l.output)
        .collect();
    assert_eq!(outputs, ["the owner's line"]);
    assert_eq!(coord.stored_state("ws"), None, "no state stored");

    // The owner fetches its input and finishes normally.
    let mut input = owner
        .client
        .get_job_input(proto::GetJobInputRequest {
            job_id: job.clone(),
            job_secret: secret.clone(),
        })
        .await
        .expect("the owner fetches its input")
        .into_inner();
    let mut archive = Vec::new();
    while let Some(chunk) = input.message().await.expect("input stream") {
        if let Some(proto::job_input_chunk::Chunk::Archive(b)) = chunk.chunk {
            archive.extend(b);
        }
    }
    assert_eq!(sha256_hex(&archive), offer.template_archive_sha256);
    let state = b"{\"version\": 4, \"owner\": true}";
    let report = proto::FinishJobRequest {
        job_id: job.clone(),
        outcome: JobOutcome::Succeeded as i32,
        log_count: 1,
        has_state: true,
        ..Default::default()
    };
    owner.finish(report, Some(state)).await.unwrap();
    let done = coord.job(&job).await;
    assert_eq!(
        (done.status.as_str(), done.error.as_str(), done.log_count),
        ("succeeded", "", 1)
    );
    assert_eq!(coord.stored_state("ws").as_deref(), Some(&state[..]));
    // The sibling's own job is untouched by all this, and still its own.
    let report = proto::FinishJobRequest {
        job_id: other_job.clone(),
        outcome: JobOutcome::Succeeded as i32,
        ..Default::default()
    };
    sibling.finish(report, None).await.unwrap();
    assert_eq!(coord.job(&other_job).await.status, "succeeded");
    coord.stop().await;
}

/// Forged heartbeats do not renew a job's lease: a job whose owner went
/// silent is failed when the lease runs out, however often a sibling with
/// the owner's key and name calls UpdateJob for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_heartbeats_do_not_keep_a_silent_owners_job_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let lease = Duration::from_secs(2);
    let coord = Coord::start_with_lease(&tmp.path().join("data"), lease).await;
    let key = coord.create_key("k", &[]).await;
    let job = coord
        .push("t", &template(tmp.path(), "t", QUICK), &[])
        .await;
    let mut owner = RawDaemon::open(&coord, &key, "owner", DaemonState::Idle).await;
    assert_eq!(owner.claim().await.job_id, job);
    let silent = Instant::now();
    let mut forger = raw::client(&coord, &key, "owner").await;
    let deadline = silent + TIMEOUT;
    let failed = loop {
        let beat = forger
            .update_job(proto::UpdateJobRequest {
                job_id: job.clone(),
                ..Default::default()
            })
            .await;
        let now = coord.job(&job).await;
        if now.status != "running" {
            break now;
        }
        assert_denied("UpdateJob", beat.map(|_| ()), &job, "");
        assert!(
            Instant::now() < deadline,
            "the job outlived its lease by far: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed.status, "failed");
    assert!(failed.error.contains("daemon \"owner\" lost"), "{failed:?}");
    // The lease, the reaper's period (a quarter of it) and slack for a
    // loaded machine.
    assert!(
        silent.elapsed() < lease + lease / 4 + Duration::from_secs(5),
        "{:?}",
        silent.elapsed()
    );
    coord.stop().await;
}
