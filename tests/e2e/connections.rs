//! Connection floods against the real `provisionerd serve` binary: idle
//! TCP connections, connections that never authenticate, sessions without
//! a Hello, the open-file limit.

mod probe;

use std::time::{Duration, Instant};

use provisionerd::proto::{self, DaemonMessage};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::common::procs;
use crate::common::{Coord, TIMEOUT, wait_connected};
use crate::raw::RawDaemon;
use probe::{
    addr_of, flood, open_fds, raise_own_nofile, runnable_share, soft_nofile, wait_fds_at_most,
};

#[tokio::test]
async fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let (serve, _url, _token) =
        procs::serve_with_nofile(&tmp.path().join("data"), 256, 4096, &[]).await;
    assert_eq!(
        soft_nofile(serve.pid().as_raw()),
        4096,
        "{}",
        serve.log_text()
    );
    serve
        .wait_log("open-file limit raised to the hard limit")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_connection_flood_is_shed_and_the_coordinator_stays_usable() {
    raise_own_nofile();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let timeout = Duration::from_secs(3);
    let (serve, url, token) =
        procs::serve_with_nofile(&data, 256, 256, &["--handshake-timeout", "3s"]).await;
    let pid = serve.pid().as_raw();
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("k", &[]).await;
    let baseline = open_fds(pid);

    // Four times the coordinator's open-file limit.
    let started = Instant::now();
    let idle = flood(addr_of(&url), 1100).await;
    eprintln!("flood of 1100 established in {:?}", started.elapsed());

    // It does not spin, and its descriptors stay bounded.
    let share = runnable_share(pid, Duration::from_secs(2)).await;
    eprintln!(
        "during the flood: {share:.2} threads runnable, {} open files",
        open_fds(pid)
    );
    assert!(
        share < 0.5,
        "the coordinator kept {share:.2} threads busy during the flood"
    );
    assert!(open_fds(pid) < 256, "open files: {}", open_fds(pid));

    // An operator gets an answer at once, over a new connection.
    let asked = Instant::now();
    let out = crate::cli::run(
        &["jobs", "list", "--url", &url],
        &[("PROVISIONERD_TOKEN", &token)],
    )
    .await;
    let took = asked.elapsed();
    eprintln!("jobs list during the flood: {took:?}");
    assert_eq!(out.status.code(), Some(0), "{}", crate::cli::stderr(&out));
    assert!(
        took < Duration::from_secs(3),
        "jobs list took {took:?} during the flood"
    );

    // A real daemon connects and runs a job.
    let daemon = procs::start(&url, &key, "d1", &tmp.path().join("d1"), &[]);
    wait_connected(&coord, 1).await;
    let job = coord
        .push("t", &crate::template(tmp.path(), "t", crate::QUICK), &[])
        .await;
    coord.wait_succeeded(&job).await;

    // Every idle connection was closed by the coordinator, none later than
    // the handshake timeout after it was made (plus scheduling slack on a
    // loaded machine).
    let closed = idle.join_all().await;
    let open = closed.iter().filter(|c| c.is_none()).count();
    let log = serve.log_text();
    assert_eq!(
        open,
        0,
        "{open} idle connections were never closed; timed out {} evicted {} accept errs {} conns authenticated {}",
        log.matches("TimedOut").count(),
        log.matches("Evicted").count(),
        log.matches("Too many open").count(),
        log.matches("connection authenticated").count()
    );
    let latest = closed.iter().flatten().max().unwrap();
    eprintln!("idle connections closed at most {latest:?} after they were made");
    assert!(
        *latest < timeout + Duration::from_secs(7),
        "an idle connection was closed only after {latest:?}"
    );
    // And its descriptors are back to what it used before (plus the daemon's
    // and the admin client's connections).
    wait_fds_at_most(&serve, baseline + 16, Duration::from_secs(10)).await;
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accept_backs_off_at_the_open_file_limit_instead_of_spinning() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (serve, url, token) = procs::serve_with_nofile(&data, 128, 128, &[]).await;
    let pid = serve.pid().as_raw();
    let coord = Coord::attach(&url, &data, &token);
    // Authenticated connections (never closed for being idle) until the
    // coordinator has no descriptor left for the next one.
    let mut admins = Vec::new();
    loop {
        let call = async {
            let mut a = coord.admin().await;
            a.list_daemons(proto::ListDaemonsRequest::default())
                .await
                .map(|_| a)
        };
        match tokio::time::timeout(Duration::from_secs(3), call).await {
            Ok(Ok(a)) => admins.push(a),
            Ok(Err(e)) => panic!("admin call: {e}\n{}", serve.log_text()),
            Err(_) => break, // waiting in the kernel's backlog: out of files
        }
        assert!(admins.len() < 200, "the coordinator never ran out of files");
    }
    eprintln!("{} authenticated connections fill the limit", admins.len());
    let share = runnable_share(pid, Duration::from_secs(3)).await;
    eprintln!("at the file limit: {share:.2} threads runnable");
    assert!(
        share < 0.5,
        "the coordinator kept {share:.2} threads busy at the file limit"
    );
    serve.wait_log("accept connections: out of resources").await;
    // Files free again: the coordinator accepts again by itself.
    admins.truncate(admins.len() / 2);
    let mut a = tokio::time::timeout(TIMEOUT, coord.admin())
        .await
        .expect("connect after files were freed");
    a.list_daemons(proto::ListDaemonsRequest::default())
        .await
        .expect("admin call after files were freed");
    // The episode ends (and says so) at the first accept after 5s quiet.
    tokio::time::sleep(Duration::from_secs(6)).await;
    coord
        .admin()
        .await
        .list_daemons(proto::ListDaemonsRequest::default())
        .await
        .expect("admin call");
    serve.wait_log("accepting connections again").await;
    let warnings = serve.log_text().matches("out of resources").count();
    assert_eq!(
        warnings,
        1,
        "one warning per episode:\n{}",
        serve.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_hello_is_ended_within_the_handshake_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (serve, url, token) =
        procs::serve_with(&data, "127.0.0.1:0", "60s", &["--handshake-timeout", "1s"]).await;
    let coord = Coord::attach(&url, &data, &token);
    let key = coord.create_key("k", &[]).await;
    // A proper session, open past the timeout: it must stay up.
    let mut proper = RawDaemon::open(&coord, &key, "proper", proto::DaemonState::Idle).await;

    let mut silent = crate::raw::client(&coord, &key, "silent").await;
    let (_tx, rx) = mpsc::channel::<DaemonMessage>(1);
    let started = Instant::now();
    let refused = tokio::time::timeout(
        Duration::from_secs(15),
        silent.session(ReceiverStream::new(rx)),
    )
    .await
    .expect("a session without Hello was never ended")
    .expect_err("a session without Hello is refused");
    let took = started.elapsed();
    assert_eq!(refused.code(), tonic::Code::DeadlineExceeded, "{refused:?}");
    assert!(
        refused.message().contains("no Hello within 1s"),
        "{refused:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "ended after {took:?}"
    );

    // The proper session still works: it is offered a job.
    let job = coord
        .push("t", &crate::template(tmp.path(), "t", crate::QUICK), &[])
        .await;
    let offer = proper.claim().await;
    assert_eq!(offer.job_id, job);
    drop(serve);
}

/// A connection that completes the HTTP/2 handshake but makes no
/// authenticated request is closed at the handshake timeout too.
#[tokio::test]
async fn an_http2_connection_that_never_authenticates_is_closed() {
    use tokio::io::AsyncWriteExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (serve, url, _token) =
        procs::serve_with(&data, "127.0.0.1:0", "60s", &["--handshake-timeout", "1s"]).await;
    let mut s = TcpStream::connect(addr_of(&url)).await.unwrap();
    // The client preface and an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read_all)
        .await
        .unwrap_or_else(|_| panic!("never closed:\n{}", serve.log_text()));
    let took = started.elapsed();
    // The server answered the handshake (its SETTINGS frame, type 4).
    assert!(
        got.len() >= 9 && got[3] == 4,
        "no SETTINGS from the server: {got:?}"
    );
    assert!(took < Duration::from_secs(8), "closed after {took:?}");
}

#[tokio::test]
async fn bad_connection_flags_exit_64_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for (flag, value) in [
        ("--handshake-timeout", "10ms"),
        ("--max-unauthenticated-connections", "0"),
    ] {
        let out = crate::cli::run(
            &["serve", "--data-dir", data.to_str().unwrap(), flag, value],
            &[],
        )
        .await;
        let err = crate::cli::stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{flag} {value}: {err}");
        // The flag's own rule, not clap refusing an unknown flag.
        assert!(
            err.contains(flag) && err.contains("must be at least"),
            "{flag} {value}: {err}"
        );
    }
}
