//! The daemon as PID 1 of its own PID namespace (a container without an
//! init): SIGTERM must still drain (the kernel drops signals PID 1 has no
//! handler for), and orphans re-parented to it must be reaped.

use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::Stack;
use crate::common::procs::Proc;
use crate::common::{TIMEOUT, terraform};

/// How long an exited orphan may stay a zombie before the test calls it
/// unreaped: reaping takes moments, a loaded machine stretches that. The
/// build outlives its orphan by far more (its exit would end the zombies
/// without any reaping, and the test could not fail).
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

/// The pids of `pid`'s children (host view).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// `(state, ppid)` of `pid` from /proc/<pid>/stat.
fn state_and_parent(pid: i32) -> Option<(String, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat.rsplit_once(')')?.1.split_whitespace();
    Some((f.next()?.to_string(), f.next()?.parse().ok()?))
}

/// Zombies whose parent is `parent`.
fn zombies_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| state_and_parent(p).is_some_and(|(s, pp)| s == "Z" && pp == parent))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid_1_sigterm_drains_and_orphans_are_reaped() {
    let Some(unshare) = ["/usr/bin/unshare", "/bin/unshare"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("SKIPPED: `unshare` (util-linux) is not installed");
        return;
    };
    let s = Stack::new().await;
    let cache = s.cache();
    let tf = terraform();
    let args = [
        "--pid",
        "--fork",
        "--mount-proc",
        env!("CARGO_BIN_EXE_provisionerd"),
        "start",
        "--url",
        &s.coord().url,
        "--name",
        "d1",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--terraform-path",
        tf.to_str().unwrap(),
        "--cancel-grace",
        "10s",
    ];
    let log = cache.with_extension("daemon.log");
    let mut wrapper = Proc::spawn_program(unshare, &args, &[("PROVISIONERD_KEY", &s.key)], &log);
    wrapper
        .wait_log("running as PID 1: reaping orphaned processes")
        .await;
    let daemon = children(wrapper.pid().as_raw());
    let &[daemon] = daemon.as_slice() else {
        panic!("unshare should have one child, the daemon: {daemon:?}");
    };
    let status = std::fs::read_to_string(format!("/proc/{daemon}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.ends_with("\t1"),
        "the daemon is PID 1 inside: {nspid}"
    );

    s.coord().wait_succeeded(&s.push("t").await).await;
    let job = s
        .coord()
        .create_workspace("w1", "t", "alice", &[("sleep", "6")])
        .await;
    // The build's own line: the import logged "job started" too.
    wrapper
        .wait_log(&format!("job started job_id=\"{job}\""))
        .await;
    // Mid-job (the line is logged as the job runs), from outside the
    // namespace, as a container runtime does.
    signal::kill(Pid::from_raw(daemon), Signal::SIGTERM).unwrap();
    wrapper
        .wait_log(&format!("draining: waiting for job {job}"))
        .await;

    // The build's background `sleep 1` outlives its shell: it becomes the
    // daemon's child, and once it exits it must not stay a zombie.
    let deadline = Instant::now() + TIMEOUT;
    let mut saw_orphan = false;
    while state_and_parent(daemon).is_some() && Instant::now() < deadline {
        let kids: Vec<_> = children(daemon)
            .into_iter()
            .filter_map(|p| Some((p, std::fs::read_to_string(format!("/proc/{p}/comm")).ok()?)))
            .collect();
        saw_orphan |= kids.iter().any(|(_, c)| c.trim() == "sleep");
        let stale: Vec<_> = zombies_of(daemon);
        // A zombie exists between its exit and the reaping, which on a
        // loaded machine may take a while: each must go in time.
        let reaped_by = Instant::now() + REAP_TIMEOUT;
        loop {
            let still: Vec<_> = zombies_of(daemon)
                .into_iter()
                .filter(|p| stale.contains(p))
                .collect();
            if still.is_empty() {
                break;
            }
            assert!(
                Instant::now() < reaped_by,
                "zombies left unreaped by PID 1 for {REAP_TIMEOUT:?}: {still:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        wrapper.exit_code(TIMEOUT).await,
        0,
        "{}",
        wrapper.log_text()
    );
    let done = s.coord().job(&job).await;
    assert_eq!(
        done.status, "succeeded",
        "a drain finishes the job: {}",
        done.error
    );
    assert!(
        saw_orphan,
        "the orphaned sleep was never the daemon's child"
    );
}
