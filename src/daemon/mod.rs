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
//! | `logship`    | UpdateJob shipping and heartbeat; `batch` is its policy       |
//!
//! Shutdown: `drain` is watched only by the acquire loop (no new work; wait
//! for the running job). `cancel` reaches the runner through each job's
//! token, a child of it; the result is then reported within a bounded time.

mod acquire;
mod backoff;
mod batch;
mod cachedir;
mod convert;
mod job;
mod link;
mod logship;
mod rpc;
mod session;

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Validated daemon configuration (built from the clap flags in `config`).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Coordinator URL, e.g. `http://127.0.0.1:7800`.
    pub url: String,
    /// Provisioner key secret (sent as `authorization: Bearer <key>`).
    pub key: String,
    /// Daemon name shown by `daemons list`.
    pub name: String,
    /// Per-daemon cache dir: lock file, plugin cache, job work dirs.
    pub cache_dir: PathBuf,
    pub terraform_path: PathBuf,
    /// Grace between terraform's SIGINT and SIGKILL.
    pub cancel_grace: Duration,
}

/// Shutdown triggers passed in from `main` (the library installs no signal
/// handlers). `drain` is a child of `cancel`: cancelling implies draining.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Interrupt the running job, report it, exit.
    pub cancel: CancellationToken,
    /// Take no more jobs; finish the running one, report it, exit.
    pub drain: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        let cancel = CancellationToken::new();
        let drain = cancel.child_token();
        Shutdown { cancel, drain }
    }
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
    #[error("{0}")]
    Fatal(String),
}

impl DaemonError {
    /// The process exit code for this error (see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            DaemonError::CacheDirLocked { .. } => crate::exit::CACHE_DIR_LOCKED,
            DaemonError::AuthRefused { .. } => crate::exit::AUTH_REFUSED,
            DaemonError::Fatal(_) => crate::exit::FATAL,
        }
    }
}

/// Runs the daemon until `shutdown` says stop (or a fatal error). Returns
/// only after every task it spawned has ended; the cache dir lock is
/// released last.
pub async fn run(cfg: DaemonConfig, shutdown: Shutdown) -> Result<(), DaemonError> {
    cachedir::check_terraform(&cfg.terraform_path)?;
    let cache = cachedir::CacheDir::open(&cfg.cache_dir, &cfg.name)?;
    let client = rpc::client(&cfg)?;
    tracing::info!(
        name = %cfg.name,
        url = %cfg.url,
        cache_dir = %cfg.cache_dir.display(),
        "daemon starting"
    );

    let tracker = TaskTracker::new();
    // Stops background reconnects once the loop has returned.
    let halt = CancellationToken::new();
    let connector = session::Connector {
        client: client.clone(),
        url: cfg.url.clone(),
        name: cfg.name.clone(),
        tracker: tracker.clone(),
    };
    let daemon = acquire::Daemon {
        link: link::Link::new(connector, halt.clone()),
        jobs: job::JobCtx {
            client,
            runner: cache.runner_config(&cfg.terraform_path, cfg.cancel_grace),
            tracker: tracker.clone(),
            cancel: shutdown.cancel.clone(),
        },
        shutdown,
    };
    // Dropping the daemon (inside `run`) drops the session, which stops its
    // reader task.
    let result = daemon.run().await;
    halt.cancel();
    tracker.close();
    tracker.wait().await;
    drop(cache);
    match &result {
        Ok(()) => tracing::info!("daemon stopped"),
        Err(e) => tracing::error!(error = %e, "daemon stopped"),
    }
    result
}
