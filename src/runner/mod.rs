//! The job runner: runs one job with terraform in a work dir and returns an
//! outcome. It never touches the network and knows nothing about signals or
//! gRPC: it takes a job, a log sender and a cancel token.
//!
//! (types below are the contract with the daemon's session layer)

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod env;
mod execute;
pub mod logparse; // public for the fuzz target (fuzz/)
pub mod redact;
mod replace;
mod terraform;
mod varfile;
mod vars;

pub use env::base_environment;
pub use vars::{VarsError, template_variables};

/// Runs `job` with terraform in `cfg.work_root/<job.id>` and returns how it
/// ended. Never fails as a function: every problem is an [`Outcome`]. Log
/// lines go to `logs` (a full channel slows the job down; a closed one drops
/// them). `cancel` interrupts terraform: one SIGINT to its process group,
/// SIGKILL after `cfg.cancel_grace`.
pub async fn run(
    cfg: &RunnerConfig,
    job: Job,
    logs: mpsc::Sender<LogEntry>,
    cancel: CancellationToken,
) -> Outcome {
    run_with_env(cfg, job, logs, cancel, std::env::vars_os().collect()).await
}

/// [`run`], with `daemon_env` standing in for the daemon's own environment
/// (terraform's environment is derived from it). For embedding and tests,
/// which cannot change the process environment safely.
pub async fn run_with_env(
    cfg: &RunnerConfig,
    job: Job,
    logs: mpsc::Sender<LogEntry>,
    cancel: CancellationToken,
    daemon_env: Vec<(OsString, OsString)>,
) -> Outcome {
    let redactor = redact::Redactor::new(&job.variables);
    let logs = Logs {
        tx: logs,
        redactor: redactor.clone(),
    };
    let outcome = execute::execute(cfg, job, &logs, &cancel, daemon_env).await;
    // Errors quote terraform's diagnostics, which may quote a value.
    match outcome {
        Outcome::Failed { error, state } => Outcome::Failed {
            error: redactor.apply(error),
            state,
        },
        Outcome::Canceled { error, state } => Outcome::Canceled {
            error: redactor.apply(error),
            state,
        },
        ok => ok,
    }
}

/// Where the runner's log lines go. Sending waits when the channel is full
/// (backpressure is intended); a closed channel drops lines, because the job
/// must still finish and report.
struct Logs {
    tx: mpsc::Sender<LogEntry>,
    /// Every line passes through it: nothing sensitive leaves the runner.
    redactor: redact::Redactor,
}

impl Logs {
    async fn send(&self, level: Level, source: Source, stage: &str, output: impl Into<String>) {
        let created_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let entry = LogEntry {
            created_at_ms,
            level,
            source,
            stage: stage.to_string(),
            output: self.redactor.apply(output.into()),
        };
        let _ = self.tx.send(entry).await;
    }

    async fn daemon(&self, level: Level, stage: &str, output: impl Into<String>) {
        self.send(level, Source::Daemon, stage, output).await;
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    /// The template version as a tar archive.
    pub template_archive: Vec<u8>,
    pub template_name: String,
    pub template_version_id: String,
    /// Empty when the coordinator predates version names.
    pub template_version_name: String,
    /// Who asked for the job (user name or `prebuilds`).
    pub initiator: String,
    /// Template variable values, passed to terraform as `-var`.
    pub variables: Vec<Variable>,
    /// `coder_parameter` values, passed to terraform (and so to Coder's
    /// provider) as `CODER_PARAMETER_<sha256 hex of the name>`. The
    /// coordinator sends them with workspace builds.
    pub parameters: Vec<Parameter>,
    /// The workspace's previous build's values, as
    /// `CODER_PARAMETER_PREVIOUS_<sha256 hex of the name>`.
    pub previous_parameters: Vec<Parameter>,
}

#[derive(Debug, Clone)]
pub enum JobKind {
    /// terraform init + validate + plan; reports the template's variables.
    TemplateImport,
    /// init + plan (+ `-destroy` for Destroy) + apply; returns the new state.
    WorkspaceBuild(Build),
}

#[derive(Debug, Clone)]
pub struct Build {
    pub workspace_id: String,
    pub workspace_name: String,
    pub owner: String,
    pub transition: Transition,
    /// State from the previous build; empty for the first build.
    pub state: Vec<u8>,
    pub build_id: String,
    /// A person claimed this prebuilt workspace (Coder's claim build).
    pub prebuild_claim: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Start,
    Stop,
    Destroy,
}

#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub value: String,
    pub sensitive: bool,
}

/// A build parameter's value (`data "coder_parameter"` in the template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub value: String,
}

/// A template variable declaration read from the template's `.tf` files.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateVariable {
    pub name: String,
    pub description: String,
    /// The type expression as written, e.g. `string`, `list(string)`.
    pub type_expr: String,
    /// JSON encoding of the default; `None` when there is none.
    pub default_json: Option<String>,
    pub sensitive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Written by the daemon itself.
    Daemon,
    /// Printed by terraform.
    Terraform,
}

/// One log line, before the session layer numbers it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Unix milliseconds.
    pub created_at_ms: i64,
    pub level: Level,
    pub source: Source,
    pub stage: String,
    pub output: String,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded {
        /// Workspace builds: the state after apply.
        state: Option<Vec<u8>>,
        /// Template imports: the declared variables.
        variables: Vec<TemplateVariable>,
        /// Claim builds: the resources the plan replaced (address and
        /// reason), empty otherwise.
        replacements: Vec<String>,
    },
    Failed {
        error: String,
        /// `None` keeps the previous state (e.g. plan failed); a failed
        /// apply returns whatever state terraform wrote.
        state: Option<Vec<u8>>,
    },
    Canceled {
        error: String,
        state: Option<Vec<u8>>,
    },
}

/// How the runner runs terraform; set once per daemon.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub terraform_path: PathBuf,
    /// Per-job work dirs are created under here and removed after the job.
    pub work_root: PathBuf,
    /// Passed to terraform as TF_PLUGIN_CACHE_DIR.
    pub plugin_cache_dir: PathBuf,
    /// After the one SIGINT, how long terraform gets before SIGKILL.
    pub cancel_grace: Duration,
    /// Fired when an operator forces the stop: terraform's process group is
    /// killed at once, whatever is left of `cancel_grace`. Per daemon, not
    /// per job, hence here rather than beside each job's cancel token.
    pub force_kill: CancellationToken,
    /// Bounds on the template archive a job brings.
    pub archive_limits: crate::archive::Limits,
    /// Told how long each terraform command took (the daemon's metrics).
    pub observer: CommandObserver,
}

/// Called after each terraform command with its name (`init`, `validate`,
/// `plan`, `apply`) and how long it ran, whatever its result. A plain
/// callback keeps the runner free of metrics and network; the default
/// observes nothing.
#[derive(Clone, Default)]
pub struct CommandObserver(Option<std::sync::Arc<ObserveFn>>);

type ObserveFn = dyn Fn(&str, Duration) + Send + Sync;

impl CommandObserver {
    pub fn new(f: impl Fn(&str, Duration) + Send + Sync + 'static) -> Self {
        CommandObserver(Some(std::sync::Arc::new(f)))
    }

    pub fn observe(&self, command: &str, took: Duration) {
        if let Some(f) = &self.0 {
            f(command, took);
        }
    }
}

impl std::fmt::Debug for CommandObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "CommandObserver(set)"
        } else {
            "CommandObserver(none)"
        })
    }
}
