//! Job records: `<cache>/records/<job_id>.json`, written when a job starts
//! (after the coordinator confirmed it is ours) and removed once its result
//! was reported or definitively refused. A record still there when the
//! daemon starts belongs to a job the previous run never reported: it was
//! killed (the record has no outcome), or it gave up reporting after a
//! cancel (the record keeps the outcome, the state sits beside it); either
//! way `recover` reports it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::grpc::Secret;
use crate::proto::{FinishJobRequest, JobOutcome, TemplateVariable};

/// A job's result as the daemon holds it until reported: FinishJob's
/// header, and the state that streams after it (`None`: keep the
/// previous one).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Report {
    pub header: FinishJobRequest,
    pub state: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub job_id: String,
    /// The secret the job's offer carried: a restarted daemon reports the
    /// job with it. The file is the daemon's own (0600); `Debug` redacts
    /// it. Empty in a record from before job secrets (the coordinator then
    /// takes the report only for a job it offered without one).
    #[serde(default = "no_secret", with = "secret_text")]
    pub job_secret: Secret,
    /// `workspace_build` or `template_import` (only builds carry state).
    pub kind: String,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    pub work_dir: PathBuf,
    /// Set when the job ended but its result was not reported: what to
    /// report instead of "daemon restarted during job".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Finished>,
}

/// The result of a job that ended, without its state (kept in a file of its
/// own) and log count (the next start counts what it delivers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Finished {
    /// `succeeded`, `failed` or `canceled`.
    pub outcome: String,
    pub error: String,
    /// A template import's declared variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<Variable>,
    /// A claim build's replaced resources (`FinishJobRequest.replacements`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replacements: Vec<String>,
}

/// [`TemplateVariable`] in the record's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Variable {
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub type_expr: String,
    pub default_json: String,
    pub sensitive: bool,
    pub required: bool,
}

impl Finished {
    /// The result `req` reports (its state and log count aside).
    pub(super) fn of(req: &FinishJobRequest) -> Self {
        let outcome = match JobOutcome::try_from(req.outcome) {
            Ok(JobOutcome::Succeeded) => "succeeded",
            Ok(JobOutcome::Canceled) => "canceled",
            _ => "failed",
        };
        Finished {
            outcome: outcome.to_string(),
            error: req.error.clone(),
            replacements: req.replacements.clone(),
            variables: req
                .variables
                .iter()
                .map(|v| Variable {
                    name: v.name.clone(),
                    description: v.description.clone(),
                    type_expr: v.r#type.clone(),
                    default_json: v.default_json.clone(),
                    sensitive: v.sensitive,
                    required: v.required,
                })
                .collect(),
        }
    }

