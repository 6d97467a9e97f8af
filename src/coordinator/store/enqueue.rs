//! A new job row: its kind, what it is enqueued with, and the one insert
//! every enqueue goes through (template pushes, creates, builds, claims,
//! the reconciler's destroys), inside the caller's transaction.

use std::collections::BTreeMap;

use super::db::{Connection, params};

use super::{new_id, now_ms, tags_to_json};
use crate::coordinator::error::Result;
use crate::proto::Transition;
use crate::tags::Tags;

/// The owner name that marks prebuild work; it queues behind people.
pub const PREBUILDS_OWNER: &str = "prebuilds";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    TemplateImport,
    WorkspaceBuild(Transition),
}

pub struct NewJob {
    pub kind: JobKind,
    pub initiator: String,
    pub tags: Tags,
    pub template_version_id: String,
    pub workspace_id: Option<String>,
}

fn kind_to_db(kind: JobKind) -> (&'static str, Option<&'static str>) {
    match kind {
        JobKind::TemplateImport => ("template_import", None),
        JobKind::WorkspaceBuild(t) => (
            "workspace_build",
            Some(match t {
                Transition::Stop => "stop",
                Transition::Destroy => "destroy",
                _ => "start",
            }),
        ),
    }
}

pub(super) fn kind_from_db(ty: &str, transition: Option<&str>) -> JobKind {
    match (ty, transition) {
        ("template_import", _) => JobKind::TemplateImport,
        (_, Some("stop")) => JobKind::WorkspaceBuild(Transition::Stop),
        (_, Some("destroy")) => JobKind::WorkspaceBuild(Transition::Destroy),
        _ => JobKind::WorkspaceBuild(Transition::Start),
    }
}

pub(super) fn insert_job(tx: &Connection, job: &NewJob) -> Result<String> {
    let id = new_id();
    let (ty, transition) = kind_to_db(job.kind);
    tx.execute(
        "INSERT INTO jobs(id, type, status, initiator, is_prebuild, tags, template_version_id,
                          workspace_id, transition, created_at, tag_set)
         VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            id,
            ty,
            job.initiator,
            job.initiator == PREBUILDS_OWNER,
            tags_to_json(&job.tags)?,
            job.template_version_id,
            job.workspace_id,
            transition,
            now_ms(),
            super::tagsets::set_id(tx, &job.tags)?
        ],
    )?;
    Ok(id)
}

/// Records a build's parameter values and the ones it replaces.
pub(super) fn set_build_parameters(
    tx: &super::db::Connection,
    job_id: &str,
    parameters: &BTreeMap<String, String>,
    previous: &BTreeMap<String, String>,
) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET parameters = ?2, previous_parameters = ?3 WHERE id = ?1",
        params![
            job_id,
            serde_json::to_string(parameters)?,
            serde_json::to_string(previous)?
        ],
    )?;
    Ok(())
}
