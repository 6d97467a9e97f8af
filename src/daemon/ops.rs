//! The daemon's side of the operations endpoint (`--metrics-address`):
//! what "ready" means, the background probes that feed it, and what
//! `POST /drain` does. The HTTP server itself is [`crate::health`].
//!
//! Readiness is read from flags its owners keep current, never computed
//! per request: the link says whether a session is up, the probe task
//! whether the cache dir takes a write and terraform runs, `Shutdown`
//! whether the daemon drains.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::metrics::Metrics;
use super::{Shutdown, Stage};

mod probe;

/// Longest [`Readiness::recheck`] waits for its probe.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's operations settings (`--metrics-address`, `--max-jobs`,
/// `--idle-timeout`).
#[derive(Debug, Clone, Default)]
pub struct OpsConfig {
    /// Serve /metrics, /healthz, /readyz and POST /drain here; `None`: off.
    pub metrics_address: Option<SocketAddr>,
    /// Drain and exit 0 once this many jobs were run; `None`: unlimited.
    pub max_jobs: Option<u64>,
    /// Drain and exit 0 after this long idle; `None`: never.
    pub idle_timeout: Option<Duration>,
}

/// What the tasks that keep the daemon's operations view current share.
#[derive(Clone)]
pub(super) struct Ops {
    pub metrics: Metrics,
    pub ready: Arc<Readiness>,
}

/// The readiness flags, each written by one owner.
pub(super) struct Readiness {
    url: String,
    cache_dir: PathBuf,
    terraform: PathBuf,
    shutdown: Shutdown,
    /// A session is open (after Welcome); written by the link.
    connected: AtomicBool,
    /// The cache dir lock is held; written once by `daemon::run`.
    locked: AtomicBool,
    /// Why the last write probe failed (`None`: it worked).
    cache_problem: Mutex<Option<String>>,
    /// Why the last `terraform version` failed (`None`: it ran).
    terraform_problem: Mutex<Option<String>>,
    /// Why the daemon must not take a job (`None`: no probe has failed);
    /// written by the probe task on each change, watched by the acquire
    /// loop. Unlike `check`, "not checked yet" does not count.
    unready: watch::Sender<Option<String>>,
    /// Cache dir probes run so far: [`Readiness::recheck`] waits for one more.
    cache_probes: watch::Sender<u64>,
    /// Asks the probe task for a cache dir probe now.
    recheck: Notify,
}

impl Readiness {
    pub(super) fn new(
        url: &str,
        cache_dir: PathBuf,
        terraform: PathBuf,
        shutdown: Shutdown,
    ) -> Self {
        Readiness {
            url: url.to_string(),
            cache_dir,
            terraform,
            shutdown,
            connected: AtomicBool::new(false),
            locked: AtomicBool::new(false),
            cache_problem: Mutex::new(Some("not checked yet".into())),
            terraform_problem: Mutex::new(Some("not checked yet".into())),
            unready: watch::Sender::new(None),
            cache_probes: watch::Sender::new(0),
            recheck: Notify::new(),
        }
    }

    /// Why the daemon must not take a job now (`None`: it may), and each
    /// change of it.
    pub(super) fn unready(&self) -> watch::Receiver<Option<String>> {
        self.unready.subscribe()
    }

    /// Probes the cache dir now (a job just ended, perhaps because the disk
    /// filled up) and returns once that probe is done, so the next Acquire
    /// sees its verdict.
    pub(super) async fn recheck(&self) {
        let mut probes = self.cache_probes.subscribe();
        let seen = *probes.borrow_and_update();
        self.recheck.notify_one();
        let _ = tokio::time::timeout(RECHECK_TIMEOUT, probes.wait_for(|n| *n > seen)).await;
    }

    pub(super) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    pub(super) fn set_locked(&self) {
        self.locked.store(true, Ordering::Relaxed);
    }

    /// `Ok` when the daemon can take a job now; else every reason it cannot.
    pub(super) fn check(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if !self.connected.load(Ordering::Relaxed) {
            why.push(format!("not connected to the coordinator at {}", self.url));
        }
        match self.shutdown.stage() {
            Stage::Running => {}
            Stage::Draining => why.push("draining: taking no more jobs".into()),
            Stage::Canceling | Stage::Killing => {
                why.push("canceling: interrupting the job, then exiting".into());
            }
        }
        let dir = self.cache_dir.display();
        if !self.locked.load(Ordering::Relaxed) {
            why.push(format!("cache dir {dir}: not locked yet"));
        }
        if let Some(p) = lock(&self.cache_problem).as_ref() {
            why.push(format!("cache dir {dir}: not writable: {p}"));
        }
        if let Some(p) = lock(&self.terraform_problem).as_ref() {
            why.push(format!(
                "terraform {}: does not run: {p}",
                self.terraform.display()
            ));
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `POST /drain` does: the same drain as SIGHUP, through
/// [`Shutdown::drain_from_endpoint`], but never an escalation — a second
/// POST while draining (or canceling) changes nothing and says so. Signals
/// escalate because a human repeating one means "faster"; a preStop hook
/// retried by the kubelet must not cancel a job, nor must the SIGTERM that
/// follows the hook (the first signal drain after this one is absorbed).
pub(super) fn drain_fn(shutdown: Shutdown) -> Arc<crate::health::DrainFn> {
    Arc::new(move || match shutdown.drain_from_endpoint() {
        Ok(()) => {
            tracing::info!(
                source = "POST /drain",
                "drain requested: taking no more jobs; a running job is finished first"
            );
            "draining: taking no more jobs; a running job is finished first".into()
        }
        Err(Stage::Running | Stage::Draining) => "already draining; nothing changed".into(),
        Err(Stage::Canceling | Stage::Killing) => "already canceling; nothing changed".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::probe::{PROBE_FILE, terraform_version, write_probe};
    use super::*;
    use crate::daemon::Request;
    use tokio_util::sync::CancellationToken;

    #[test]
    fn a_second_drain_post_never_escalates() {
        let s = Shutdown::new();
        let drain = drain_fn(s.clone());
        assert!(drain().starts_with("draining"));
        assert_eq!(s.stage(), Stage::Draining);
        assert!(drain().starts_with("already draining"));
        assert_eq!(s.stage(), Stage::Draining);
        s.request(Request::Cancel);
        assert!(drain().starts_with("already canceling"));
        assert_eq!(s.stage(), Stage::Canceling);
    }

    #[tokio::test]
    async fn readiness_lists_every_failing_reason() {
        let dir = tempfile::tempdir().unwrap();
        let s = Shutdown::new();
        let r = Readiness::new(
            "http://c:1",
            dir.path().into(),
            "/nonexistent/terraform".into(),
            s.clone(),
        );
        let why = r.check().unwrap_err().join("\n");
        for want in [
            "not connected to the coordinator at http://c:1",
            "not locked yet",
            "not writable: not checked yet",
            "does not run: not checked yet",
        ] {
            assert!(why.contains(want), "{want:?} missing in {why}");
        }
        r.set_connected(true);
        r.set_locked();
        *lock(&r.cache_problem) = write_probe(&dir.path().join(PROBE_FILE)).err();
        let stop = CancellationToken::new();
        let tf = terraform_version(&r.terraform, dir.path(), &stop).await;
        assert!(tf.unwrap_err().contains("/nonexistent/terraform"));
        *lock(&r.terraform_problem) = None;
        assert_eq!(r.check(), Ok(()));
        s.request(Request::Drain);
        assert_eq!(
            r.check(),
            Err(vec!["draining: taking no more jobs".to_string()])
        );
    }
}
