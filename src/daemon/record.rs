//! Job records: `<cache>/records/<job_id>.json`, written when a job starts
//! (after the coordinator confirmed it is ours) and removed once its result
//! was reported or definitively refused. A record still there when the
//! daemon starts belongs to a job the previous run never reported (it was
//! killed); `recover` reports it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub job_id: String,
    /// `workspace_build` or `template_import` (only builds carry state).
    pub kind: String,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    pub work_dir: PathBuf,
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

    /// Writes `rec` atomically (temporary file, then rename), so a kill
    /// never leaves half a record.
    pub(super) fn write(&self, rec: &JobRecord) -> Result<(), RecordError> {
        let mut parts = Path::new(&rec.job_id).components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(RecordError::BadJobId(rec.job_id.clone()));
        }
        let path = self.path(&rec.job_id);
        let tmp = self.dir.join(format!(".{}.json.tmp", rec.job_id));
        let io = |action| {
            let path = path.clone();
            move |source| RecordError::Io {
                action,
                path,
                source,
            }
        };
        let body = serde_json::to_vec_pretty(rec).map_err(|e| io("encode")(e.into()))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create"))?;
        file.write_all(&body)
            .and_then(|()| file.sync_all())
            .map_err(io("write"))?;
        fs::rename(&tmp, &path).map_err(io("write"))
    }

    /// Where a job's terraform state is kept when its result could not be
    /// reported and its work dir is gone.
    pub(super) fn state_path(&self, job_id: &str) -> PathBuf {
        self.dir.join(format!("{job_id}.tfstate"))
    }

    /// Keeps `state` for the next start to report.
    pub(super) fn save_state(&self, job_id: &str, state: &[u8]) -> Result<(), RecordError> {
        let path = self.state_path(job_id);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(state).and_then(|()| f.sync_all()))
            .map_err(|source| RecordError::Io {
                action: "save the state of",
                path,
                source,
            })
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
            if name.starts_with('.') && name.ends_with(".json.tmp") {
                // A write the kill interrupted before terraform started;
                // the coordinator's lease covers that job.
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
                tracing::warn!(path = %path.display(), "job record does not parse; reporting the job without its details");
                JobRecord {
                    job_id: job_id.to_string(),
                    kind: String::new(),
                    started_at_ms: 0,
                    work_dir: PathBuf::new(),
                }
            }));
        }
        out.sort_by_key(|r| r.started_at_ms);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
