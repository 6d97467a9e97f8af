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

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::{Shutdown, Stage};
use crate::process::{self, Spec};

/// How often the cache dir must take a write.
const CACHE_PROBE_PERIOD: Duration = Duration::from_secs(15);
/// How soon a failing cache dir probe runs again: the daemon takes no job
/// meanwhile, so recovery should be noticed quickly.
const CACHE_RETRY_PERIOD: Duration = Duration::from_secs(1);
/// How soon a failing `terraform version` runs again.
const TERRAFORM_RETRY_PERIOD: Duration = Duration::from_secs(10);
/// Longest [`Readiness::recheck`] waits for its probe.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `terraform version` must run (a binary replaced or removed
/// under a running daemon shows up here).
const TERRAFORM_PROBE_PERIOD: Duration = Duration::from_secs(300);
/// Longest `terraform version` may take before it counts as not running.
const TERRAFORM_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
const PROBE_FILE: &str = ".ready-probe";

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

    /// Runs the probes until `stop`: a write to the cache dir every
    /// [`CACHE_PROBE_PERIOD`] (every [`CACHE_RETRY_PERIOD`] while it fails,
    /// and at once on [`Readiness::recheck`]), `terraform version` at once
    /// and every [`TERRAFORM_PROBE_PERIOD`] ([`TERRAFORM_RETRY_PERIOD`]
    /// while it fails). A problem is logged when it starts or changes, and
    /// its end once.
    pub(super) async fn probe(self: Arc<Self>, stop: CancellationToken) {
        let mut next_cache = Instant::now();
        let mut next_terraform = Instant::now();
        let mut cache_failed: Option<String> = None;
        let mut terraform_failed: Option<String> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.recheck.notified() => next_cache = Instant::now(),
                () = tokio::time::sleep_until(next_cache) => {
                    let path = self.cache_dir.join(PROBE_FILE);
                    let result = tokio::task::spawn_blocking(move || write_probe(&path)).await;
                    let problem = match result {
                        Ok(r) => r.err(),
                        Err(e) => Some(format!("probe task failed: {e}")),
                    };
                    let what = format!("cache dir {}", self.cache_dir.display());
                    log_change(&what, &cache_failed, &problem);
                    next_cache = Instant::now()
                        + if problem.is_some() { CACHE_RETRY_PERIOD } else { CACHE_PROBE_PERIOD };
                    cache_failed = problem.clone();
                    *lock(&self.cache_problem) = problem;
                    self.publish(&cache_failed, &terraform_failed);
                    self.cache_probes.send_modify(|n| *n += 1);
                }
                () = tokio::time::sleep_until(next_terraform) => {
                    let problem = terraform_version(&self.terraform, &self.cache_dir, &stop).await.err();
                    let what = format!("terraform {}", self.terraform.display());
                    log_change(&what, &terraform_failed, &problem);
                    next_terraform = Instant::now()
                        + if problem.is_some() { TERRAFORM_RETRY_PERIOD } else { TERRAFORM_PROBE_PERIOD };
                    terraform_failed = problem.clone();
                    *lock(&self.terraform_problem) = problem;
                    self.publish(&cache_failed, &terraform_failed);
                }
            }
        }
    }

    /// Tells the acquire loop why it must not take jobs, on a change only.
    fn publish(&self, cache: &Option<String>, terraform: &Option<String>) {
        let mut why = Vec::new();
        if let Some(p) = cache {
            why.push(format!(
                "cache dir {}: not writable: {p}",
                self.cache_dir.display()
            ));
        }
        if let Some(p) = terraform {
            why.push(format!(
                "terraform {}: does not run: {p}",
                self.terraform.display()
            ));
        }
        let why = (!why.is_empty()).then(|| why.join("; "));
        self.unready.send_if_modified(|cur| {
            let changed = *cur != why;
            *cur = why;
            changed
        });
    }
}

/// Logs a probe's problem when it starts or changes, and its end.
fn log_change(what: &str, before: &Option<String>, now: &Option<String>) {
    match (before, now) {
        (_, Some(p)) if before.as_ref() != Some(p) => {
            tracing::warn!(error = p, "{what}: readiness check failed");
        }
        (Some(_), None) => tracing::info!("{what}: readiness check passes again"),
        _ => {}
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_probe(path: &std::path::Path) -> Result<(), String> {
    std::fs::write(path, b"provisionerd readiness probe\n")
        .and_then(|()| std::fs::remove_file(path))
        .map_err(|e| format!("write {}: {e}", path.display()))
}

/// `terraform version` in `cwd`, with the environment a job's terraform
/// gets: `daemon_env` without the daemon's own settings (its key among
/// them), plus the automation settings.
fn version_spec(
    terraform: &std::path::Path,
    cwd: &std::path::Path,
    daemon_env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Spec {
    Spec {
        program: terraform.to_path_buf(),
        args: vec!["version".into()],
        cwd: cwd.to_path_buf(),
        env: crate::runner::base_environment(daemon_env)
            .into_iter()
            .collect(),
    }
}

/// Runs `terraform version`; `Err` says why it did not succeed.
async fn terraform_version(
    terraform: &std::path::Path,
    cwd: &std::path::Path,
    stop: &CancellationToken,
) -> Result<(), String> {
    let spec = version_spec(terraform, cwd, std::env::vars_os());
    // Output is not needed: dropping the receiver discards it.
    let (tx, _) = mpsc::channel(1);
    let cancel = stop.child_token();
    let timer = cancel.clone();
    let timeout = tokio::spawn(async move {
        tokio::time::sleep(TERRAFORM_PROBE_TIMEOUT).await;
        timer.cancel();
    });
    let result = process::run(
        spec,
        tx,
        &cancel,
        &CancellationToken::new(),
        Duration::from_secs(5),
    )
    .await;
    timeout.abort();
    let exit = result.map_err(|e| e.to_string())?;
    if exit.interrupted {
        return Err(format!(
            "`terraform version` did not finish within {}s",
            TERRAFORM_PROBE_TIMEOUT.as_secs()
        ));
    }
    match (exit.code, exit.signal) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(format!("`terraform version` exited with code {code}")),
        (None, Some(sig)) => Err(format!("`terraform version` was killed by signal {sig}")),
        (None, None) => Err("`terraform version` ended without an exit status".into()),
    }
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
    use super::*;
    use crate::daemon::Request;

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

    #[test]
    fn the_terraform_probe_gets_a_jobs_environment_without_the_daemon_key() {
        let daemon_env = [
            ("PROVISIONERD_KEY", "secret"),
            ("CODER_AGENT_TOKEN", "t"),
            ("PATH", "/usr/bin"),
            ("TF_CLI_CONFIG_FILE", "/etc/tf.rc"),
        ]
        .map(|(k, v)| (k.into(), v.into()));
        let spec = version_spec("/bin/terraform".as_ref(), "/c".as_ref(), daemon_env);
        let env: Vec<(String, String)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect();
        let has = |k: &str, v: &str| env.contains(&(k.to_string(), v.to_string()));
        assert!(
            has("PATH", "/usr/bin") && has("TF_CLI_CONFIG_FILE", "/etc/tf.rc"),
            "{env:?}"
        );
        assert!(
            has("CHECKPOINT_DISABLE", "1") && has("TF_IN_AUTOMATION", "1"),
            "{env:?}"
        );
        assert!(
            !env.iter()
                .any(|(k, _)| k.starts_with("PROVISIONERD_") || k.starts_with("CODER_")),
            "{env:?}"
        );
        assert_eq!(spec.args, ["version"]);
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
