//! The one clap definition of every command, flag and environment variable.
//! Every flag is also a `PROVISIONERD_*` variable; durations are human
//! ("30s", "5m"). Validation happens here, before anything starts; `main`
//! turns a failure into exit code 64.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::coordinator::ServeConfig;
use crate::daemon::DaemonConfig;
use crate::grpc::Secret;
use crate::grpc::tls::{ClientTls, ServerTls};

// The admin commands' flags (keys, templates, workspaces, jobs, daemons,
// prebuilds): a file of their own, re-exported so callers see one module.
mod cli;
pub use cli::*;

#[derive(Debug, Parser)]
#[command(
    name = "provisionerd",
    version,
    about = "Terraform provisioner daemon with tag routing, and its coordinator"
)]
pub struct Cli {
    /// Log format on stderr [default: text on a terminal, else json].
    #[arg(long, env = "PROVISIONERD_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line (for log collectors).
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator: keys, templates, workspaces, the job queue.
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Run a provisioner daemon that claims and runs jobs.
    #[command(after_help = START_HELP)]
    Start(StartArgs),
    /// Manage provisioner keys (their tags decide which jobs daemons take).
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Push and list templates.
    #[command(subcommand)]
    Templates(TemplatesCmd),
    /// Create, start, stop, delete and inspect workspaces.
    #[command(subcommand)]
    Workspaces(WorkspacesCmd),
    /// Inspect jobs and their logs.
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// List provisioner daemons.
    #[command(subcommand)]
    Daemons(DaemonsCmd),
    /// Pause, resume and inspect prebuild reconciliation.
    #[command(subcommand)]
    Prebuilds(PrebuildsCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = COMPLETION_HELP)]
    Completion { shell: clap_complete::Shell },
    /// Print the man page (roff) of provisionerd and its commands.
    #[command(after_help = "Install: provisionerd man > /usr/local/share/man/man1/provisionerd.1")]
    Man,
}

const COMPLETION_HELP: &str = "\
Install:
  bash  provisionerd completion bash > /etc/bash_completion.d/provisionerd
        (or: source <(provisionerd completion bash) in ~/.bashrc)
  zsh   provisionerd completion zsh > \"${fpath[1]}/_provisionerd\"
  fish  provisionerd completion fish > ~/.config/fish/completions/provisionerd.fish";

