//! Queue order and exclusive claiming.

use std::time::Duration;

use crate::common::{Coord, Daemon, wait_connected};
use crate::{QUICK, template};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn human_jobs_go_before_prebuilds() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let dir = template(tmp.path(), "t", QUICK);
    let import = coord.push("t", &dir, &[]).await;
    let d = Daemon::start(&coord.url, &key, "d1", &tmp.path().join("c1"));
    coord.wait_succeeded(&import).await;
    d.stop().await.unwrap();

    // No daemon connected: prebuilds queue first, a person's job last.
    let p1 = coord.create_workspace("p1", "t", "prebuilds", &[]).await;
    let p2 = coord.create_workspace("p2", "t", "prebuilds", &[]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let human = coord.create_workspace("h1", "t", "alice", &[]).await;

    let d = Daemon::start(&coord.url, &key, "d2", &tmp.path().join("c2"));
    let (h, a, b) = (
        coord.wait_succeeded(&human).await,
        coord.wait_succeeded(&p1).await,
        coord.wait_succeeded(&p2).await,
    );
    assert!(h.started_at < a.started_at, "the person's job ran first");
    assert!(a.started_at < b.started_at, "then prebuilds, oldest first");
    d.stop().await.unwrap();
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_daemons_race_for_ten_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let runs = tmp.path().join("runs.log");
    // Every apply appends its workspace name: a job run twice shows twice.
    let body = format!(
        r#"
resource "terraform_data" "w" {{
  provisioner "local-exec" {{
    command = "echo $CODER_WORKSPACE_NAME >> {}"
  }}
}}
"#,
        runs.display()
    );
    let dir = template(tmp.path(), "t", &body);
    let import = coord.push("t", &dir, &[]).await;
    let daemons: Vec<Daemon> = (0..20)
        .map(|i| {
            Daemon::start(
                &coord.url,
                &key,
                &format!("d{i}"),
                &tmp.path().join(format!("c{i}")),
            )
        })
        .collect();
    wait_connected(&coord, 20).await;
    coord.wait_succeeded(&import).await;
    let mut jobs = Vec::new();
    for i in 0..10 {
        jobs.push(
            coord
                .create_workspace(&format!("ws{i}"), "t", "alice", &[])
                .await,
        );
    }
    for j in &jobs {
        coord.wait_succeeded(j).await;
    }
    let mut lines: Vec<String> = std::fs::read_to_string(&runs)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("ws{i}")).collect();
    want.sort();
    assert_eq!(lines, want, "every job ran exactly once");
    for d in daemons {
        d.stop().await.unwrap();
    }
    coord.stop().await;
}

/// 50 daemon sessions under three keys with different tags race for 150
/// jobs of four tag sets: every job is offered to exactly one session, of
/// a key allowed to take it, and runs to the end there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_sessions_of_three_pools_take_each_job_once_and_only_their_own() {
    use provisionerd::proto::{self, DaemonState, coordinator_message::Msg as Out};
    use std::collections::BTreeMap;
    use tokio_util::sync::CancellationToken;

    use crate::raw::RawDaemon;

    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let pools: [(&str, &[(&str, &str)]); 3] = [
        ("general", &[]),
        ("a", &[("pool", "a")]),
        ("b", &[("pool", "b"), ("zone", "x")]),
    ];
    let mut keys = Vec::new();
    for (name, tags) in pools {
        keys.push(coord.create_key(name, tags).await);
    }
    let job_sets: [&[(&str, &str)]; 4] =
        [&[], &[("pool", "a")], &[("zone", "x")], &[("pool", "b")]];
    // Which pool may take each set: untagged → general; the rest by subset.
    let owner_pool = ["general", "a", "b", "b"];
    let dir = template(tmp.path(), "t", QUICK);
    let mut want: BTreeMap<String, &str> = BTreeMap::new();
    for n in 0..150 {
        let set = n % job_sets.len();
        let job = coord.push(&format!("t{n}"), &dir, job_sets[set]).await;
        want.insert(job, owner_pool[set]);
    }

    let done = CancellationToken::new();
    let mut sessions = Vec::new();
    for i in 0..50 {
        let pool = pools[i % 3].0;
        let mut d = RawDaemon::open(
            &coord,
            &keys[i % 3],
            &format!("{pool}-{i}"),
            DaemonState::Idle,
        )
        .await;
        let done = done.clone();
        sessions.push(tokio::spawn(async move {
            let mut ran = Vec::new();
            loop {
                d.send(proto::daemon_message::Msg::Acquire(proto::Acquire {}))
                    .await;
                let msg = tokio::select! {
                    m = d.inbound.message() => m.expect("session stream").expect("session open"),
                    _ = done.cancelled() => return (pool, ran),
                };
                // Nothing else: not even a CancelJob for a job whose AckJob
                // arrived after its finish.
                let Some(Out::JobOffer(offer)) = msg.msg else {
                    panic!("{}: expected an offer, got {msg:?}", d.name);
                };
                d.secrets
                    .insert(offer.job_id.clone(), offer.job_secret.clone());
                d.ack(&offer.job_id).await;
                d.update(&offer.job_id).await.expect("confirm the offer");
                let finish = proto::FinishJobRequest {
                    job_id: offer.job_id.clone(),
                    outcome: proto::JobOutcome::Succeeded as i32,
                    ..Default::default()
                };
                d.finish(finish, None).await.expect("finish");
                ran.push(offer.job_id);
            }
        }));
    }
    for job in want.keys() {
        coord.wait_succeeded(job).await;
    }
    done.cancel();
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for s in sessions {
        let (pool, ran) = tokio::time::timeout(Duration::from_secs(60), s)
            .await
            .expect("sessions end")
            .unwrap();
        for job in ran {
            assert_eq!(want[&job], pool, "{job} ran in the wrong pool");
            assert!(seen.insert(job.clone(), pool).is_none(), "{job} ran twice");
        }
    }
    assert_eq!(seen.len(), want.len(), "every job ran");
    coord.stop().await;
}
