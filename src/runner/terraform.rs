//! Running terraform commands: their arguments, and turning one command's
//! output and exit into log lines and a result.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Level, Logs, RunnerConfig, Source, Variable, logparse, replace};
use crate::process::{self, Line, ProcessError, Spec, Stream};

/// The plan file `plan` writes and `apply` reads, relative to the work dir.
const PLAN_FILE: &str = "terraform.tfplan";

/// Most of `terraform show -json` read for replace paths; a larger plan
/// goes without them rather than holding the daemon's memory.
const MAX_SHOW_BYTES: usize = 16 * 1024 * 1024;

/// Output lines buffered between the process and the log forwarder.
const LINE_BUFFER: usize = 256;

pub(super) enum Cmd<'a> {
    Init,
    Validate,
    Plan {
        /// Passed as `-var`, except the sensitive ones: those are in
        /// `var_file` (see `varfile`).
        vars: &'a [Variable],
        var_file: Option<&'a Path>,
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
            var_file,
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
            for var in vars.iter().filter(|v| !v.sensitive) {
                args.push("-var".into());
                args.push(format!("{}={}", var.name, var.value));
            }
            if let Some(file) = var_file {
                args.push(format!("-var-file={}", file.display()));
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

/// Runs terraform commands in one work dir.
pub(super) struct Terraform<'a> {
    pub cfg: &'a RunnerConfig,
    pub dir: &'a Path,
    pub env: Vec<(OsString, OsString)>,
    pub logs: &'a Logs,
    pub cancel: &'a CancellationToken,
}

impl Terraform<'_> {
    /// terraform with `args` in the work dir, with the job's environment.
    fn spec(&self, args: Vec<OsString>) -> Spec {
        Spec {
            program: self.cfg.terraform_path.clone(),
            args,
            cwd: self.dir.to_path_buf(),
            env: self.env.clone(),
        }
    }

    /// Runs `cmd` under `stage`, forwarding its output as log lines. Does
    /// not start when the job is already canceled. Returns the resources
    /// the command's plan replaces (see `replace`).
    pub async fn run(
        &self,
        cmd: Cmd<'_>,
        stage: &str,
    ) -> Result<Vec<replace::Replacement>, Stopped> {
        let name = cmd.name();
        if self.cancel.is_cancelled() {
            let msg = format!("Job canceled: not starting terraform {name}");
            self.logs.daemon(Level::Warn, stage, msg).await;
            return Err(Stopped::Canceled(format!(
                "canceled before terraform {name}"
            )));
        }
        let spec = self.spec(cmd.args());
        let (tx, rx) = mpsc::channel(LINE_BUFFER);
        let began = std::time::Instant::now();
        let (result, (last_error, replacements)) = tokio::join!(
            process::run(
                spec,
                tx,
                self.cancel,
                &self.cfg.force_kill,
                self.cfg.cancel_grace,
            ),
            self.forward(rx, stage, cmd.json())
        );
        self.cfg.observer.observe(name, began.elapsed());
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
            (Some(0), _) => Ok(replacements),
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

    /// The attributes forcing each replacement in the plan file, by
    /// resource address (`terraform show -json`). Best effort: a failure
    /// only costs the warning its attribute names, so it is logged at debug
    /// and yields nothing.
    pub async fn replace_paths(&self, stage: &str) -> BTreeMap<String, Vec<String>> {
        if self.cancel.is_cancelled() {
            return BTreeMap::new();
        }
        let spec = self.spec(
            ["show", "-json", "-no-color", PLAN_FILE]
                .into_iter()
                .map(OsString::from)
                .collect(),
        );
        let (tx, mut rx) = mpsc::channel::<Line>(LINE_BUFFER);
        let collect = async {
            // The JSON is one line, which the process module hands out in
            // pieces of at most MAX_LINE_BYTES: joined, they are the line.
            let (mut json, mut errors) = (String::new(), Vec::new());
            while let Some(line) = rx.recv().await {
                match line.stream {
                    Stream::Stdout if json.len() < MAX_SHOW_BYTES => json.push_str(&line.text),
                    Stream::Stdout => {}
                    Stream::Stderr => errors.push(line.text),
                }
            }
            (json, errors)
        };
        let (result, (json, errors)) = tokio::join!(
            process::run(
                spec,
                tx,
                self.cancel,
                &self.cfg.force_kill,
                self.cfg.cancel_grace,
            ),
            collect
        );
        let ok = matches!(&result, Ok(exit) if exit.code == Some(0));
        if !ok || json.len() >= MAX_SHOW_BYTES {
            let why = format!(
                "terraform show -json: no replace paths ({result:?}; {} bytes; {})",
                json.len(),
                errors.join(" ")
            );
            self.logs.daemon(Level::Debug, stage, why).await;
            return BTreeMap::new();
        }
        replace::replace_paths(&json)
    }

    /// Sends every output line on as log lines until the process's output
    /// ends; returns the last error summary terraform printed and the
    /// replacements its plan announced.
    async fn forward(
        &self,
        mut rx: mpsc::Receiver<Line>,
        stage: &str,
        json: bool,
    ) -> (Option<String>, Vec<replace::Replacement>) {
        let mut last_error = None;
        let mut replacements = Vec::new();
        let mut warned = false;
        // Made once: a fresh one per line registered and removed a waiter
        // on the token for every line.
        let cancelled = self.cancel.cancelled();
        tokio::pin!(cancelled);
        loop {
            let line = tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => line,
                    None => return (last_error, replacements),
                },
                () = &mut cancelled, if !warned => {
                    warned = true;
                    let msg = "Job canceled: interrupting terraform";
                    self.logs.daemon(Level::Warn, stage, msg).await;
                    continue;
                }
            };
            if json && line.stream == Stream::Stdout {
                replacements.extend(replace::replacement(&line.text));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_values_stay_off_the_command_line() {
        let vars = [
            Variable {
                name: "region".into(),
                value: "eu".into(),
                sensitive: false,
            },
            Variable {
                name: "token".into(),
                value: "s3cret".into(),
                sensitive: true,
            },
        ];
        let file = Path::new("/work/.provisionerd-sensitive.tfvars");
        let plan = Cmd::Plan {
            vars: &vars,
            var_file: Some(file),
            refresh: true,
            destroy: false,
        };
        let args: Vec<String> = plan
            .args()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"region=eu".to_string()), "{args:?}");
        assert!(
            args.contains(&format!("-var-file={}", file.display())),
            "{args:?}"
        );
        assert!(args.iter().all(|a| !a.contains("s3cret")), "{args:?}");
    }
}
