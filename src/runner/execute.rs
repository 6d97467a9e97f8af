//! One job from start to end: set up the work dir, run the terraform
//! commands for the job kind, collect the state, clean up.
//!
//! State follows Coder's contract: `None` means "keep the previous state"
//! and is returned whenever terraform cannot have changed anything (setup,
//! init, validate, plan); once apply has started, whatever terraform wrote
//! is returned, even on failure or cancel.

use std::ffi::OsString;
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::terraform::{Cmd, Stopped, Terraform};
use super::{
    Job, JobKind, Level, Logs, Outcome, RunnerConfig, Transition, env, replace, varfile, vars,
};
use crate::archive::{self, ArchiveError};

const SETUP: &str = "Setting up";
const INIT: &str = "Initializing Terraform Directory";
const VALIDATE: &str = "Validating";
const PLAN: &str = "Planning Infrastructure";
const CLEANUP: &str = "Cleaning Up";
/// terraform's local backend keeps the state here, in the work dir.
const STATE_FILE: &str = "terraform.tfstate";

#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("create work dir: job id {0:?} is not a valid directory name")]
    BadJobId(String),
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("extract template archive: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Vars(#[from] vars::VarsError),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SetupError {
    let path = path.to_path_buf();
    move |source| SetupError::Io {
        action,
        path,
        source,
    }
}

/// The job's work dir; removed by [`WorkDir::remove`], or on drop if the job
/// future is dropped before it got there.
struct WorkDir {
    path: PathBuf,
    removed: bool,
}