const SERVE_HELP: &str = "\
Exit codes:
  0   stopped by SIGINT or SIGTERM
  1   fatal error (e.g. the --listen or --metrics-address port is taken)
  64  bad configuration; or --data-dir was used before and its database is
      missing or empty (--allow-new-database starts anew), or the database
      is from a newer release
  65  the database is damaged (SQLite's quick_check), not SQLite, or not a
      provisionerd database; restore it from a backup
  73  the data dir is locked by another coordinator";

const START_HELP: &str = "\
Signals:
  SIGHUP   drain: take no more jobs, finish the running one, report it, exit 0
  SIGINT   cancel: interrupt terraform (one SIGINT to its process group,
           SIGKILL after --cancel-grace), report the job canceled, exit 0
  SIGTERM  drain or cancel, as --on-sigterm says (default drain)
  A second signal escalates: during a drain it cancels; during a cancel it
  kills terraform's process group at once, reports, and exits 2.
  With --drain-timeout, a drain that runs too long becomes a cancel by itself.
  POST /drain on --metrics-address drains like SIGHUP but never escalates,
  and the first draining signal after it (the SIGTERM that follows a
  preStop hook) keeps draining; a further signal escalates as usual.

Lifetime (for autoscalers):
  --max-jobs N      after the Nth job is reported: drain, exit 0
  --idle-timeout D  after D connected without a job: drain, exit 0

Exit codes:
  0   clean exit (drained or canceled, --max-jobs or --idle-timeout reached)
  1   fatal error (e.g. the --metrics-address port is taken)
  2   stop forced by a signal during cancel (terraform killed without grace)
  3   the --name is taken: it belongs to another provisioner key, or a
      connected daemon of this key kept it for --name-conflict-timeout
  64  bad configuration
  73  the cache dir is locked by another daemon
  77  the coordinator refused the provisioner key, or TLS authentication
      failed (its certificate is not trusted, or it refused ours)";

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 30s or 5m: {e}"))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, logged at start).
    #[arg(long, env = "PROVISIONERD_LISTEN", default_value = "127.0.0.1:7800")]
    pub listen: SocketAddr,
    /// Directory for the SQLite store and the admin token.
    #[arg(long, env = "PROVISIONERD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Start with a new, empty database even though --data-dir was used
    /// before and its database is missing or empty (every key, template,
    /// workspace and job in it is gone). Without it such a start exits 64.
    /// Unset it again once the coordinator has started.
    #[arg(long, env = "PROVISIONERD_ALLOW_NEW_DATABASE")]
    pub allow_new_database: bool,
    /// A running job whose daemon sends no update for this long is failed.
    #[arg(long, env = "PROVISIONERD_JOB_LEASE", default_value = "60s", value_parser = parse_duration)]
    pub job_lease: Duration,
    /// Serve TLS with this PEM certificate (chain); needs --tls-key.
    #[arg(long, env = "PROVISIONERD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "PROVISIONERD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA (mTLS).
    #[arg(long, env = "PROVISIONERD_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve plain HTTP/2 on a non-loopback --listen address (e.g. behind a
    /// proxy that terminates TLS); keys and tokens then travel unencrypted
    /// up to it.
    #[arg(long, env = "PROVISIONERD_INSECURE")]
    pub insecure: bool,
    /// Largest terraform state a daemon may return (e.g. 256MiB); a larger
    /// one is refused, and the daemon keeps it on disk and reports the job
    /// failed.
    #[arg(long, env = "PROVISIONERD_MAX_STATE_BYTES", default_value = "256MiB", value_parser = crate::archive::parse_size)]
    pub max_state_bytes: u64,
    /// Serve /metrics, /healthz and /readyz on this address (plain HTTP;
    /// port 0 picks a free port, logged at start) [default: off].
    #[arg(long, env = "PROVISIONERD_METRICS_ADDRESS")]
    pub metrics_address: Option<SocketAddr>,
    /// How often the prebuild reconciler runs (e.g. 15s); 0 turns it off.
    #[arg(long, env = "PROVISIONERD_PREBUILD_RECONCILE_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub prebuild_reconcile_interval: Duration,
    /// After this many consecutive failed creates of a preset the
    /// reconciler stops creating for it (deleting goes on) until a new
    /// template version is active or `prebuilds reset`; 0 turns it off.
    #[arg(
        long,
        env = "PROVISIONERD_PREBUILD_FAILURE_HARD_LIMIT",
        default_value_t = 3
    )]
    pub prebuild_failure_hard_limit: u32,
    /// A job offered to a daemon that does not acknowledge it within this
    /// long goes back to the queue (and the daemon is told).
    #[arg(long, env = "PROVISIONERD_OFFER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub offer_timeout: Duration,
    /// Close a connection that has not finished its TLS and HTTP/2
    /// handshakes and made an authenticated request this long after it was
    /// accepted; also how long a daemon's session may wait for its Hello.
    #[arg(long, env = "PROVISIONERD_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Most connections not yet authenticated at once; a new one beyond it
    /// closes the oldest of them (kept below what the open-file limit
    /// leaves room for).
    #[arg(long, env = "PROVISIONERD_MAX_UNAUTHENTICATED_CONNECTIONS", default_value_t = crate::coordinator::listener::DEFAULT_MAX_UNAUTHENTICATED)]
    pub max_unauthenticated_connections: usize,
    /// Serve from this PostgreSQL database (postgres://user:pass@host/db)
    /// instead of SQLite under --data-dir; any number of replicas may
    /// share it. Prefer --database-url-file for a URL with a password.
    #[arg(
        long,
        env = "PROVISIONERD_DATABASE_URL",
        conflicts_with = "database_url_file"
    )]
    pub database_url: Option<String>,
    /// Read the PostgreSQL URL from this file (e.g. a mounted Secret).
    #[arg(long, env = "PROVISIONERD_DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Connections this coordinator keeps to PostgreSQL at most.
    #[arg(long, env = "PROVISIONERD_DATABASE_POOL", default_value_t = 16)]
    pub database_pool: usize,
    /// Read the admin token from this file at start (only its hash is
    /// stored): one token for every replica. Without it the first start
    /// writes a new one to DATA_DIR/admin-token.
    #[arg(long, env = "PROVISIONERD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub archive: ArchiveLimitArgs,
}

/// The PostgreSQL URL from `--database-url` or `--database-url-file`,
/// checked: a bad one is refused before anything starts.
fn database_url(url: Option<String>, file: Option<&Path>) -> Result<Option<String>, String> {
    let (url, flag) = match (url, file) {
        (Some(u), _) => (u, "--database-url".to_string()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--database-url-file {}: {e}", f.display()))?;
            (
                text.trim().to_string(),
                format!("--database-url-file {}", f.display()),
            )
        }
        (None, None) => return Ok(None),
    };
    if url.is_empty() {
        return Err(format!("{flag}: empty"));
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "{flag}: not a PostgreSQL URL (postgres://user:password@host:5432/database)"
        ));
    }
    // The URL may hold a password: name the problem, never echo it.
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| format!("{flag}: cannot be read: {e}"))?;
    Ok(Some(url))
}

