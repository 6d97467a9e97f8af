//! `provisionerd start`: the daemon. (interface; implementation in progress)

use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

/// Runs the daemon until `shutdown` says stop (or a fatal error).
pub async fn run(_cfg: DaemonConfig, _shutdown: Shutdown) -> Result<(), DaemonError> {
    todo!("daemon::run")
}
