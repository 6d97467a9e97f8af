//! `provisionerd start`: the daemon.
//!
//! | submodule    | what it holds                                                 |
//! |--------------|---------------------------------------------------------------|
//! | `cachedir`   | cache dir lock, plugin cache, job work root                   |
//! | `rpc`        | the gRPC client (auth, limits, keepalive), RPC error verdicts |
//! | `session`    | Hello/Welcome with retry; the reader task of the stream       |
//! | `link`       | the one session slot, rebuilt in the background on a break    |
//! | `acquire`    | the state-owning loop: Acquire, offers, drain, pushes         |
//! | `job`        | one job: runner task, log shipping, FinishJob                 |
//! | `convert`    | offer → runner job, runner outcome → FinishJob                |
//! | `transfer`   | GetJobInput fetch and FinishJob stream, sizes and sha256s     |
//! | `logship`    | UpdateJob shipping, heartbeat, job lease; `batch` its policy  |
//! | `backlog`    | unconfirmed log lines: memory, then the `spool` file          |
//! | `record`     | a record per running job, for a restarted daemon              |
//! | `orphans`    | stopping (SIGINT, grace, SIGKILL) what a killed daemon left   |
//! | `recover`    | reporting the jobs a killed daemon never reported             |
//! | `metrics`    | the Prometheus metric handles, the cache-size sampler         |
//! | `ops`        | readiness and its probes, POST /drain, lifetime settings      |
//!
//! Shutdown: `drain` is watched only by the acquire loop (no new work; wait
//! for the running job). `cancel` reaches the runner through each job's
//! token, a child of it; the result is then reported within a bounded time.

mod acquire;
mod backlog;
mod backoff;
mod batch;
mod cachedir;
mod convert;
mod job;
mod link;
mod logship;
mod metrics;
mod ops;
mod orphans;
mod record;
mod recover;
mod rpc;
mod session;
mod spool;
mod transfer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::sync::watch;

pub use metrics::Metrics;
pub use ops::OpsConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proto::{DaemonState, StateUpdate};

/// After a cancel, once terraform has stopped, how long the daemon keeps
/// trying to ship the last log lines and report the job before it gives up.
/// A drain deadline must leave room for the cancel grace plus this.
pub const REPORT_BUDGET: Duration = Duration::from_secs(10);

/// How long into a drain limited to `drain_timeout` the daemon cancels its
/// job: late enough to give the job every chance, early enough that the
/// cancel grace and the final report still land before the deadline.
pub fn escalation_delay(drain_timeout: Duration, cancel_grace: Duration) -> Duration {
    drain_timeout.saturating_sub(cancel_grace.saturating_add(REPORT_BUDGET))
}

/// Validated daemon configuration (built from the clap flags in `config`).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Coordinator URLs, e.g. `http://127.0.0.1:7800`: tried in turn (the
    /// replicas of one coordinator, or one load-balanced name).
    pub urls: Vec<String>,
    /// Provisioner key secret (sent as `authorization: Bearer <key>`).
    pub key: crate::grpc::Secret,
    /// Trust roots and client certificate for an https:// URL.
    pub tls: crate::grpc::tls::ClientTls,
    /// Daemon name shown by `daemons list`.
    pub name: String,
    /// Per-daemon cache dir: lock file, plugin cache, job work dirs.
    pub cache_dir: PathBuf,
    pub terraform_path: PathBuf,
    /// How long a name held by a connected daemon of the same key is
    /// retried before the daemon exits `NAME_TAKEN`: long enough for the
    /// coordinator to notice this daemon's own previous session is gone.
    pub name_conflict_timeout: Duration,
    /// Grace between terraform's SIGINT and SIGKILL.
    pub cancel_grace: Duration,
    /// A drain that lasts longer than this escalates to a cancel, early
    /// enough that the cancel grace and the final report fit inside it.
    /// `None`: a drain waits for the job however long it takes.
    pub drain_timeout: Option<Duration>,
    /// Bounds on the template archives of jobs.
    pub archive_limits: crate::archive::Limits,
    /// The operations endpoint and the lifetime policy.
    pub ops: OpsConfig,
}