impl WorkDir {
    fn create(root: &Path, job_id: &str) -> Result<WorkDir, SetupError> {
        let mut parts = Path::new(job_id).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(SetupError::BadJobId(job_id.to_string()));
        }
        fs::create_dir_all(root).map_err(io_err("create work root", root))?;
        let path = root.join(job_id);
        // A crashed daemon may have left this job's dir behind.
        match fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err("remove stale work dir", &path)(err)),
        }
        fs::create_dir(&path).map_err(io_err("create work dir", &path))?;
        // The work dir holds state and variable values: owner only.
        fs::set_permissions(&path, Permissions::from_mode(0o700))
            .map_err(io_err("create work dir", &path))?;
        Ok(WorkDir {
            path,
            removed: false,
        })
    }

    async fn remove(mut self) -> Result<(), SetupError> {
        self.removed = true;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || fs::remove_dir_all(&path))
            .await
            .map_err(|err| io_err("remove work dir", &self.path)(io::Error::other(err)))?
            .map_err(io_err("remove work dir", &self.path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.removed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

pub(super) async fn execute(
    cfg: &RunnerConfig,
    job: Job,
    logs: &Logs,
    cancel: &CancellationToken,
    daemon_env: Vec<(OsString, OsString)>,
) -> Outcome {
    let work = match WorkDir::create(&cfg.work_root, &job.id) {
        Ok(work) => work,
        Err(err) => return fail(logs, SETUP, err.to_string(), None).await,
    };
    let outcome = run_in(cfg, job, &work.path, logs, cancel, daemon_env).await;
    logs.daemon(Level::Info, CLEANUP, "Removing the work dir")
        .await;
    if let Err(err) = work.remove().await {
        logs.daemon(Level::Warn, CLEANUP, err.to_string()).await;
    }
    outcome
}

async fn run_in(
    cfg: &RunnerConfig,
    mut job: Job,
    dir: &Path,
    logs: &Logs,
    cancel: &CancellationToken,
    daemon_env: Vec<(OsString, OsString)>,
) -> Outcome {
    let what = match job.kind {
        JobKind::TemplateImport => "template import",
        JobKind::WorkspaceBuild(_) => "workspace build",
    };
    let size = job.template_archive.len();
    logs.daemon(
        Level::Info,
        SETUP,
        format!("Extracting the template ({size} bytes)"),
    )
    .await;
    let archive = std::mem::take(&mut job.template_archive);
    let declared = match set_up(cfg, &job, archive, dir).await {
        Ok(declared) => declared,
        Err(err) => return fail(logs, SETUP, err.to_string(), None).await,
    };
    if let Err(msg) = vars::check_values(what, &declared, &job.variables) {
        return fail(logs, SETUP, msg, None).await;
    }
    let var_file = match varfile::write(dir, &declared, &job.variables) {
        Ok(file) => file,
        Err(e) => {
            let msg = format!("write the sensitive variables' var file: {e}");
            return fail(logs, SETUP, msg, None).await;
        }
    };

    let tf = Terraform {
        cfg,
        dir,
        env: env::environment(daemon_env, cfg, &job),
        logs,
        cancel,
    };
    if let Err(stop) = tf.run(Cmd::Init, INIT).await {
        return stopped(logs, INIT, stop, None).await;
    }
    let build = match &job.kind {
        JobKind::TemplateImport => {
            if let Err(stop) = tf.run(Cmd::Validate, VALIDATE).await {
                return stopped(logs, VALIDATE, stop, None).await;
            }
            let plan = Cmd::Plan {
                vars: &job.variables,
                var_file: var_file.as_deref(),
                refresh: false,
                destroy: false,
            };
            if let Err(stop) = tf.run(plan, PLAN).await {
                return stopped(logs, PLAN, stop, None).await;
            }
            return Outcome::Succeeded {
                state: None,
                variables: declared,
                replacements: Vec::new(),
            };
        }
        JobKind::WorkspaceBuild(build) => build,
    };
    let plan = Cmd::Plan {
        vars: &job.variables,
        var_file: var_file.as_deref(),
        refresh: true,
        destroy: build.transition == Transition::Destroy,
    };
    let planned = match tf.run(plan, PLAN).await {
        Ok(planned) => planned,
        Err(stop) => return stopped(logs, PLAN, stop, None).await,
    };
    // Only a claim is warned: there a replacement throws away the
    // prebuild's work, which is the point of prebuilding.
    let replacements = if build.prebuild_claim && !planned.is_empty() {
        let mut planned = planned;
        let mut paths = tf.replace_paths(PLAN).await;
        for r in &mut planned {
            r.attributes = paths.remove(&r.addr).unwrap_or_default();
        }
        logs.daemon(Level::Warn, PLAN, replace::warning(&planned))
            .await;
        planned.iter().map(ToString::to_string).collect()
    } else {
        Vec::new()
    };
    let apply_stage = match build.transition {
        Transition::Start => "Starting workspace",
        Transition::Stop => "Stopping workspace",
        Transition::Destroy => "Destroying workspace",
    };
    let applied = tf.run(Cmd::Apply, apply_stage).await;
    let state = match tokio::fs::read(dir.join(STATE_FILE)).await {
        Ok(state) => Some(state),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => {
            let msg = format!(
                "read terraform state {}: {err}",
                dir.join(STATE_FILE).display()
            );
            return fail(logs, apply_stage, msg, None).await;
        }
    };
    match applied {
        // No state file after a successful apply means terraform had nothing
        // to record; an empty state says so explicitly.
        Ok(_) => Outcome::Succeeded {
            state: Some(state.unwrap_or_default()),
            variables: Vec::new(),
            replacements,
        },
        Err(stop) => stopped(logs, apply_stage, stop, state).await,
    }
}

/// Extracts the template, puts the previous state in place, creates the
/// plugin cache and reads the template's variable declarations.
async fn set_up(
    cfg: &RunnerConfig,
    job: &Job,
    archive: Vec<u8>,
    dir: &Path,
) -> Result<Vec<super::TemplateVariable>, SetupError> {
    let dest = dir.to_path_buf();
    let limits = cfg.archive_limits;
    tokio::task::spawn_blocking(move || archive::extract(&archive, &dest, &limits)).await??;
    if let JobKind::WorkspaceBuild(build) = &job.kind {
        let path = dir.join(STATE_FILE);
        // The coordinator's state is the only truth for a build; a state
        // file shipped inside the template must not stand in for it.
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err("write previous state", &path)(err)),
        }
        if !build.state.is_empty() {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_err("write previous state", &path))?;
            file.write_all(&build.state)
                .map_err(io_err("write previous state", &path))?;
        }
    }
    let cache = &cfg.plugin_cache_dir;
    fs::create_dir_all(cache).map_err(io_err("create plugin cache dir", cache))?;
    Ok(vars::template_variables(dir)?)
}

async fn fail(logs: &Logs, stage: &str, error: String, state: Option<Vec<u8>>) -> Outcome {
    logs.daemon(Level::Error, stage, error.clone()).await;
    Outcome::Failed { error, state }
}

async fn stopped(logs: &Logs, stage: &str, stop: Stopped, state: Option<Vec<u8>>) -> Outcome {
    match stop {
        Stopped::Failed(error) => fail(logs, stage, error, state).await,
        Stopped::Canceled(error) => Outcome::Canceled { error, state },
    }
}
