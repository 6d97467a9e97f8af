//! The coordinator's data dir at start, with the real binary: a second
//! coordinator is locked out before it touches anything, and a lost,
//! damaged or unknown database is refused instead of silently replaced.

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::common::procs::{self, Proc};
use crate::common::{Coord, TIMEOUT, wait_daemon};
use crate::{QUICK, template};

/// `provisionerd serve` on `data`, not waited for (it may be meant to fail).
fn spawn_serve(data: &Path, listen: &str, extra: &[&str], log: &Path) -> Proc {
    let mut args = vec![
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        listen,
    ];
    args.extend(extra);
    Proc::spawn(&args, &[], log)
}

/// SIGTERM, and a clean exit.
async fn stop(mut p: Proc) {
    p.signal(Signal::SIGTERM);
    assert_eq!(p.exit_code(TIMEOUT).await, 0, "{}", p.log_text());
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn hostname() -> String {
    nix::unistd::gethostname().unwrap().into_string().unwrap()
}

#[tokio::test]
async fn a_second_coordinator_on_the_data_dir_exits_73_and_the_first_keeps_its_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (first, url, token) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("k", &[]).await;
    let _d = procs::start(&url, &key, "d1", &tmp.path().join("c1"), &[]);
    wait_daemon(&coord, "d1", |d| d.status == "idle").await;
    let address = std::fs::read_to_string(data.join("address")).unwrap();
    let holder = format!(
        "lock data dir {}: held by coordinator pid={} host={}",
        data.display(),
        first.pid(),
        hostname()
    );

    // On a free port, and on the first one's (taken) port: both stop at
    // the lock, before reading or resetting anything.
    let listen = url.strip_prefix("http://").unwrap();
    for (n, port) in [(2, "127.0.0.1:0"), (3, listen)] {
        let log = tmp.path().join(format!("serve-{n}.log"));
        let mut other = spawn_serve(&data, port, &[], &log);
        assert_eq!(other.exit_code(TIMEOUT).await, 73, "{}", other.log_text());
        let text = other.log_text();
        assert!(text.contains(&holder), "{text}");
        assert!(!text.contains("coordinator listening"), "{text}");
    }
    assert_eq!(
        std::fs::read_to_string(data.join("address")).unwrap(),
        address,
        "the first one's address file stays"
    );

    // The first coordinator still has its daemon, idle, and it runs jobs.
    let d1 = coord.daemons().await;
    assert_eq!(
        d1.iter()
            .map(|d| (d.name.as_str(), d.status.as_str()))
            .collect::<Vec<_>>(),
        [("d1", "idle")]
    );
    let dir = template(tmp.path(), "t", QUICK);
    coord
        .wait_succeeded(&coord.push("t", &dir, &[]).await)
        .await;
    let job = coord.create_workspace("ws", "t", "alice", &[]).await;
    let done = coord.wait_succeeded(&job).await;
    assert_eq!(done.daemon, "d1");
    stop(first).await;
}

#[tokio::test]
async fn a_used_data_dir_whose_database_is_lost_refuses_to_start_until_told() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (first, url, token) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    Coord::attach(&url, &data, &token)
        .create_key("k", &[])
        .await;
    stop(first).await;
    let token_file = std::fs::read(data.join("admin-token")).unwrap();
    let db = data.join("provisionerd.db");
    assert!(data.join("initialized").is_file(), "{:?}", files_in(&data));
    std::fs::remove_file(data.join("address")).unwrap();

    // Truncated to 0 bytes.
    std::fs::File::options()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut p = spawn_serve(&data, "127.0.0.1:0", &[], &tmp.path().join("empty.log"));
    assert_eq!(p.exit_code(TIMEOUT).await, 64, "{}", p.log_text());
    let text = p.log_text();
    let want = format!(
        "database {} is empty (0 bytes), but the data dir was used before (found initialized, \
         admin-token)",
        db.display()
    );
    assert!(text.contains(&want), "{text}");
    assert!(text.contains("--allow-new-database"), "{text}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    assert_eq!(
        files_in(&data),
        [
            "admin-token",
            "coordinator.lock",
            "initialized",
            "provisionerd.db"
        ]
    );

    // Deleted, in a data dir from before the marker file: the admin token
    // is enough to know it was used.
    std::fs::remove_file(&db).unwrap();
    std::fs::remove_file(data.join("initialized")).unwrap();
    let mut p = spawn_serve(&data, "127.0.0.1:0", &[], &tmp.path().join("gone.log"));
    assert_eq!(p.exit_code(TIMEOUT).await, 64, "{}", p.log_text());
    let text = p.log_text();
    let want = format!(
        "database {} is missing, but the data dir was used before (found admin-token)",
        db.display()
    );
    assert!(text.contains(&want), "{text}");
    assert_eq!(files_in(&data), ["admin-token", "coordinator.lock"]);
    assert_eq!(std::fs::read(data.join("admin-token")).unwrap(), token_file);

    // Told: a new database, and the operators' token still works.
    let (p, url, token2) =
        procs::serve_with(&data, "127.0.0.1:0", "60s", &["--allow-new-database"]).await;
    assert_eq!(std::fs::read(data.join("admin-token")).unwrap(), token_file);
    assert_eq!(token2, token);
    let text = p.log_text();
    assert!(text.contains("starting a NEW, EMPTY database"), "{text}");
    assert!(
        text.contains("the one in this file is now accepted"),
        "{text}"
    );
    let coord = Coord::attach(&url, &data, &token);
    assert!(
        coord.daemons().await.is_empty(),
        "the old token is accepted"
    );
    assert!(data.join("initialized").is_file());
    stop(p).await;
}

