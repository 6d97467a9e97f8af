//! Shared setup for the runner tests: a real terraform, a scratch work root,
//! template archives built from inline files, and a runner call that
//! collects every log line under a timeout.
#![allow(dead_code)] // each test file uses a different subset

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use provisionerd::archive;
use provisionerd::runner::{
    self, Build, Job, JobKind, LogEntry, Outcome, RunnerConfig, Source, Transition, Variable,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[path = "../tools/mod.rs"]
mod tools;
// Not every test binary that includes this harness needs both.
#[allow(unused_imports)]
pub use tools::{coder_cli_config, terraform};

/// Longest a single runner call may take before the test fails.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Harness {
    pub root: tempfile::TempDir,
    pub cfg: RunnerConfig,
    /// The environment the runner treats as the daemon's.
    pub env: Vec<(OsString, OsString)>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_terraform(terraform())
    }

    pub fn with_terraform(terraform_path: PathBuf) -> Harness {
        let root = tempfile::tempdir().expect("create temp root");
        let tfrc = root.path().join("empty.tfrc");
        std::fs::write(&tfrc, "").expect("write empty CLI config");
        let cfg = RunnerConfig {
            terraform_path,
            work_root: root.path().join("work"),
            plugin_cache_dir: root.path().join("plugins"),
            cancel_grace: Duration::from_secs(3),
            force_kill: CancellationToken::new(),
            archive_limits: Default::default(),
            observer: Default::default(),
        };
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| k != "TF_CLI_CONFIG_FILE")
            .collect();
        env.push(("TF_CLI_CONFIG_FILE".into(), tfrc.into()));
        Harness { root, cfg, env }
    }

    /// A harness whose daemon environment points terraform at `tfrc`, as an
    /// operator's `TF_CLI_CONFIG_FILE` would.
    pub fn with_cli_config(tfrc: PathBuf) -> Harness {
        let mut h = Harness::new();
        h.env.retain(|(k, _)| k != "TF_CLI_CONFIG_FILE");
        h.env.push(("TF_CLI_CONFIG_FILE".into(), tfrc.into()));
        h
    }

    /// Runs `job`, returning its outcome and every log line it sent.
    pub async fn run(&self, job: Job, cancel: CancellationToken) -> (Outcome, Vec<LogEntry>) {
        let (tx, mut rx) = mpsc::channel(16);
        let collector = tokio::spawn(async move {
            let mut logs = Vec::new();
            while let Some(entry) = rx.recv().await {
                logs.push(entry);
            }
            logs
        });
        let run = runner::run_with_env(&self.cfg, job, tx, cancel, self.env.clone());
        let outcome = tokio::time::timeout(JOB_TIMEOUT, run)
            .await
            .expect("runner timed out");
        let logs = tokio::time::timeout(JOB_TIMEOUT, collector)
            .await
            .expect("log collector timed out")
            .expect("log collector panicked");
        (outcome, logs)
    }

    /// The work root holds nothing once a job ended.
    pub fn assert_work_root_empty(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.cfg.work_root)
            .map(|dir| dir.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "work dirs left behind: {left:?}");
    }
}

/// A template archive holding `files` (name, contents).
pub fn template(files: &[(&str, &str)]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("create template dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write template file");
    }
    archive::tar_dir(dir.path()).expect("tar template")
}

pub fn var(name: &str, value: &str) -> Variable {
    Variable {
        name: name.into(),
        value: value.into(),
        sensitive: false,
    }
}

fn job(id: &str, kind: JobKind, archive: Vec<u8>, variables: Vec<Variable>) -> Job {
    Job {
        id: id.into(),
        kind,
        template_archive: archive,
        template_name: "demo".into(),
        template_version_id: "tv-1".into(),
        template_version_name: "v1".into(),
        initiator: "alice".into(),
        variables,
        parameters: Vec::new(),
        previous_parameters: Vec::new(),
    }
}

pub fn import_job(archive: Vec<u8>, variables: Vec<Variable>) -> Job {
    job("job-import", JobKind::TemplateImport, archive, variables)
}

pub fn build_job(archive: Vec<u8>, transition: Transition, state: Vec<u8>, owner: &str) -> Job {
    let build = Build {
        workspace_id: "ws-1".into(),
        workspace_name: "dev".into(),
        owner: owner.into(),
        transition,
        state,
        build_id: "build-1".into(),
        prebuild_claim: false,
    };
    job(
        "job-build",
        JobKind::WorkspaceBuild(build),
        archive,
        Vec::new(),
    )
}

/// Terraform's output lines, in order.
pub fn terraform_lines(logs: &[LogEntry]) -> Vec<&str> {
    logs.iter()
        .filter(|l| l.source == Source::Terraform)
        .map(|l| l.output.as_str())
        .collect()
}

/// The state's resources and outputs, parsed.
pub fn parse_state(state: &[u8]) -> serde_json::Value {
    serde_json::from_slice(state).expect("state is JSON")
}
