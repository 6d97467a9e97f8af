//! Processes a killed daemon left behind. terraform runs in its own process
//! group, so a `kill -9` of the daemon leaves it (and its provisioners)
//! running in the job's work dir. A restarted daemon finds them by their
//! working directory — inside its own, locked, cache dir, so they can only
//! be ours — and stops their process groups before it reads the work dirs
//! and wipes the work root: the way the daemon stops terraform, one SIGINT
//! (terraform then ends what it is doing and writes its state), the cancel
//! grace, then SIGKILL.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgrp};
use tokio::time::Instant;

/// How often the work root is checked for processes left.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub(super) enum OrphanError {
    #[error("find leftover processes under {}: {source}", .dir.display())]
    Resolve {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("kill leftover processes under {}: pids {pids:?} still alive {waited:?} after SIGKILL", .dir.display())]
    Survived {
        dir: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
}

/// A live process whose working directory is under some dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    pub pid: i32,
    pub pgid: i32,
}

/// What [`stop_under`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Stopped {
    /// Processes found.
    pub found: usize,
    /// Of those, still alive after the grace: SIGKILLed.
    pub killed: usize,
}

/// Stops every process whose working directory is under `dir`: one SIGINT
/// to each of their process groups, up to `grace` for them to exit, then
/// SIGKILL to the groups of those left and up to `kill_wait` for them to
/// die. Runs once, at start, before any job.
pub(super) async fn stop_under(
    dir: &Path,
    grace: Duration,
    kill_wait: Duration,
) -> Result<Stopped, OrphanError> {
    let root = match fs::canonicalize(dir) {
        Ok(root) => root,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Stopped::default()),
        Err(source) => {
            return Err(OrphanError::Resolve {
                dir: dir.to_path_buf(),
                source,
            });
        }
    };
    let found = processes_under(&root);
    if found.is_empty() {
        return Ok(Stopped::default());
    }
    for pgid in groups(&found) {
        tracing::warn!(
            pgid,
            dir = %root.display(),
            grace = ?grace,
            "interrupting a leftover process group of an earlier run"
        );
    }
    signal(&found, Signal::SIGINT);
    let left = wait_gone(&root, grace).await;
    if left.is_empty() {
        return Ok(Stopped {
            found: found.len(),
            killed: 0,
        });
    }
    tracing::warn!(
        pids = ?left.iter().map(|f| f.pid).collect::<Vec<_>>(),
        "leftover processes still running after the cancel grace; killing them"
    );
    signal(&left, Signal::SIGKILL);
    let survivors = wait_gone(&root, kill_wait).await;
    if !survivors.is_empty() {
        return Err(OrphanError::Survived {
            dir: root,
            pids: survivors.iter().map(|f| f.pid).collect(),
            waited: kill_wait,
        });
    }
    Ok(Stopped {
        found: found.len(),
        killed: left.len(),
    })
}

fn groups(found: &[Found]) -> BTreeSet<i32> {
    found.iter().map(|f| f.pgid).collect()
}

/// Sends `sig` once to the process group of each of `found`.
fn signal(found: &[Found], sig: Signal) {
    let own_group = getpgrp().as_raw();
    for pgid in groups(found) {
        if pgid == own_group {
            // Never our own group: only the strays themselves.
            for f in found.iter().filter(|f| f.pgid == pgid) {
                ignore_gone(kill(Pid::from_raw(f.pid), sig));
            }
        } else {
            ignore_gone(killpg(Pid::from_raw(pgid), sig));
        }
    }
}

/// Waits up to `wait` until no process is left under `root`; returns those
/// left.
async fn wait_gone(root: &Path, wait: Duration) -> Vec<Found> {
    let deadline = Instant::now() + wait;
    loop {
        let left = processes_under(root);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn ignore_gone(r: nix::Result<()>) {
    if let Err(e) = r
        && e != Errno::ESRCH
    {
        tracing::warn!(error = %e, "kill a leftover process");
    }
}

/// Live (non-zombie) processes whose working directory is `root` or below
/// (`root` canonical). Processes we may not inspect are skipped: they are
/// not ours.
pub(super) fn processes_under(root: &Path) -> Vec<Found> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| *n != me) else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        // A zombie has no cwd: readlink fails, and it counts as gone.
        let Ok(cwd) = fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        // A removed work dir reads as "<path> (deleted)".
        let cwd = cwd.to_string_lossy();
        let cwd = Path::new(cwd.strip_suffix(" (deleted)").unwrap_or(&cwd));
        if !cwd.starts_with(root) {
            continue;
        }
        if let Some(st) = crate::process::read_stat(&entry.path())
            && !st.is_zombie()
        {
            out.push(Found { pid, pgid: st.pgrp });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{self, Exit, Spec};
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    /// Runs `script` with `/bin/sh` in `cwd`, as a group of its own.
    fn shell(cwd: &Path, script: &str) -> JoinHandle<Result<Exit, process::ProcessError>> {
        let spec = Spec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: cwd.to_path_buf(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        };
        let (tx, _rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let never = CancellationToken::new();
            process::run(spec, tx, &never, &never, Duration::from_secs(1)).await
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leftover_groups_get_a_sigint_and_the_grace_then_sigkill() {
        let tmp = tempfile::tempdir().unwrap();
        let jobs = tmp.path().join("jobs");
        let (polite, stubborn) = (jobs.join("j1"), jobs.join("j2"));
        fs::create_dir_all(&polite).unwrap();
        fs::create_dir_all(&stubborn).unwrap();
        let none = stop_under(&jobs, Duration::from_secs(1), Duration::from_secs(1));
        assert_eq!(none.await.unwrap(), Stopped::default());

        // Like terraform: on SIGINT it writes its state and exits.
        let polite_run = shell(
            &polite,
            "trap 'echo final > state; exit 0' INT; while true; do sleep 1; done",
        );
        // Ignores SIGINT (so does the sleep it starts): only SIGKILL ends it.
        let stubborn_run = shell(&stubborn, "trap '' INT; sleep 60; echo unreachable");
        let root = fs::canonicalize(&jobs).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_under(&root).len() < 4 {
            assert!(Instant::now() < deadline, "test processes never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let grace = Duration::from_secs(1);
        let t0 = Instant::now();
        let stopped = stop_under(&jobs, grace, Duration::from_secs(10))
            .await
            .unwrap();
        let took = t0.elapsed();
        assert!(stopped.found >= 3, "{stopped:?}");
        assert_eq!(stopped.killed, 2, "{stopped:?}");
        assert!(took >= grace && took < grace * 6, "{took:?}");
        assert!(processes_under(&root).is_empty());
        assert_eq!(
            fs::read_to_string(polite.join("state")).unwrap(),
            "final\n",
            "the interrupted process got to write its state"
        );
        let reaped = |run: JoinHandle<Result<Exit, process::ProcessError>>| async move {
            tokio::time::timeout(Duration::from_secs(10), run)
                .await
                .expect("the stopped shell is reaped")
                .unwrap()
                .unwrap()
        };
        let exit: Exit = reaped(polite_run).await;
        assert_eq!(exit.code, Some(0));
        let exit: Exit = reaped(stubborn_run).await;
        assert_eq!(exit.signal, Some(Signal::SIGKILL as i32));
    }
}