impl ServeArgs {
    pub fn validate(self) -> Result<ServeConfig, String> {
        let tls = ServerTls::load(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )
        .map_err(|e| e.to_string())?;
        if tls.is_some() && self.insecure {
            return Err("--insecure: given with --tls-cert; pick one".into());
        }
        if tls.is_none() && !self.insecure && !self.listen.ip().is_loopback() {
            return Err(format!(
                "--listen {}: plain HTTP/2 on a non-loopback address sends keys and tokens \
                 unencrypted; pass --tls-cert and --tls-key, or --insecure if a proxy \
                 terminates TLS",
                self.listen
            ));
        }
        if self.max_state_bytes == 0 {
            return Err("--max-state-bytes: must be more than 0".into());
        }
        if self.job_lease < Duration::from_secs(1) {
            return Err(format!(
                "--job-lease {:?}: must be at least 1s",
                self.job_lease
            ));
        }
        if self.offer_timeout < Duration::from_millis(100) {
            return Err(format!(
                "--offer-timeout {}: must be at least 100ms",
                humantime::format_duration(self.offer_timeout)
            ));
        }
        if self.handshake_timeout < Duration::from_millis(100) {
            return Err(format!(
                "--handshake-timeout {}: must be at least 100ms",
                humantime::format_duration(self.handshake_timeout)
            ));
        }
        if self.max_unauthenticated_connections == 0 {
            return Err("--max-unauthenticated-connections 0: must be at least 1".into());
        }
        let reconcile = self.prebuild_reconcile_interval;
        if !reconcile.is_zero() && reconcile < Duration::from_millis(100) {
            return Err(format!(
                "--prebuild-reconcile-interval {reconcile:?}: must be 0 (off) or at least 100ms"
            ));
        }
        if self.database_pool == 0 {
            return Err("--database-pool 0: must be at least 1".into());
        }
        let database_url = database_url(self.database_url, self.database_url_file.as_deref())?;
        if let Some(f) = &self.admin_token_file {
            let token = std::fs::read_to_string(f)
                .map_err(|e| format!("--admin-token-file {}: {e}", f.display()))?;
            if token.trim().len() < 16 {
                return Err(format!(
                    "--admin-token-file {}: the token must be at least 16 characters",
                    f.display()
                ));
            }
        }
        Ok(ServeConfig {
            database_url,
            database_pool: self.database_pool,
            admin_token_file: self.admin_token_file,
            metrics_address: self.metrics_address,
            prebuild_reconcile_interval: (!reconcile.is_zero()).then_some(reconcile),
            prebuild_failure_hard_limit: self.prebuild_failure_hard_limit,
            offer_timeout: self.offer_timeout,
            listen: self.listen,
            data_dir: self.data_dir,
            allow_new_database: self.allow_new_database,
            job_lease: self.job_lease,
            tls,
            max_state_bytes: self.max_state_bytes,
            archive_limits: self.archive.validate()?,
            connections: crate::coordinator::listener::Limits {
                handshake_timeout: self.handshake_timeout,
                max_unauthenticated: self.max_unauthenticated_connections,
            },
        })
    }
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Coordinator URL; several (comma-separated, or the flag repeated)
    /// are tried in turn: the daemon moves to the next when one cannot be
    /// reached or its session breaks.
    #[arg(long, env = "PROVISIONERD_URL", value_delimiter = ',', required = true)]
    pub url: Vec<String>,
    /// Provisioner key secret (from `provisionerd keys create`); visible
    /// in the process list, so prefer --key-file.
    #[arg(long, env = "PROVISIONERD_KEY", hide_env_values = true)]
    pub key: Option<Secret>,
    /// Read the provisioner key from this file (trimmed; chmod 600 it).
    #[arg(long, env = "PROVISIONERD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    /// Daemon name shown by `daemons list` [default: host name].
    #[arg(long, env = "PROVISIONERD_NAME")]
    pub name: Option<String>,
    /// How long to keep retrying while a connected daemon of the same key
    /// holds our --name (it may be this daemon's previous run, which the
    /// coordinator notices gone within about 30s) before exiting 3.
    #[arg(long, env = "PROVISIONERD_NAME_CONFLICT_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub name_conflict_timeout: Duration,
    /// Cache dir: terraform plugin cache and job work dirs; one per daemon
    /// [default: <user cache dir>/provisionerd/<name>].
    #[arg(long, env = "PROVISIONERD_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Terraform binary [default: `terraform` on PATH].
    #[arg(long, env = "PROVISIONERD_TERRAFORM_PATH")]
    pub terraform_path: Option<PathBuf>,
    /// How long terraform gets to stop after its SIGINT before SIGKILL.
    #[arg(long, env = "PROVISIONERD_CANCEL_GRACE", default_value = "60s", value_parser = parse_duration)]
    pub cancel_grace: Duration,
    /// What SIGTERM (sent by Kubernetes and systemd) does.
    #[arg(
        long,
        env = "PROVISIONERD_ON_SIGTERM",
        value_enum,
        default_value = "drain"
    )]
    pub on_sigterm: OnSigterm,
    /// Longest a drain may take; past it the daemon cancels its job, early
    /// enough that the cancel grace and the final report fit inside it
    /// (match it to the orchestrator's kill deadline, e.g. Kubernetes'
    /// terminationGracePeriodSeconds) [default: unlimited].
    #[arg(long, env = "PROVISIONERD_DRAIN_TIMEOUT", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    #[command(flatten)]
    pub archive: ArchiveLimitArgs,
    /// Serve /metrics (Prometheus), /healthz, /readyz and POST /drain
    /// (loopback callers only) on this address, e.g. 0.0.0.0:9464; port 0
    /// picks a free port, logged at start [default: off].
    #[arg(long, env = "PROVISIONERD_METRICS_ADDRESS")]
    pub metrics_address: Option<SocketAddr>,
    /// Drain and exit 0 after this many jobs (for autoscalers; 0: unlimited).
    #[arg(long, env = "PROVISIONERD_MAX_JOBS", default_value_t = 0)]
    pub max_jobs: u64,
    /// Drain and exit 0 after this long without a job; the clock restarts
    /// after each job and never runs during one, nor while disconnected from
    /// the coordinator (0s: never) [default: never].
    #[arg(long, env = "PROVISIONERD_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
}

