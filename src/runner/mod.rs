//! The job runner: runs one job with terraform in a work dir and returns an
//! outcome. It never touches the network and knows nothing about signals or
//! gRPC: it takes a job, a log sender and a cancel token.
//!
//! (types below are the contract with the daemon's session layer)

use std::path::PathBuf;
use std::time::Duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    /// The template version as a tar archive.
    pub template_archive: Vec<u8>,
    pub template_name: String,
    pub template_version_id: String,
    /// Who asked for the job (user name or `prebuilds`).
    pub initiator: String,
    /// Template variable values, passed to terraform as `-var`.
    pub variables: Vec<Variable>,
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
}
