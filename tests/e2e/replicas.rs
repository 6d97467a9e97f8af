//! Several coordinator replicas on one PostgreSQL database (always
//! PostgreSQL: see `common::pg`): one queue, each job once, people first;
//! a replica killed mid-job loses nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::pg::Server;
use crate::common::{Coord, Daemon, procs, wait_connected};
use crate::faults::{assert_gapless, numbered, slow, wait_line};
use crate::ops_coordinator::{http_get, ops_addr};
use crate::template;

const TOKEN: &str = "pda_replicas_test_token_0123456789";

/// `n` replicas as `provisionerd serve` processes on `db`, each with the
/// test's admin token (`--admin-token-file`, left where the harness reads
/// it) and `extra` flags: the processes and their URLs.
async fn serve_replicas(
    root: &std::path::Path,
    db: &str,
    n: usize,
    extra: &[&str],
) -> (Vec<procs::Proc>, Vec<String>) {
    let mut procs_ = Vec::new();
    let mut urls = Vec::new();
    for i in 0..n {
        let data = root.join(format!("r{i}"));
        std::fs::create_dir_all(&data).unwrap();
        let token_file = data.join("admin-token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let mut args = vec![
            "--database-url",
            db,
            "--admin-token-file",
            token_file.to_str().unwrap(),
        ];
        args.extend(extra);
        let (p, url, _) = procs::serve_with(&data, "127.0.0.1:0", "60s", &args).await;
        procs_.push(p);
        urls.push(url);
    }
    (procs_, urls)
}

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
        let id = r
            .create_workspace(&format!("p{i}"), "t", "prebuilds", &[])
            .await;
        jobs.insert(id, false);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 0..12 {
        let r = &replicas[i % 3];
        let id = r
            .create_workspace(&format!("h{i}"), "t", "alice", &[])
            .await;
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
    let (mut procs_, urls) = serve_replicas(tmp.path(), &db, 3, &[]).await;
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
    assert_gapless(&done, &logs);
    assert_eq!(
        numbered(&logs),
        (1..=40).collect::<Vec<_>>(),
        "every line once, in order"
    );
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

/// PostgreSQL stopped mid-job and started again: the replicas say they are
/// not ready (and why) while it is away, the daemon keeps running its job
/// and keeps its lines, and once the database is back the job completes
/// with every line stored once and its state kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_mid_job_loses_and_doubles_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Server::start_own();
    let db = pg.database(&tmp.path().join("db"));
    let (procs_, urls) =
        serve_replicas(tmp.path(), &db, 2, &["--metrics-address", "127.0.0.1:0"]).await;
    let ops = ops_addr(&procs_[1]).await;
    assert_eq!(http_get(&ops, "/readyz").await.0, 200);
    let a = Coord::attach(&urls[0], &tmp.path().join("r0"), TOKEN);
    let key = a.create_key("k", &[]).await;
    let dir = template(tmp.path(), "t", &slow(60, "0.2", 0));
    let import = a.push("t", &dir, &[]).await;
    let d = Daemon::start(&urls.join(","), &key, "d1", &tmp.path().join("c1"));
    a.wait_succeeded(&import).await;
    let job = a.create_workspace("ws", "t", "alice", &[]).await;
    wait_line(&a, &job, 5).await;

    pg.stop();
    // Not ready, saying why, while the database is away.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (code, body) = http_get(&ops, "/readyz").await;
        if code == 503 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz stayed {code}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        body.contains("database"),
        "/readyz names the database: {body}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.resume();

    let done = a.wait_succeeded(&job).await;
    let logs = a.logs(&job).await;
    assert_gapless(&done, &logs);
    assert_eq!(
        numbered(&logs),
        (1..=60).collect::<Vec<_>>(),
        "every line once, in order"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while http_get(&ops, "/readyz").await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    d.stop().await.unwrap();
}

/// A replica cut off from the database hands out no work: a job queued
/// meanwhile waits for a daemon of a replica that can reach the database,
/// instead of going to the cut-off replica's idle daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_cut_off_from_the_database_hands_out_no_work() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Server::start();
    let db = pg.database(&tmp.path().join("db"));
    let pg_addr: std::net::SocketAddr = {
        let cfg: tokio_postgres::Config = db.parse().unwrap();
        let host = match &cfg.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            h => panic!("a TCP host, not {h:?}"),
        };
        format!("{host}:{}", cfg.get_ports()[0]).parse().unwrap()
    };
    let proxy = crate::common::proxy::Proxy::start(pg_addr).await;
    let via_proxy = db.replacen(&pg_addr.to_string(), &proxy.addr.to_string(), 1);
    assert_ne!(via_proxy, db);
    let cut_off = Coord::start_replica(&tmp.path().join("r0"), &via_proxy, TOKEN).await;
    let healthy = Coord::start_replica(&tmp.path().join("r1"), &db, TOKEN).await;
    let key = healthy.create_key("k", &[]).await;
    let dir = template(tmp.path(), "t", crate::QUICK);
    let import = healthy.push("t", &dir, &[]).await;
    // Its only daemon works through the replica about to be cut off.
    let d0 = Daemon::start(&cut_off.url, &key, "d0", &tmp.path().join("c0"));
    healthy.wait_succeeded(&import).await;

    proxy.cut();
    let job = healthy.create_workspace("ws", "t", "alice", &[]).await;
    // Well past a dispatch and a heartbeat: still nobody's.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let j = healthy.job(&job).await;
    assert_eq!(
        j.status, "pending",
        "the cut-off replica handed it out: {j:?}"
    );
    let d1 = Daemon::start(&healthy.url, &key, "d1", &tmp.path().join("c1"));
    let done = healthy.wait_succeeded(&job).await;
    assert_eq!(done.daemon, "d1");

    proxy.heal();
    d0.stop().await.unwrap();
    d1.stop().await.unwrap();
    healthy.stop().await;
    cut_off.stop().await;
}

