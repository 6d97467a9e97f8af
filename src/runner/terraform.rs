//! Running terraform commands: their arguments, the environment terraform
//! gets, and turning one command's output and exit into log lines and a
//! result.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Job, JobKind, Level, Logs, RunnerConfig, Source, Transition, Variable, logparse};
use crate::process::{self, Line, ProcessError, Spec, Stream};

/// The plan file `plan` writes and `apply` reads, relative to the work dir.
const PLAN_FILE: &str = "terraform.tfplan";

/// Output lines buffered between the process and the log forwarder.
const LINE_BUFFER: usize = 256;

pub(super) enum Cmd<'a> {
    Init,
    Validate,
    Plan {
        vars: &'a [Variable],
        refresh: bool,
        destroy: bool,
    },
    Apply,
}

impl Cmd<'_> {
    fn name(&self) -> &'static str {
        match self {
            Cmd::Init => "init",
            Cmd::Validate => "validate",
            Cmd::Plan { .. } => "plan",
            Cmd::Apply => "apply",
        }
    }

    /// Whether stdout is terraform's machine-readable UI (`-json`).
    fn json(&self) -> bool {
        !matches!(self, Cmd::Validate)
    }

    fn args(&self) -> Vec<OsString> {
        let mut args: Vec<String> = vec![self.name().into()];
        let flags: &[&str] = match self {
            Cmd::Init => &["-input=false", "-no-color", "-json"],
            Cmd::Validate => &["-no-color"],
            Cmd::Plan { .. } => &["-input=false", "-no-color", "-json"],
            Cmd::Apply => &[
                "-input=false",
                "-no-color",
                "-json",
                "-auto-approve",
                PLAN_FILE,
            ],
        };
        args.extend(flags.iter().map(|f| f.to_string()));
        if let Cmd::Plan {
            vars,
            refresh,
            destroy,
        } = self
        {
            if *refresh {
                args.push("-refresh=true".into());
            }
            args.push(format!("-out={PLAN_FILE}"));
            if *destroy {
                args.push("-destroy".into());
            }
            for var in *vars {
                args.push("-var".into());
                args.push(format!("{}={}", var.name, var.value));
            }
        }
        args.into_iter().map(OsString::from).collect()
    }
}

/// Why a command did not succeed.
pub(super) enum Stopped {
    Failed(String),
    Canceled(String),
}

/// terraform's environment: the daemon's own, minus the daemon's settings
/// (`PROVISIONERD_*`, which may hold credentials) and any `CODER_*` that
/// would shadow the contract variables, plus automation settings and, for
/// builds, the `CODER_WORKSPACE_*` variables templates read.
pub(super) fn environment(
    daemon_env: Vec<(OsString, OsString)>,
    cfg: &RunnerConfig,
    job: &Job,
) -> Vec<(OsString, OsString)> {
    let mut env: BTreeMap<OsString, OsString> = daemon_env
        .into_iter()
        .filter(|(key, _)| {
            let key = key.as_bytes();
            !key.starts_with(b"PROVISIONERD_") && !key.starts_with(b"CODER_")
        })
        .collect();
    let mut set = |key: &str, value: OsString| {
        env.insert(key.into(), value);
    };
    set("TF_IN_AUTOMATION", "1".into());
    set("CHECKPOINT_DISABLE", "1".into());
    set("TF_INPUT", "0".into());
    set(
        "TF_PLUGIN_CACHE_DIR",
        cfg.plugin_cache_dir.clone().into_os_string(),
    );
    if let JobKind::WorkspaceBuild(build) = &job.kind {
        let transition = match build.transition {
            Transition::Start => "start",
            Transition::Stop => "stop",
            Transition::Destroy => "destroy",
        };
        set("CODER_WORKSPACE_NAME", build.workspace_name.clone().into());
        set("CODER_WORKSPACE_OWNER", build.owner.clone().into());
        set("CODER_WORKSPACE_OWNER_NAME", build.owner.clone().into());
        set("CODER_WORKSPACE_ID", build.workspace_id.clone().into());
        set("CODER_WORKSPACE_TRANSITION", transition.into());
        set(
            "CODER_WORKSPACE_TEMPLATE_NAME",
            job.template_name.clone().into(),
        );
        set(
            "CODER_WORKSPACE_TEMPLATE_VERSION",
            job.template_version_id.clone().into(),
        );
        set("CODER_WORKSPACE_BUILD_ID", build.build_id.clone().into());
        if build.owner == "prebuilds" {
            set("CODER_WORKSPACE_IS_PREBUILD", "true".into());
        }
    }
    env.into_iter().collect()
}

