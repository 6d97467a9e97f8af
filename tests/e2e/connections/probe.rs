//! What the connection tests observe of a coordinator process through
//! /proc, and the flood of idle connections they throw at it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::common::TIMEOUT;
use crate::common::procs::Proc;

/// Nanoseconds each thread of the process spent running or waiting to
/// run (/proc/PID/task/TID/schedstat).
fn runnable_ns(pid: i32) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue; // the thread just exited
        };
        let f: Vec<u64> = stat
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        out.insert(task.file_name().to_string_lossy().into_owned(), f[0] + f[1]);
    }
    out
}

/// How many threads of the process were runnable (on a CPU or waiting for
/// one), on average, over `window`. A loop that never sleeps counts ~1
/// however loaded the machine is (unlike its CPU time, which shrinks as
/// other processes compete for the cores); one that waits counts ~0.
pub(super) async fn runnable_share(pid: i32, window: Duration) -> f64 {
    let before = runnable_ns(pid);
    tokio::time::sleep(window).await;
    let after = runnable_ns(pid);
    let ns: u64 = after
        .iter()
        .map(|(tid, n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    ns as f64 / window.as_nanos() as f64
}

pub(super) fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// The soft "Max open files" of a process, from /proc/PID/limits.
pub(super) fn soft_nofile(pid: i32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// This test process needs more sockets than a default soft limit allows.
pub(super) fn raise_own_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(
        hard >= 2048,
        "the test needs a hard open-file limit of 2048, have {hard}"
    );
}

pub(super) fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// Opens `n` TCP connections that never send a byte; each task returns how
/// long after its connect the server closed it (EOF or reset), `None` if it
/// was still open after `TIMEOUT`. Resolves once every connection is
/// established.
pub(super) async fn flood(addr: SocketAddr, n: usize) -> JoinSet<Option<Duration>> {
    let mut set = JoinSet::new();
    let (connected_tx, mut connected) = mpsc::channel::<()>(n);
    // At most 64 handshakes at once: a burst beyond the kernel's queues
    // leaves connections the client thinks open and the server never saw
    // (a SYN cookie whose ACK met a full accept queue), which no server
    // can close.
    let handshakes = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    for _ in 0..n {
        let connected_tx = connected_tx.clone();
        let handshakes = handshakes.clone();
        set.spawn(async move {
            let permit = handshakes.acquire_owned().await.unwrap();
            let mut s = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
                .await
                .expect("connect: timed out")
                .expect("connect");
            let at = Instant::now();
            drop(permit);
            connected_tx.send(()).await.unwrap();
            // Until EOF (or a reset): the coordinator may have sent its
            // HTTP/2 SETTINGS first.
            let mut buf = [0u8; 64];
            let closed = async { while let Ok(1..) = s.read(&mut buf).await {} };
            tokio::time::timeout(TIMEOUT, closed)
                .await
                .ok()
                .map(|()| at.elapsed())
        });
    }
    for _ in 0..n {
        tokio::time::timeout(TIMEOUT, connected.recv())
            .await
            .expect("flood: connections not established in time");
    }
    set
}

pub(super) async fn wait_fds_at_most(p: &Proc, most: usize, within: Duration) {
    let pid = p.pid().as_raw();
    let deadline = tokio::time::Instant::now() + within;
    while open_fds(pid) > most {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the coordinator still has {} open files (expected at most {most})",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
