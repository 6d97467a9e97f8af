//! The per-daemon cache dir: an exclusive lock so two daemons never share
//! work dirs or a plugin cache, the terraform plugin cache, the root under
//! which the runner creates job work dirs, job records and log spools.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::DaemonError;
use super::orphans;
use super::record::Records;
use super::recover::{self, Unfinished};
use crate::archive::Limits;
use crate::dirlock::{DirLock, LockError};
use crate::runner::RunnerConfig;

const LOCK_FILE: &str = "daemon.lock";
/// How long leftover processes may take to die after SIGKILL.
const ORPHAN_KILL_WAIT: Duration = Duration::from_secs(10);

/// A locked cache dir. The lock is held until this value is dropped.
#[derive(Debug)]
pub(super) struct CacheDir {
    root: PathBuf,
    _lock: DirLock,
    /// Jobs an earlier run left unreported, for `recover` to report.
    unfinished: Vec<Unfinished>,
}

impl CacheDir {
    /// Creates `dir` (0700; see [`open_root`] for one that exists), locks it
    /// without waiting, records who holds
    /// the lock, stops the processes an earlier (killed) run left in the job
    /// work root (SIGINT, `cancel_grace`, SIGKILL, as a cancel would),
    /// collects its unreported jobs (see [`CacheDir::take_unfinished`]),
    /// and empties the work root (safe: holding the lock means no other
    /// daemon is using it).
    pub(super) async fn open(
        dir: &Path,
        daemon_name: &str,
        cancel_grace: Duration,
    ) -> Result<Self, DaemonError> {
        open_root(dir).map_err(|e| fatal(format!("create cache dir {}: {e}", dir.display())))?;
        let lock = DirLock::acquire(dir, LOCK_FILE, &format!("name={daemon_name}")).map_err(
            |e| match e {
                LockError::Held { holder } => DaemonError::CacheDirLocked {
                    dir: dir.to_path_buf(),
                    holder,
                },
                e => fatal(format!("lock cache dir {}: {e}", dir.display())),
            },
        )?;

        let mut cache = CacheDir {
            root: dir.to_path_buf(),
            _lock: lock,
            unfinished: Vec::new(),
        };
        create_private_dir(&cache.plugins_dir()).map_err(|e| {
            fatal(format!(
                "create plugin cache {}: {e}",
                cache.plugins_dir().display()
            ))
        })?;
        for d in [cache.records_dir(), cache.spool_dir()] {
            create_private_dir(&d).map_err(|e| fatal(format!("create {}: {e}", d.display())))?;
        }
        let jobs = cache.jobs_dir();
        // Before anything reads the work dirs: a leftover terraform would
        // keep changing its state and recreate what is wiped. Interrupted
        // rather than killed, it gets to write its final state, read next.
        match orphans::stop_under(&jobs, cancel_grace, ORPHAN_KILL_WAIT).await {
            Ok(s) if s.found == 0 => {}
            Ok(s) => tracing::warn!(
                processes = s.found,
                killed = s.killed,
                "stopped processes an earlier run left behind"
            ),
            Err(e) => tracing::error!(error = %e, "leftover processes of an earlier run"),
        }
        // Also keeps each state beside its record: wiped with the work
        // root, it would be lost to a start whose report fails.
        cache.unfinished =
            recover::collect(&cache.records(), &jobs, &cache.spool_dir()).map_err(|e| {
                fatal(format!(
                    "collect the unfinished jobs of an earlier run: {e}"
                ))
            })?;
        match fs::remove_dir_all(&jobs) {
            Ok(()) => {
                tracing::debug!(dir = %jobs.display(), "cleared the job work root")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(fatal(format!(
                    "clean job work root {}: {e}",
                    jobs.display()
                )));
            }
        }
        create_private_dir(&jobs)
            .map_err(|e| fatal(format!("create job work root {}: {e}", jobs.display())))?;
        Ok(cache)
    }

    pub(super) fn plugins_dir(&self) -> PathBuf {
        self.root.join("plugins")
    }

    pub(super) fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }

    fn records_dir(&self) -> PathBuf {
        self.root.join("records")
    }

    /// One record per job started and not reported yet.
    pub(super) fn records(&self) -> Records {
        Records::new(self.records_dir())
    }

    /// Job log lines the coordinator could not take yet.
    pub(super) fn spool_dir(&self) -> PathBuf {
        self.root.join("spool")
    }

    /// The jobs an earlier run left unreported (once; later calls get none).
    pub(super) fn take_unfinished(&mut self) -> Vec<Unfinished> {
        std::mem::take(&mut self.unfinished)
    }

    pub(super) fn runner_config(
        &self,
        terraform_path: &Path,
        cancel_grace: Duration,
        force_kill: CancellationToken,
        archive_limits: Limits,
    ) -> RunnerConfig {
        RunnerConfig {
            force_kill,
            archive_limits,
            terraform_path: terraform_path.to_path_buf(),
            work_root: self.jobs_dir(),
            plugin_cache_dir: self.plugins_dir(),
            cancel_grace,
            observer: Default::default(),
        }
    }
}

/// Fails early, with the path in the message, rather than at the first job.
pub(super) fn check_terraform(path: &Path) -> Result<(), DaemonError> {
    let meta = fs::metadata(path)
        .map_err(|e| fatal(format!("terraform not found at {}: {e}", path.display())))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(fatal(format!(
            "terraform not found at {}: not an executable file",
            path.display()
        )));
    }
    Ok(())
}

/// Creates the cache root and its parents as 0700. An existing root we own
/// is tightened to 0700; one we do not own is left as it is: in a pod the
/// root is a volume (an emptyDir or a PVC with an fsGroup: uid 0, mode 2777)
/// whose mode a daemon without capabilities cannot change. What needs
/// privacy lives in the subdirectories, which are always ours and 0700. A
/// root we cannot write fails at the lock file, naming it.
fn open_root(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() == me {
        return tighten(dir, &meta);
    }
    tracing::info!(
        dir = %dir.display(),
        owner = meta.uid(),
        mode = format!("{:o}", meta.permissions().mode() & 0o7777),
        uid = me,
        "the cache dir is not the daemon's own (a volume's root): its mode is \
         left as it is; the daemon's subdirectories in it are private (0700)"
    );
    Ok(())
}

/// Creates `dir` and its parents as 0700 and tightens an existing `dir` to
/// 0700: it holds provider binaries terraform will execute and job states.
/// An existing `dir` owned by another user is refused (even for root, whom
/// a chmod would not stop): whoever owns it could change what is in it.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "owned by uid {}, not by the daemon's uid {me}: remove it or chown it",
                meta.uid()
            ),
        ));
    }
    tighten(dir, &meta)
}

fn tighten(dir: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.permissions().mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn fatal(msg: String) -> DaemonError {
    DaemonError::Fatal(msg)
}

#[cfg(test)]
mod tests;