/// `jobs logs --follow` through replica C shows the lines a daemon sends
/// through replica A while the job runs, not only once it has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follow_on_one_replica_shows_lines_arriving_through_another() {
    use tokio_stream::StreamExt;
    let tmp = tempfile::tempdir().unwrap();
    let pg = Server::start();
    let db = pg.database(&tmp.path().join("db"));
    let a = Coord::start_replica(&tmp.path().join("a"), &db, TOKEN).await;
    let c = Coord::start_replica(&tmp.path().join("c"), &db, TOKEN).await;
    let key = a.create_key("k", &[]).await;
    let dir = template(tmp.path(), "t", &slow(60, "0.2", 0));
    let import = a.push("t", &dir, &[]).await;
    let d = Daemon::start(&a.url, &key, "d1", &tmp.path().join("c1"));
    a.wait_succeeded(&import).await;
    let job = a.create_workspace("ws", "t", "alice", &[]).await;
    let mut follow = c
        .admin()
        .await
        .stream_job_logs(provisionerd::proto::StreamJobLogsRequest {
            job_id: job.clone(),
            after_seq: 0,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();
    // line-5 of 60 (12 s of output) arrives on C while the job still runs.
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = follow.next().await {
            if l.unwrap().output.ends_with("line-5") {
                return true;
            }
        }
        false
    })
    .await
    .expect("line-5 followed on C within a minute");
    assert!(seen, "the follow ended before line-5");
    let running = c.job(&job).await;
    assert_eq!(running.status, "running", "line-5 came only after the end");
    c.wait_succeeded(&job).await;
    d.stop().await.unwrap();
    a.stop().await;
    c.stop().await;
}

/// Replicas starting together on a new database: one applies the
/// migrations under the lock, the others wait and start on the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Server::start();
    let db = pg.database(&tmp.path().join("db"));
    let starts: Vec<_> = (0..4)
        .map(|i| {
            let (dir, db) = (tmp.path().join(format!("r{i}")), db.clone());
            tokio::spawn(async move { Coord::start_replica(&dir, &db, TOKEN).await })
        })
        .collect();
    let mut replicas = Vec::new();
    for s in starts {
        replicas.push(s.await.expect("every replica starts"));
    }
    let pool = provisionerd::coordinator::store::db::Pool::new(&db, 1).unwrap();
    let versions: i64 = pool
        .get()
        .unwrap()
        .query_row("SELECT COUNT(*) FROM provisionerd_schema", [], |r| r.get(0))
        .unwrap();
    assert_eq!(versions, 3, "each of the 3 migrations applied once");
    for r in replicas {
        r.stop().await;
    }
}

/// A database whose schema a newer provisionerd wrote is refused at start
/// with exit 64 and a message saying so; nothing in it is changed.
#[tokio::test]
async fn a_newer_schema_is_refused_with_exit_64() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = Server::start();
    let db = pg.database(&tmp.path().join("db"));
    {
        let pool = provisionerd::coordinator::store::db::Pool::new(&db, 1).unwrap();
        let conn = pool.get().unwrap();
        conn.execute_batch(
            "CREATE TABLE provisionerd_schema (version BIGINT PRIMARY KEY,
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
             INSERT INTO provisionerd_schema(version) VALUES (1), (99);",
        )
        .unwrap();
    }
    let data = tmp.path().join("r0");
    let mut serve = procs::Proc::spawn(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &db,
        ],
        &[],
        &tmp.path().join("serve.log"),
    );
    assert_eq!(serve.exit_code(Duration::from_secs(60)).await, 64);
    let log = serve.log_text();
    assert!(
        log.contains("schema is version 99") && log.contains("newer provisionerd"),
        "the refusal says why: {log}"
    );
}
