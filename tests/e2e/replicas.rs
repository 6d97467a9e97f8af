//! Several coordinator replicas on one PostgreSQL database (always
//! PostgreSQL: see `common::pg`): one queue, each job once, people first;
//! a replica killed mid-job loses nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::pg::Server;
use crate::common::{Coord, Daemon, procs, wait_connected};
use crate::faults::{slow, wait_line};
use crate::template;

const TOKEN: &str = "pda_replicas_test_token_0123456789";

/// Three replicas, twelve daemons spread over them, and a queue of
/// prebuilds older than the people's jobs: every job runs exactly once,
/// and the people's go first even though they are newer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_run_each_job_once_people_first() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Server::start();
    let db = pg.database(&tmp.path().join("db"));
    let mut replicas = Vec::new();
    for i in 0..3 {
        replicas.push(Coord::start_replica(&tmp.path().join(format!("r{i}")), &db, TOKEN).await);
    }
    let a = &replicas[0];
    let key = a.create_key("k", &[]).await;
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
    let import = replicas[1].push("t", &dir, &[]).await;
    let importer = Daemon::start(&replicas[2].url, &key, "importer", &tmp.path().join("ci"));
    a.wait_succeeded(&import).await;
    importer.stop().await.unwrap();

    // The queue, made on all three replicas while no daemon waits:
    // prebuilds first (older), then people.
    let mut jobs = BTreeMap::new();
    for i in 0..12 {
        let r = &replicas[i % 3];
        let id = r.create_workspace(&format!("p{i}"), "t", "prebuilds", &[]).await;
        jobs.insert(id, false);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 0..12 {
        let r = &replicas[i % 3];
        let id = r.create_workspace(&format!("h{i}"), "t", "alice", &[]).await;
        jobs.insert(id, true);
    }
    let daemons: Vec<Daemon> = (0..12)
        .map(|i| {
            Daemon::start(
                &replicas[i % 3].url,
                &key,
                &format!("d{i}"),
                &tmp.path().join(format!("c{i}")),
            )
        })
        .collect();
    wait_connected(a, 12).await;
    let mut started = Vec::new();
    for (id, human) in &jobs {
        let j = replicas[2].wait_succeeded(id).await;
        started.push((j.started_at, *human));
    }
    let mut lines: Vec<String> = std::fs::read_to_string(&runs)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    let mut unique = lines.clone();
    unique.dedup();
    assert_eq!(lines, unique, "a job ran twice");
    assert_eq!(lines.len(), 24, "every job ran: {lines:?}");
    // Twelve daemons, twelve people: the first wave is the people's. A
    // prebuild acknowledged a moment before the last person's job is
    // fine; a prebuild run first would start a whole job earlier.
    let last_human = started.iter().filter(|s| s.1).map(|s| s.0).max().unwrap();
    let first_prebuild = started.iter().filter(|s| !s.1).map(|s| s.0).min().unwrap();
    assert!(
        first_prebuild + 1000 >= last_human,
        "a prebuild started at {first_prebuild}, before the people's jobs (last at {last_human})"
    );
    for d in daemons {
        d.stop().await.unwrap();
    }
    for r in replicas {
        r.stop().await;
    }
}

/// `kill -9` of the replica a daemon works through, mid-job: the daemon
/// moves to another replica (it was given all three), the job completes,
/// every log line is stored once, and the state is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_job_loses_no_line_and_keeps_the_state() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Server::start();
    let db = pg.database(&tmp.path().join("db"));
    let mut procs_ = Vec::new();
    let mut urls = Vec::new();
    for i in 0..3 {
        let data = tmp.path().join(format!("r{i}"));
        // Where `serve` would write a first-start token (and the harness
        // reads it): the token every replica is given.
        std::fs::create_dir_all(&data).unwrap();
        let token_file = data.join("admin-token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let (p, url, _) = procs::serve_with(
            &data,
            "127.0.0.1:0",
            "60s",
            &["--database-url", &db, "--admin-token-file", token_file.to_str().unwrap()],
        )
        .await;
        procs_.push(p);
        urls.push(url);
    }
    let a = Coord::attach(&urls[0], &tmp.path().join("r0"), TOKEN);
    let b = Coord::attach(&urls[1], &tmp.path().join("r1"), TOKEN);
    let key = a.create_key("k", &[]).await;
    let dir = template(tmp.path(), "t", &slow(40, "0.2", 0));
    let import = a.push("t", &dir, &[]).await;
    // The daemon's first URL is replica 0: its session is there.
    let d = Daemon::start(&urls.join(","), &key, "d1", &tmp.path().join("c1"));
    a.wait_succeeded(&import).await;
    let job = a.create_workspace("ws", "t", "alice", &[]).await;

    wait_line(&a, &job, 5).await;
    procs_[0].kill9().await;
    let done = b.wait_succeeded(&job).await;
    let logs = b.logs(&job).await;
    let seqs: Vec<u64> = logs.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (1..=done.log_count).collect::<Vec<_>>(), "seqs 1..=N once");
    let numbered: Vec<u64> = logs
        .iter()
        .filter_map(|l| l.output.rsplit_once("line-")?.1.parse().ok())
        .collect();
    assert_eq!(numbered, (1..=40).collect::<Vec<_>>(), "every line once, in order");
    let pool = provisionerd::coordinator::store::db::Pool::new(&db, 1).unwrap();
    let state: Vec<u8> = pool
        .get()
        .unwrap()
        .query_row(
            "SELECT state FROM workspaces WHERE name = ?1 AND deleted = 0",
            ["ws"],
            |r| r.get(0),
        )
        .expect("the state is kept");
    assert!(String::from_utf8_lossy(&state).contains("terraform_data"));
    // The daemon now works through another replica: a new job lands.
    let next = b.build("ws", provisionerd::proto::Transition::Stop).await;
    b.wait_succeeded(&next).await;
    d.stop().await.unwrap();
}
