//! Processes a killed daemon left behind. terraform runs in its own process
//! group, so a `kill -9` of the daemon leaves it (and its provisioners)
//! running in the job's work dir. A restarted daemon finds them by their
//! working directory — inside its own, locked, cache dir, so they can only
//! be ours — and kills their process groups before it wipes the work root.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgrp};

#[derive(Debug, thiserror::Error)]
pub(super) enum OrphanError {
    #[error("find leftover processes under {}: {source}", .dir.display())]
    Resolve {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("kill leftover processes under {}: pids {pids:?} still alive after {waited:?}", .dir.display())]
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

/// SIGKILLs the process group of every process whose working directory is
/// under `dir`, then waits up to `wait` until none is left. Returns how many
/// processes were found. Blocking: it runs once, at start, before any job.
pub(super) fn kill_under(dir: &Path, wait: Duration) -> Result<usize, OrphanError> {
    let root = match fs::canonicalize(dir) {
        Ok(root) => root,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(OrphanError::Resolve {
                dir: dir.to_path_buf(),
                source,
            });
        }
    };
    let found = processes_under(&root);
    if found.is_empty() {
        return Ok(0);
    }
    let own_group = getpgrp().as_raw();
    let groups: BTreeSet<i32> = found.iter().map(|f| f.pgid).collect();
    for pgid in groups {
        tracing::warn!(pgid, dir = %root.display(), "killing a leftover process group of an earlier run");
        if pgid == own_group {
            // Never our own group: only the strays themselves.
            for f in found.iter().filter(|f| f.pgid == pgid) {
                ignore_gone(kill(Pid::from_raw(f.pid), Signal::SIGKILL));
            }
        } else {
            ignore_gone(killpg(Pid::from_raw(pgid), Signal::SIGKILL));
        }
    }
    let started = Instant::now();
    loop {
        let left = processes_under(&root);
        if left.is_empty() {
            return Ok(found.len());
        }
        if started.elapsed() >= wait {
            return Err(OrphanError::Survived {
                dir: root,
                pids: left.iter().map(|f| f.pid).collect(),
                waited: wait,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
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
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, pgrp, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(&state), Some(Ok(pgid))) = (fields.first(), fields.get(2).map(|f| f.parse()))
            && state != "Z"
        {
            out.push(Found { pid, pgid });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::{self, Spec};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leftover_groups_are_killed_and_waited_for() {
        let tmp = tempfile::tempdir().unwrap();
        let jobs = tmp.path().join("jobs");
        let work = jobs.join("j1");
        fs::create_dir_all(&work).unwrap();
        assert_eq!(kill_under(&jobs, Duration::from_secs(1)).unwrap(), 0);

        // A shell with a background child, standing in for terraform and a
        // provisioner it started.
        let spec = Spec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "sleep 60 & sleep 60".into()],
            cwd: work.clone(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        };
        let (tx, _rx) = mpsc::channel(8);
        let never = CancellationToken::new();
        let run = tokio::spawn(async move {
            process::run(spec, tx, &never, &never, Duration::from_secs(1)).await
        });
        let root = fs::canonicalize(&jobs).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_under(&root).len() < 2 {
            assert!(Instant::now() < deadline, "test processes never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let killed =
            tokio::task::spawn_blocking(move || kill_under(&jobs, Duration::from_secs(10)))
                .await
                .unwrap()
                .unwrap();
        assert!(killed >= 2, "found {killed}");
        assert!(processes_under(&root).is_empty());
        let exit = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the killed shell is reaped")
            .unwrap()
            .unwrap();
        assert_eq!(exit.signal, Some(Signal::SIGKILL as i32));
    }
}