/// Shutdown triggers passed in from `main` (the library installs no signal
/// handlers). `drain` is a child of `cancel`: cancelling implies draining.
/// `kill` is the last resort and stands alone: it cuts the cancel grace
/// short, so it is only fired once `cancel` has been.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Serializes requests; true while the drain was started by
    /// `POST /drain` and no signal has arrived since (see
    /// [`Shutdown::request`]).
    endpoint_drain: Arc<std::sync::Mutex<bool>>,
    /// Interrupt the running job, report it, exit.
    pub cancel: CancellationToken,
    /// Take no more jobs; finish the running one, report it, exit.
    pub drain: CancellationToken,
    /// SIGKILL terraform's process group now, report briefly, exit non-zero.
    pub kill: CancellationToken,
}

/// What an operator asked for with a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Drain,
    Cancel,
}

/// How far shutdown has gone after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Running,
    Draining,
    Canceling,
    Killing,
}

impl Shutdown {
    pub fn new() -> Self {
        let cancel = CancellationToken::new();
        let drain = cancel.child_token();
        Shutdown {
            endpoint_drain: Arc::new(std::sync::Mutex::new(false)),
            cancel,
            drain,
            kill: CancellationToken::new(),
        }
    }

    /// How far shutdown has gone.
    pub fn stage(&self) -> Stage {
        if self.kill.is_cancelled() {
            Stage::Killing
        } else if self.cancel.is_cancelled() {
            Stage::Canceling
        } else if self.drain.is_cancelled() {
            Stage::Draining
        } else {
            Stage::Running
        }
    }

    /// Applies an operator's request, escalating on repeats: the first
    /// drain request drains, the first cancel request cancels; a request
    /// while draining cancels, any request while canceling kills. One
    /// exception: the first drain request after a drain started by
    /// `POST /drain` ([`Shutdown::drain_from_endpoint`]) keeps draining —
    /// a preStop hook or spot handler posts the drain, then the kubelet or
    /// systemd sends SIGTERM, which must not cancel the job. A cancel
    /// request always cancels. Returns the stage reached.
    pub fn request(&self, req: Request) -> Stage {
        let mut endpoint_drain = lock(&self.endpoint_drain);
        match (self.stage(), req) {
            (Stage::Running, Request::Drain) => self.drain.cancel(),
            (Stage::Draining, Request::Drain) if *endpoint_drain => {}
            (Stage::Running, Request::Cancel) | (Stage::Draining, _) => self.cancel.cancel(),
            (Stage::Canceling | Stage::Killing, _) => {
                self.cancel.cancel();
                self.kill.cancel();
            }
        }
        *endpoint_drain = false;
        self.stage()
    }

    /// What `POST /drain` does: drains if running, never escalates.
    /// `Ok`: this call started the drain (and the next drain request by a
    /// signal is absorbed); `Err`: the stage it found, left unchanged.
    pub fn drain_from_endpoint(&self) -> Result<(), Stage> {
        let mut endpoint_drain = lock(&self.endpoint_drain);
        match self.stage() {
            Stage::Running => {
                self.drain.cancel();
                *endpoint_drain = true;
                Ok(())
            }
            stage => Err(stage),
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("lock cache dir {dir}: held by {holder}")]
    CacheDirLocked { dir: PathBuf, holder: String },
    #[error("connect to coordinator {url}: credentials refused: {message}")]
    AuthRefused { url: String, message: String },
    /// TLS failed in a way retrying cannot fix (an untrusted certificate,
    /// or the coordinator refused ours).
    #[error("connect to coordinator {url}: TLS handshake failed: {message}")]
    TlsRefused { url: String, message: String },
    /// The coordinator gave our name to someone else: another key owns it,
    /// or a live daemon of our key kept it past `--name-conflict-timeout`.
    /// `message` is the coordinator's, naming the name.
    #[error("connect to coordinator {url}: {message}")]
    NameTaken { url: String, message: String },
    #[error("{0}")]
    Fatal(String),
    /// The operator forced the stop (a signal during cancel): terraform's
    /// process group was killed without its grace.
    #[error("stop forced: terraform was killed without its grace period")]
    Forced,
}

impl DaemonError {
    /// The process exit code for this error (see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::CacheDirLocked { .. } => crate::exit::CACHE_DIR_LOCKED,
            DaemonError::AuthRefused { .. } | DaemonError::TlsRefused { .. } => {
                crate::exit::AUTH_REFUSED
            }
            DaemonError::NameTaken { .. } => crate::exit::NAME_TAKEN,
            DaemonError::Fatal(_) => crate::exit::FATAL,
            DaemonError::Forced => crate::exit::FORCED,
        }
    }
}