    /// The FinishJob that reports this result, with the job's secret. An
    /// outcome this daemon does not know (a damaged record) reports the
    /// job failed.
    pub(super) fn request(
        &self,
        job_id: &str,
        secret: &Secret,
        state: Option<Vec<u8>>,
        log_count: u64,
    ) -> Report {
        let outcome = match self.outcome.as_str() {
            "succeeded" => JobOutcome::Succeeded,
            "canceled" => JobOutcome::Canceled,
            _ => JobOutcome::Failed,
        };
        let header = FinishJobRequest {
            job_id: job_id.to_string(),
            outcome: outcome as i32,
            error: self.error.clone(),
            has_state: state.is_some(),
            variables: self
                .variables
                .iter()
                .map(|v| TemplateVariable {
                    name: v.name.clone(),
                    description: v.description.clone(),
                    r#type: v.type_expr.clone(),
                    default_json: v.default_json.clone(),
                    sensitive: v.sensitive,
                    required: v.required,
                })
                .collect(),
            log_count,
            replacements: self.replacements.clone(),
            job_secret: secret.expose().to_string(),
            ..Default::default()
        };
        Report { header, state }
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum RecordError {
    #[error("{action} job record {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write job record: job id {0:?} is not a valid file name")]
    BadJobId(String),
}

/// The records directory of one cache dir.
#[derive(Debug, Clone)]
pub(super) struct Records {
    dir: PathBuf,
}

impl Records {
    pub(super) fn new(dir: PathBuf) -> Self {
        Records { dir }
    }

    fn path(&self, job_id: &str) -> PathBuf {
        self.dir.join(format!("{job_id}.json"))
    }

    /// Writes `rec` atomically, so a kill never leaves half a record.
    pub(super) fn write(&self, rec: &JobRecord) -> Result<(), RecordError> {
        let mut parts = Path::new(&rec.job_id).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(RecordError::BadJobId(rec.job_id.clone()));
        }
        let path = self.path(&rec.job_id);
        let body = serde_json::to_vec_pretty(rec).map_err(|e| RecordError::Io {
            action: "encode",
            path: path.clone(),
            source: e.into(),
        })?;
        // A started job's record is not synced: it guards against the
        // daemon dying, which the page cache survives; only a machine that
        // loses power loses it, and then the coordinator's lease fails the
        // job as it would any lost one. A record with a result (the state
        // terraform wrote) is synced: that must survive anything. The sync
        // cost every job start half a millisecond.
        let durable = rec.finished.is_some();
        write_atomic(&path, &body, durable).map_err(|(action, source)| RecordError::Io {
            action,
            path,
            source,
        })
    }

    /// Where a job's terraform state is kept when its result could not be
    /// reported and its work dir is gone.
    pub(super) fn state_path(&self, job_id: &str) -> PathBuf {
        self.dir.join(format!("{job_id}.tfstate"))
    }

    /// Keeps `state` for the next start to report. Atomic: the work dir's
    /// copy may be removed right after, and a kill must not leave a torn one.
    pub(super) fn save_state(&self, job_id: &str, state: &[u8]) -> Result<(), RecordError> {
        let path = self.state_path(job_id);
        write_atomic(&path, state, true).map_err(|(_, source)| RecordError::Io {
            action: "save the state of",
            path,
            source,
        })
    }

    /// Keeps a state the coordinator refused (over its size limit) where
    /// nothing removes it: `<cache>/refused-states/<job_id>.tfstate`, for
    /// an operator to store by hand. Returns the path.
    pub(super) fn keep_refused_state(
        &self,
        job_id: &str,
        state: &[u8],
    ) -> Result<PathBuf, RecordError> {
        let dir = self.dir.with_file_name("refused-states");
        let path = dir.join(format!("{job_id}.tfstate"));
        let io = |source| RecordError::Io {
            action: "keep the refused state of",
            path: path.clone(),
            source,
        };
        // Owner only, as the cache's other directories: states hold secrets.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io)?;
        write_atomic(&path, state, true).map_err(|(_, source)| io(source))?;
        Ok(path)
    }

    /// Removes job `job_id`'s record and kept state; missing ones are fine.
    pub(super) fn remove(&self, job_id: &str) -> Result<(), RecordError> {
        for path in [self.state_path(job_id), self.path(job_id)] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(RecordError::Io {
                        action: "remove",
                        path,
                        source: e,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every record left, oldest job first. A record that does not parse
    /// still names its job (the file name), so the job is reported anyway,
    /// only without a kind (hence without state).
    pub(super) fn list(&self) -> Result<Vec<JobRecord>, RecordError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(RecordError::Io {
                    action: "list",
                    path: self.dir.clone(),
                    source: e,
                });
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write a kill interrupted: the file it was to replace is
                // whole, and a job without any record is the lease's.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(job_id) = name.strip_suffix(".json") else {
                continue;
            };
            let parsed = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<JobRecord>(&b).ok())
                .filter(|r| r.job_id == job_id);
            out.push(parsed.unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "job record does not parse; reporting the job without its details (and without its job secret, so the coordinator may refuse the report; the job then ends by its lease)");
                JobRecord {
                    job_id: job_id.to_string(),
                    job_secret: no_secret(),
                    kind: String::new(),
                    started_at_ms: 0,
                    work_dir: PathBuf::new(),
                    finished: None,
                }
            }));
        }
        out.sort_by_key(|r| r.started_at_ms);
        Ok(out)
    }
}

fn no_secret() -> Secret {
    Secret::new("")
}

/// [`Secret`] as a JSON string in the record.
mod secret_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::grpc::Secret;

    pub(super) fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(|s| Secret::new(&s))
    }
}

/// Writes `body` to `path` through a temporary file beside it (`.<name>.tmp`,
/// owner only) and a rename, synced first when `durable`; on error, the
/// action that failed.
fn write_atomic(path: &Path, body: &[u8], durable: bool) -> Result<(), (&'static str, io::Error)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    // A leftover temporary file (a crash mid-write, a restored backup)
    // goes first: reopening it would keep its mode, and the record holds
    // the job's secret. `create_new` opens no symlink and no old file.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(("create", e)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ("create", e))?;
    file.write_all(body)
        .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
        .map_err(|e| ("write", e))?;
    fs::rename(&tmp, path).map_err(|e| ("write", e))
}

#[cfg(test)]
mod tests;
