//! The probe task behind [`Readiness`]: a cache dir write and
//! `terraform version`, repeated sooner while they fail, and what it
//! publishes to `/readyz` and to the acquire loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Readiness, lock};
use crate::process::{self, Spec};

/// How often the cache dir must take a write.
const CACHE_PROBE_PERIOD: Duration = Duration::from_secs(15);
/// How soon a failing cache dir probe runs again: the daemon takes no job
/// meanwhile, so recovery should be noticed quickly.
const CACHE_RETRY_PERIOD: Duration = Duration::from_secs(1);
/// How soon a failing `terraform version` runs again.
const TERRAFORM_RETRY_PERIOD: Duration = Duration::from_secs(10);
/// How often `terraform version` must run (a binary replaced or removed
/// under a running daemon shows up here).
const TERRAFORM_PROBE_PERIOD: Duration = Duration::from_secs(300);
/// Longest `terraform version` may take before it counts as not running.
const TERRAFORM_PROBE_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const PROBE_FILE: &str = ".ready-probe";

impl Readiness {
    /// Runs the probes until `stop`: a write to the cache dir every
    /// [`CACHE_PROBE_PERIOD`] (every [`CACHE_RETRY_PERIOD`] while it fails,
    /// and at once on [`Readiness::recheck`]), `terraform version` at once
    /// and every [`TERRAFORM_PROBE_PERIOD`] ([`TERRAFORM_RETRY_PERIOD`]
    /// while it fails). A problem is logged when it starts or changes, and
    /// its end once.
    pub(in crate::daemon) async fn probe(self: Arc<Self>, stop: CancellationToken) {
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

pub(super) fn write_probe(path: &std::path::Path) -> Result<(), String> {
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
pub(super) async fn terraform_version(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
