//! Daemon names: a name belongs to the key that registered it. Another key
//! is refused for good (exit 3); a second live daemon of the same key gives
//! up after `--name-conflict-timeout` (exit 3); the daemon itself, killed
//! and restarted at once, gets its name back.

use std::time::Duration;

use nix::sys::signal::Signal;
use provisionerd::proto;
use tokio::time::Instant;

use super::{build, slow, wait_line};
use crate::common::procs::{self, Proc};
use crate::common::{Coord, TIMEOUT, wait_connected, wait_daemon};
use crate::{QUICK, template};

/// Time for a daemon to start and hear the coordinator's first answer on
/// a loaded machine: far below a retry loop's minute.
const QUICK_TIMEOUT: Duration = Duration::from_secs(30);

fn daemon_id(daemons: &[proto::Daemon], name: &str) -> String {
    daemons
        .iter()
        .find(|d| d.name == name)
        .map(|d| d.id.clone())
        .expect("daemon listed")
}

/// Exits with `code` within `within`; the log must say `needle`.
async fn assert_exit(p: &mut Proc, code: i32, within: Duration, needle: &str) {
    let started = Instant::now();
    assert_eq!(p.exit_code(within).await, code, "{}", p.log_text());
    assert!(started.elapsed() <= within, "{:?}", started.elapsed());
    let log = p.log_text();
    assert!(log.contains(needle), "{needle:?} missing in:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_cannot_take_the_name_of_an_offline_daemon_until_its_key_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let k1 = coord.create_key("k1", &[]).await;
    let k2 = coord.create_key("k2", &[]).await;
    let c1 = tmp.path().join("c1");
    let mut d = procs::start(&coord.url, &k1, "d1", &c1, &[]);
    wait_connected(&coord, 1).await;
    let id = daemon_id(&coord.daemons().await, "d1");
    d.signal(Signal::SIGHUP);
    assert_eq!(d.exit_code(TIMEOUT).await, 0, "{}", d.log_text());
    wait_daemon(&coord, "d1", |d| d.status == "offline").await;

    // Refused at the first answer, not retried.
    let mut thief = procs::start(&coord.url, &k2, "d1", &tmp.path().join("c2"), &[]);
    assert_exit(
        &mut thief,
        3,
        QUICK_TIMEOUT,
        "register daemon \"d1\": the name belongs to another provisioner key",
    )
    .await;
    let daemons = coord.daemons().await;
    let row = daemons.iter().find(|d| d.name == "d1").unwrap();
    assert_eq!(
        (row.key_name.as_str(), row.id.as_str()),
        ("k1", id.as_str())
    );

    // The owner comes back under its name and id, and works.
    let _d = procs::start(&coord.url, &k1, "d1", &c1, &[]);
    wait_daemon(&coord, "d1", |d| d.status == "idle" && d.id == id).await;
    let t = template(tmp.path(), "t", QUICK);
    let import = coord.wait_succeeded(&coord.push("t", &t, &[]).await).await;
    assert_eq!(import.daemon, "d1");

    // Deleting its key frees the name: the other key's daemon gets it,
    // with a new id.
    coord
        .admin()
        .await
        .delete_key(proto::DeleteKeyRequest { name: "k1".into() })
        .await
        .unwrap();
    wait_daemon(&coord, "d1", |d| d.status == "offline").await;
    let _heir = procs::start(&coord.url, &k2, "d1", &tmp.path().join("c2"), &[]);
    wait_daemon(&coord, "d1", |d| {
        d.status == "idle" && d.key_name == "k2" && d.id != id
    })
    .await;
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_daemon_with_the_name_exits_3_and_a_restarted_one_gets_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coord::start(&tmp.path().join("data")).await;
    let key = coord.create_key("k", &[]).await;
    let c1 = tmp.path().join("c1");
    let mut first = procs::start(&coord.url, &key, "d1", &c1, &[]);
    wait_connected(&coord, 1).await;
    let id = daemon_id(&coord.daemons().await, "d1");

    let window = Duration::from_secs(3);
    let mut second = procs::start(
        &coord.url,
        &key,
        "d1",
        &tmp.path().join("c2"),
        &["--name-conflict-timeout", "3s"],
    );
    // Retried for the window (it could be its own earlier session), then
    // given up; the start and the first attempt take a moment too.
    let started = Instant::now();
    assert_exit(
        &mut second,
        3,
        window + QUICK_TIMEOUT,
        "a daemon with that name is already connected (still after \
         --name-conflict-timeout 3s)",
    )
    .await;
    assert!(started.elapsed() >= window, "{:?}", started.elapsed());

    // The first keeps its name and works; killed mid-job and restarted at
    // once, it gets its name back and reports the interrupted job.
    let job = build(&coord, tmp.path(), &slow(3, "0", 45)).await;
    wait_line(&coord, &job, 3).await;
    assert_eq!(coord.job(&job).await.daemon, "d1");
    first.kill9().await;
    let _again = procs::start(&coord.url, &key, "d1", &c1, &[]);
    let failed = coord.wait_job(&job).await;
    assert_eq!(
        (failed.status.as_str(), failed.error.as_str()),
        ("failed", "daemon restarted during job")
    );
    wait_daemon(&coord, "d1", |d| d.status == "idle" && d.id == id).await;
    coord.stop().await;
}