/// What SIGTERM means to a daemon.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OnSigterm {
    /// Finish the running job, take no more, exit.
    Drain,
    /// Interrupt the running job, report it, exit.
    Cancel,
}

impl StartArgs {
    pub fn validate(self) -> Result<DaemonConfig, String> {
        let urls = crate::grpc::check_urls(&self.url)?;
        let key = match (self.key, &self.key_file) {
            (Some(_), Some(_)) => {
                return Err("--key and --key-file (or PROVISIONERD_KEY and \
                     PROVISIONERD_KEY_FILE): give only one"
                    .into());
            }
            (None, None) => {
                return Err(
                    "no provisioner key: pass --key-file PATH, or --key / PROVISIONERD_KEY".into(),
                );
            }
            (Some(key), None) if key.is_empty() => {
                return Err("--key: must not be empty".into());
            }
            (Some(key), None) => key,
            (None, Some(path)) => Secret::from_file("--key-file", path)?,
        };
        let tls = self.tls.load_for(&urls)?;
        let name = match self.name {
            Some(n) => n,
            None => nix::unistd::gethostname()
                .map_err(|e| format!("--name: not given and the host name is unreadable: {e}"))?
                .to_string_lossy()
                .split('.')
                .next()
                .unwrap_or_default()
                .to_string(),
        };
        crate::tags::check_name("--name: daemon", &name)?;
        let cache_dir = match self.cache_dir {
            Some(d) => d,
            None => dirs::cache_dir()
                .ok_or("--cache-dir: not given and the user has no cache dir")?
                .join("provisionerd")
                .join(&name),
        };
        let terraform_path = match self.terraform_path {
            Some(p) => p,
            None => find_on_path("terraform")
                .ok_or("--terraform-path: not given and no `terraform` on PATH")?,
        };
        // Absolute, because terraform runs with each job's work dir as cwd.
        let terraform_path = std::fs::canonicalize(&terraform_path)
            .ok()
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "--terraform-path {}: no such file",
                    terraform_path.display()
                )
            })?;
        if let Some(timeout) = self.drain_timeout {
            let needed = self.cancel_grace.checked_add(crate::daemon::REPORT_BUDGET);
            if needed.is_none_or(|needed| timeout < needed) {
                return Err(format!(
                    "--drain-timeout {}: must be at least --cancel-grace ({}) plus {}s to \
                     report the job; lower --cancel-grace or raise --drain-timeout",
                    humantime::format_duration(timeout),
                    humantime::format_duration(self.cancel_grace),
                    crate::daemon::REPORT_BUDGET.as_secs()
                ));
            }
        }
        Ok(DaemonConfig {
            urls,
            key,
            tls,
            name,
            name_conflict_timeout: self.name_conflict_timeout,
            cache_dir,
            terraform_path,
            cancel_grace: self.cancel_grace,
            drain_timeout: self.drain_timeout,
            archive_limits: self.archive.validate()?,
            ops: crate::daemon::OpsConfig {
                metrics_address: self.metrics_address,
                max_jobs: (self.max_jobs > 0).then_some(self.max_jobs),
                idle_timeout: self.idle_timeout.filter(|d| !d.is_zero()),
            },
        })
    }
}

