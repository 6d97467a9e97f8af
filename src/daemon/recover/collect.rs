//! Collecting the jobs an earlier run left unreported, before the work root
//! is wiped: their records, and the terraform state each work dir held.

use std::path::{Component, Path};

use crate::daemon::record::{JobRecord, RecordError, Records};

/// terraform's local backend keeps the state here, in the work dir.
pub(super) const STATE_FILE: &str = "terraform.tfstate";
/// The state before terraform's latest write of [`STATE_FILE`].
pub(super) const BACKUP_FILE: &str = "terraform.tfstate.backup";

/// A job to report, with its state.
#[derive(Debug)]
pub(in crate::daemon) struct Unfinished {
    pub record: JobRecord,
    pub state: Option<Vec<u8>>,
}

/// Reads the records an earlier run left, each with its state: the one kept
/// beside the record (by an earlier collect, or by a run that could not
/// report the result), else its work dir's state, else that state's backup
/// (terraform's copy from before its latest write). Only a build's state
/// that is valid JSON is sent: one torn by the kill is not, and the
/// coordinator keeps the previous one.
///
/// A state read from a work dir is saved beside its record before this
/// returns, because the work root is wiped next and a start that cannot
/// report the job must still find it; failing that is an error. Spools of
/// jobs without a record are removed. Runs after the leftover processes
/// were stopped.
pub(in crate::daemon) fn collect(
    records: &Records,
    jobs_dir: &Path,
    spool_dir: &Path,
) -> Result<Vec<Unfinished>, RecordError> {
    let mut out = Vec::new();
    for record in records.list()? {
        let single = matches!(
            Path::new(&record.job_id).components().collect::<Vec<_>>()[..],
            [Component::Normal(_)]
        );
        let state = if single && record.kind == "workspace_build" {
            state_of(records, jobs_dir, &record.job_id)?
        } else {
            None
        };
        out.push(Unfinished { record, state });
    }
    prune_spools(spool_dir, &out);
    Ok(out)
}

fn state_of(
    records: &Records,
    jobs_dir: &Path,
    job_id: &str,
) -> Result<Option<Vec<u8>>, RecordError> {
    if let Some(kept) = read_state(job_id, &records.state_path(job_id)) {
        return Ok(Some(kept));
    }
    let work_dir = jobs_dir.join(job_id);
    let Some(state) = [STATE_FILE, BACKUP_FILE]
        .iter()
        .find_map(|name| read_state(job_id, &work_dir.join(name)))
    else {
        return Ok(None);
    };
    records.save_state(job_id, &state)?;
    Ok(Some(state))
}

fn read_state(job_id: &str, path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() {
        return Some(bytes);
    }
    tracing::warn!(
        job_id,
        path = %path.display(),
        "terraform state of an interrupted job is not valid JSON; not sent"
    );
    None
}

/// A spool (`spool::path`) without a record is left from a job that was
/// settled just before a kill; a temporary one from a replacement a kill
/// interrupted (`spool::Replacement`).
fn prune_spools(spool_dir: &Path, keep: &[Unfinished]) {
    let Ok(entries) = std::fs::read_dir(spool_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stray = match name.strip_suffix(".log") {
            Some(job_id) => keep.iter().all(|u| u.record.job_id != job_id),
            None => name.starts_with('.') && name.ends_with(".log.tmp"),
        };
        if stray {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