/// Runs terraform commands in one work dir.
pub(super) struct Terraform<'a> {
    pub cfg: &'a RunnerConfig,
    pub dir: &'a Path,
    pub env: Vec<(OsString, OsString)>,
    pub logs: &'a Logs,
    pub cancel: &'a CancellationToken,
}

impl Terraform<'_> {
    /// Runs `cmd` under `stage`, forwarding its output as log lines. Does
    /// not start when the job is already canceled.
    pub async fn run(&self, cmd: Cmd<'_>, stage: &str) -> Result<(), Stopped> {
        let name = cmd.name();
        if self.cancel.is_cancelled() {
            let msg = format!("Job canceled: not starting terraform {name}");
            self.logs.daemon(Level::Warn, stage, msg).await;
            return Err(Stopped::Canceled(format!(
                "canceled before terraform {name}"
            )));
        }
        let spec = Spec {
            program: self.cfg.terraform_path.clone(),
            args: cmd.args(),
            cwd: self.dir.to_path_buf(),
            env: self.env.clone(),
        };
        let (tx, rx) = mpsc::channel(LINE_BUFFER);
        let (result, last_error) = tokio::join!(
            process::run(
                spec,
                tx,
                self.cancel,
                &self.cfg.force_kill,
                self.cfg.cancel_grace,
            ),
            self.forward(rx, stage, cmd.json())
        );
        let exit = result.map_err(|err| match err {
            ProcessError::Spawn { program, source } => {
                Stopped::Failed(format!("run terraform at {}: {source}", program.display()))
            }
            other => Stopped::Failed(format!("terraform {name}: {other}")),
        })?;
        if exit.interrupted || exit.killed {
            let how = match (exit.killed, self.cfg.force_kill.is_cancelled()) {
                (false, _) => "interrupted",
                // An operator cut the grace short: say so, the state may
                // be missing what terraform had not written yet.
                (true, true) => "killed (stop forced before the grace ran out)",
                (true, false) => "killed after grace",
            };
            return Err(Stopped::Canceled(format!("canceled: terraform {how}")));
        }
        let because = last_error.map(|e| format!(": {e}")).unwrap_or_default();
        match (exit.code, exit.signal) {
            (Some(0), _) => Ok(()),
            (Some(code), _) => Err(Stopped::Failed(format!(
                "terraform {name} exited with code {code}{because}"
            ))),
            (None, Some(signal)) => Err(Stopped::Failed(format!(
                "terraform {name} was killed by signal {signal}{because}"
            ))),
            (None, None) => Err(Stopped::Failed(format!(
                "terraform {name} ended without an exit status"
            ))),
        }
    }

    /// Sends every output line on as log lines until the process's output
    /// ends; returns the last error summary terraform printed.
    async fn forward(
        &self,
        mut rx: mpsc::Receiver<Line>,
        stage: &str,
        json: bool,
    ) -> Option<String> {
        let mut last_error = None;
        let mut warned = false;
        loop {
            let line = tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => line,
                    None => return last_error,
                },
                _ = self.cancel.cancelled(), if !warned => {
                    warned = true;
                    let msg = "Job canceled: interrupting terraform";
                    self.logs.daemon(Level::Warn, stage, msg).await;
                    continue;
                }
            };
            let parsed = match line.stream {
                Stream::Stdout if json => logparse::json_line(&line.text),
                stream => logparse::plain_line(stream, &line.text),
            };
            if parsed.error.is_some() {
                last_error = parsed.error;
            }
            for (level, text) in parsed.lines {
                self.logs.send(level, Source::Terraform, stage, text).await;
            }
        }
    }
}