/// Overwrites the middle half of the file's pages with a pattern.
fn damage(db: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(db).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    assert!(
        pages >= 16,
        "only {pages} pages: too few to damage the middle"
    );
    for (i, b) in bytes[pages / 4 * page..pages * 3 / 4 * page]
        .iter_mut()
        .enumerate()
    {
        *b = (i as u8).wrapping_mul(31) ^ 0x5a;
    }
    std::fs::write(db, &bytes).unwrap();
    bytes
}

/// A coordinator that wrote a template (with a large file), keys and jobs,
/// and was stopped cleanly (its WAL checkpointed into the database).
async fn used_data_dir(root: &Path) -> PathBuf {
    let data = root.join("data");
    let (p, url, token) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    let coord = Coord::attach(&url, &data, &token);
    for i in 0..20 {
        coord.create_key(&format!("k{i}"), &[]).await;
    }
    let dir = template(root, "t", QUICK);
    let filler: String = (0..20_000).map(|i| format!("# line {i}\n")).collect();
    std::fs::write(dir.join("notes.tf"), filler).unwrap();
    coord.push("t", &dir, &[]).await;
    coord.push("t", &dir, &[]).await;
    stop(p).await;
    data
}

#[tokio::test]
async fn a_damaged_database_fails_at_start_naming_it_and_is_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let data = used_data_dir(tmp.path()).await;
    let db = data.join("provisionerd.db");
    let damaged = damage(&db);

    let mut p = spawn_serve(&data, "127.0.0.1:0", &[], &tmp.path().join("damaged.log"));
    assert_eq!(p.exit_code(TIMEOUT).await, 65, "{}", p.log_text());
    let text = p.log_text();
    assert!(
        text.contains(&format!("check database {}: damaged", db.display())),
        "{text}"
    );
    assert!(
        text.contains("restore the database from a backup"),
        "{text}"
    );
    assert!(!text.contains("coordinator listening"), "{text}");
    assert!(
        std::fs::read(&db).unwrap() == damaged,
        "the file is unchanged"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_provisionerd_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("provisionerd.db");
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("CREATE TABLE users(id);").unwrap();
    drop(other);
    let before = std::fs::read(&db).unwrap();
    let mut p = spawn_serve(&data, "127.0.0.1:0", &[], &tmp.path().join("foreign.log"));
    assert_eq!(p.exit_code(TIMEOUT).await, 65, "{}", p.log_text());
    let text = p.log_text();
    let want = format!(
        "open database {}: not a provisionerd database (tables: users); check --data-dir",
        db.display()
    );
    assert!(text.contains(&want), "{text}");
    assert_eq!(std::fs::read(&db).unwrap(), before, "nothing was added");
    assert!(!data.join("admin-token").exists());

    // Garbage where the database should be.
    std::fs::write(&db, vec![0x5a; 64 * 1024]).unwrap();
    let mut p = spawn_serve(&data, "127.0.0.1:0", &[], &tmp.path().join("garbage.log"));
    assert_eq!(p.exit_code(TIMEOUT).await, 65, "{}", p.log_text());
    let text = p.log_text();
    let want = format!("check database {}: not a SQLite database", db.display());
    assert!(text.contains(&want), "{text}");
}

#[tokio::test]
async fn the_start_on_an_existing_data_dir_logs_what_it_found() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (p, url, token) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    assert!(
        p.log_text().contains("initialised a new data dir"),
        "{}",
        p.log_text()
    );
    let coord = Coord::attach(&url, &data, &token);
    coord.create_key("k", &[]).await;
    // No daemon: the import stays pending.
    coord
        .push("t", &template(tmp.path(), "t", QUICK), &[])
        .await;
    stop(p).await;

    let (p, _, _) = procs::serve(&data, "127.0.0.1:0", "60s").await;
    let text = p.log_text();
    let line = text
        .lines()
        .find(|l| l.contains("opened existing data dir"))
        .unwrap_or_else(|| panic!("no start summary:\n{text}"));
    let schema = format!(
        "schema_version={}",
        provisionerd::coordinator::store::SCHEMA_VERSION
    );
    for field in [
        schema.as_str(),
        "jobs_pending=1",
        "jobs_succeeded=0",
        "daemons=0",
        "keys=1",
        "templates=1",
        "workspaces=0",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(line.contains(&data.display().to_string()), "{line}");
    stop(p).await;
}