// Template archive bounds, shared by `serve` (checked at push) and `start`
// (checked again before extracting). Sizes are human: 10MiB, 512KiB, 4096.
#[derive(Debug, Args)]
pub struct ArchiveLimitArgs {
    /// Largest template archive (the tar as pushed or received).
    #[arg(long, env = "PROVISIONERD_MAX_ARCHIVE_BYTES", default_value = "50MiB", value_parser = crate::archive::parse_size)]
    pub max_archive_bytes: u64,
    /// Largest single file in a template archive.
    #[arg(long, env = "PROVISIONERD_MAX_FILE_BYTES", default_value = "10MiB", value_parser = crate::archive::parse_size)]
    pub max_file_bytes: u64,
    /// Largest total of file data in a template archive.
    #[arg(long, env = "PROVISIONERD_MAX_TOTAL_BYTES", default_value = "100MiB", value_parser = crate::archive::parse_size)]
    pub max_total_bytes: u64,
    /// Most entries (files, directories, symlinks) in a template archive.
    #[arg(long, env = "PROVISIONERD_MAX_ENTRIES", default_value_t = 10_000)]
    pub max_entries: u64,
    /// Most path components of one template archive entry.
    #[arg(long, env = "PROVISIONERD_MAX_PATH_DEPTH", default_value_t = 32)]
    pub max_path_depth: u64,
}

impl ArchiveLimitArgs {
    pub fn validate(&self) -> Result<crate::archive::Limits, String> {
        for (flag, value) in [
            ("--max-archive-bytes", self.max_archive_bytes),
            ("--max-file-bytes", self.max_file_bytes),
            ("--max-total-bytes", self.max_total_bytes),
            ("--max-entries", self.max_entries),
            ("--max-path-depth", self.max_path_depth),
        ] {
            if value == 0 {
                return Err(format!("{flag} 0: must be at least 1"));
            }
        }
        Ok(crate::archive::Limits {
            max_archive_bytes: self.max_archive_bytes,
            max_file_bytes: self.max_file_bytes,
            max_total_bytes: self.max_total_bytes,
            max_entries: self.max_entries,
            max_path_depth: self.max_path_depth,
        })
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

// TLS flags of the clients (daemon and admin CLI); they need an https://
// URL. Without --tls-ca the system's root certificates are trusted.
#[derive(Debug, Args, Clone)]
pub struct ClientTlsArgs {
    /// Trust only this PEM CA for the coordinator's certificate
    /// [default: the system's roots].
    #[arg(long, env = "PROVISIONERD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Present this PEM client certificate (for a coordinator with
    /// --tls-client-ca); needs --tls-client-key.
    #[arg(long, env = "PROVISIONERD_TLS_CLIENT_CERT")]
    pub tls_client_cert: Option<PathBuf>,
    /// The PEM private key of --tls-client-cert.
    #[arg(long, env = "PROVISIONERD_TLS_CLIENT_KEY")]
    pub tls_client_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// Reads and checks the files for connections to `url`.
    pub fn load(&self, url: &str) -> Result<ClientTls, String> {
        ClientTls::load(
            url,
            self.tls_ca.as_deref(),
            self.tls_client_cert.as_deref(),
            self.tls_client_key.as_deref(),
        )
        .map_err(|e| e.to_string())
    }

    /// [`ClientTlsArgs::load`] checked against each URL (TLS flags need
    /// https:// URLs); one set of TLS settings serves them all.
    pub fn load_for(&self, urls: &[String]) -> Result<ClientTls, String> {
        let mut tls = None;
        for url in urls {
            tls = Some(self.load(url)?);
        }
        tls.ok_or_else(|| "--url: no coordinator URL given".to_string())
    }
}