/// Runs the daemon until `shutdown` says stop (or a fatal error). Returns
/// only after every task it spawned has ended; the cache dir lock is
/// released last.
pub async fn run(cfg: DaemonConfig, shutdown: Shutdown) -> Result<(), DaemonError> {
    let (metrics, registry) = Metrics::new(&cfg.name);
    let ready = Arc::new(ops::Readiness::new(
        &cfg.urls.join(" or "),
        cfg.cache_dir.clone(),
        cfg.terraform_path.clone(),
        shutdown.clone(),
    ));
    // The endpoint outlives the daemon's work: /healthz answers and /readyz
    // says "draining" until the very end.
    let ops_stop = CancellationToken::new();
    let mut endpoint = None;
    if let Some(addr) = cfg.ops.metrics_address {
        let listener = crate::health::bind(addr)
            .await
            .map_err(|e| DaemonError::Fatal(e.to_string()))?;
        if let Ok(bound) = listener.local_addr() {
            tracing::info!(addr = %bound, "operations endpoint listening");
        }
        let r = ready.clone();
        let ep = crate::health::Endpoint {
            registry: Arc::new(registry),
            freshen: None,
            ready: Arc::new(move || r.check()),
            drain: Some(ops::drain_fn(shutdown.clone())),
        };
        endpoint = Some(tokio::spawn(crate::health::serve(
            listener,
            ep,
            ops_stop.clone(),
        )));
    }
    let ops = ops::Ops { metrics, ready };
    let result = run_with(cfg, shutdown, ops, &ops_stop).await;
    ops_stop.cancel();
    if let Some(task) = endpoint {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    result
}

async fn run_with(
    cfg: DaemonConfig,
    shutdown: Shutdown,
    ops: ops::Ops,
    ops_stop: &CancellationToken,
) -> Result<(), DaemonError> {
    cachedir::check_terraform(&cfg.terraform_path)?;
    let mut cache = cachedir::CacheDir::open(&cfg.cache_dir, &cfg.name, cfg.cancel_grace).await?;
    ops.ready.set_locked();
    tokio::spawn(ops.ready.clone().probe(ops_stop.clone()));
    tokio::spawn(
        ops.metrics
            .clone()
            .sample_cache_dir(cfg.cache_dir.clone(), ops_stop.clone()),
    );
    let clients = rpc::client(&cfg)?;
    let client = clients.any.clone();
    tracing::info!(
        name = %cfg.name,
        url = %cfg.urls.join(","),
        cache_dir = %cfg.cache_dir.display(),
        "daemon starting"
    );
    // Jobs a killed run left behind are failed at once, not when their
    // lease runs out, and before this run takes new work.
    recover::report_all(
        &client,
        cache.take_unfinished(),
        &cache.records(),
        &cache.spool_dir(),
        &shutdown.cancel,
    )
    .await;

    let tracker = TaskTracker::new();
    // Stops background reconnects once the loop has returned.
    let halt = CancellationToken::new();
    let (reported, state) = watch::channel(StateUpdate {
        state: DaemonState::Idle as i32,
        current_job_id: String::new(),
    });
    let lease_ms = Arc::new(AtomicU64::new(0));
    let connector = session::Connector {
        clients,
        name: cfg.name.clone(),
        tracker: tracker.clone(),
        state,
        lease_ms: lease_ms.clone(),
        welcomed: Default::default(),
        name_conflict_timeout: cfg.name_conflict_timeout,
    };
    let mut runner = cache.runner_config(
        &cfg.terraform_path,
        cfg.cancel_grace,
        shutdown.kill.clone(),
        cfg.archive_limits,
    );
    runner.observer = ops.metrics.terraform_observer();
    let drain_escalation = cfg
        .drain_timeout
        .map(|t| escalation_delay(t, cfg.cancel_grace));
    let kill = shutdown.kill.clone();
    let daemon = acquire::Daemon {
        ready: ops.ready.clone(),
        unready: ops.ready.unready(),
        noted_unready: None,
        link: link::Link::new(connector, halt.clone(), reported, ops.clone()),
        drain_escalation,
        drain_timeout: cfg.drain_timeout,
        drained_at: None,
        lifetime: acquire::Lifetime::new(cfg.ops.max_jobs, cfg.ops.idle_timeout),
        jobs: job::JobCtx {
            client,
            runner,
            tracker: tracker.clone(),
            cancel: shutdown.cancel.clone(),
            lease_ms,
            records: cache.records(),
            spool_dir: cache.spool_dir(),
            name: cfg.name.clone(),
            metrics: ops.metrics.clone(),
        },
        shutdown,
    };
    // Dropping the daemon (inside `run`) drops the session, which stops its
    // reader task.
    let mut result = daemon.run().await;
    halt.cancel();
    tracker.close();
    tracker.wait().await;
    drop(cache);
    if result.is_ok() && kill.is_cancelled() {
        result = Err(DaemonError::Forced);
    }
    match &result {
        Ok(()) => tracing::info!("daemon stopped"),
        Err(e) => tracing::error!(error = %e, "daemon stopped"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_requests_escalate_one_level_at_a_time() {
        let s = Shutdown::new();
        assert_eq!(s.stage(), Stage::Running);
        assert_eq!(s.request(Request::Drain), Stage::Draining);
        assert!(s.drain.is_cancelled() && !s.cancel.is_cancelled());
        // Any second request, even another drain, cancels.
        assert_eq!(s.request(Request::Drain), Stage::Canceling);
        assert!(!s.kill.is_cancelled());
        assert_eq!(s.request(Request::Drain), Stage::Killing);
        assert_eq!(s.request(Request::Cancel), Stage::Killing);
    }

    #[test]
    fn a_drain_escalates_leaving_grace_and_report_budget_before_its_deadline() {
        let s = Duration::from_secs;
        assert_eq!(escalation_delay(s(300), s(60)), s(230));
        assert_eq!(escalation_delay(s(13), s(2)), s(1));
        // Too short to fit (only reachable without config validation): at once.
        assert_eq!(escalation_delay(s(5), s(60)), Duration::ZERO);
        assert_eq!(escalation_delay(s(5), Duration::MAX), Duration::ZERO);
    }

    #[test]
    fn a_signal_drain_after_an_endpoint_drain_keeps_draining_once() {
        let s = Shutdown::new();
        assert_eq!(s.drain_from_endpoint(), Ok(()));
        assert_eq!(s.stage(), Stage::Draining);
        // A second POST changes nothing and keeps the absorbed signal.
        assert_eq!(s.drain_from_endpoint(), Err(Stage::Draining));
        // The kubelet's SIGTERM after the preStop hook: still draining.
        assert_eq!(s.request(Request::Drain), Stage::Draining);
        assert!(!s.cancel.is_cancelled());
        // A further one escalates as usual.
        assert_eq!(s.request(Request::Drain), Stage::Canceling);
        assert_eq!(s.request(Request::Drain), Stage::Killing);
    }

    #[test]
    fn a_cancel_after_an_endpoint_drain_cancels_at_once() {
        let s = Shutdown::new();
        assert_eq!(s.drain_from_endpoint(), Ok(()));
        assert_eq!(s.request(Request::Cancel), Stage::Canceling);
        // The absorption is used up by any signal.
        assert_eq!(s.request(Request::Drain), Stage::Killing);
    }

    #[test]
    fn a_signal_drain_is_never_absorbed() {
        let s = Shutdown::new();
        assert_eq!(s.request(Request::Drain), Stage::Draining);
        assert_eq!(s.drain_from_endpoint(), Err(Stage::Draining));
        assert_eq!(s.request(Request::Drain), Stage::Canceling);
    }

    #[test]
    fn a_first_cancel_skips_the_drain_and_the_next_kills() {
        let s = Shutdown::new();
        assert_eq!(s.request(Request::Cancel), Stage::Canceling);
        assert!(s.drain.is_cancelled(), "cancel implies drain");
        assert_eq!(s.request(Request::Cancel), Stage::Killing);
    }
}
