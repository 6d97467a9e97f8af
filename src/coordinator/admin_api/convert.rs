//! Rows → the messages the `Admin` service answers with: the one place
//! each resource's message is made, whichever call returns it.

use crate::coordinator::error::Result;
use crate::coordinator::outputs::state_outputs;
use crate::coordinator::store::{
    DaemonRow, JobKind, JobRow, KeyRow, LogRow, Store, TemplateRow, VersionInfo, WorkspaceRow,
};
use crate::proto::{self, Transition};

pub(super) fn key(k: KeyRow) -> proto::Key {
    proto::Key {
        name: k.name,
        tags: k.tags.into_iter().collect(),
        created_at: k.created_at,
    }
}

pub(super) fn template(t: TemplateRow) -> proto::Template {
    proto::Template {
        name: t.name,
        active_version_id: t.active_version_id.unwrap_or_default(),
        active_version_name: t.active_version_name.unwrap_or_default(),
        created_at: t.created_at,
        variables: t
            .declared
            .into_iter()
            .map(|v| proto::TemplateVariable {
                name: v.name,
                description: v.description,
                r#type: v.r#type,
                default_json: v.default_json,
                sensitive: v.sensitive,
                required: v.required,
            })
            .collect(),
    }
}

pub(super) fn version(v: VersionInfo) -> proto::TemplateVersion {
    proto::TemplateVersion {
        id: v.id,
        name: v.name,
        template: v.template,
        message: v.message,
        created_by: v.created_by,
        created_at: v.created_at,
        import_job_id: v.import_job_id,
        status: v.status,
        error: v.error,
        active: v.active,
        archived: v.archived,
        workspaces: v.workspaces,
        activate: v.activate,
    }
}

pub(super) fn daemon(d: DaemonRow) -> proto::Daemon {
    proto::Daemon {
        status: d.status().to_string(),
        current_job_id: d.current_job().unwrap_or_default().to_string(),
        id: d.id,
        name: d.name,
        tags: d.tags.into_iter().collect(),
        last_seen_at: d.last_seen_at,
        version: d.version,
        key_name: d.key_name,
    }
}

pub(super) fn log_line(r: LogRow) -> proto::LogLine {
    proto::LogLine {
        seq: r.seq,
        created_at: r.created_at,
        level: r.level,
        source: r.source,
        stage: r.stage,
        output: r.output,
    }
}

/// A job with its template's and workspace's names (read from `store`).
pub(super) fn job(store: &Store, j: JobRow) -> proto::Job {
    let (ty, transition) = match j.kind {
        JobKind::TemplateImport => (proto::JobType::TemplateImport, Transition::Unspecified),
        JobKind::WorkspaceBuild(t) => (proto::JobType::WorkspaceBuild, t),
    };
    // Names only: a list page of a thousand jobs must not read their
    // versions' metadata or their workspaces' states.
    let names = store
        .job_names(&j.template_version_id, j.workspace_id.as_deref())
        .unwrap_or_default();
    proto::Job {
        id: j.id,
        r#type: ty as i32,
        status: j.status.to_string(),
        initiator: j.initiator,
        tags: j.tags.into_iter().collect(),
        created_at: j.created_at,
        started_at: j.started_at.unwrap_or(0),
        finished_at: j.finished_at.unwrap_or(0),
        error: j.error.unwrap_or_default(),
        daemon: j.daemon_name.unwrap_or_default(),
        offered_to: j.offered_to.unwrap_or_default(),
        template_version_name: names.version,
        template: names.template,
        template_version_id: j.template_version_id,
        workspace: names.workspace,
        transition: transition as i32,
        log_count: j.log_count,
        replacements: j.replacements,
        // Filled in by GetJob for a pending job only: it costs a look
        // at every daemon.
        routing: Vec::new(),
    }
}

/// A workspace with its latest build and where it was claimed from.
pub(super) fn workspace(store: &Store, w: WorkspaceRow) -> Result<proto::Workspace> {
    let latest = store.latest_build(&w.id)?;
    let (transition, job_id, status) = match latest {
        Some(j) => {
            let t = match j.kind {
                JobKind::WorkspaceBuild(t) => t,
                JobKind::TemplateImport => Transition::Unspecified,
            };
            (t, j.id, j.status.to_string())
        }
        None => (Transition::Unspecified, String::new(), String::new()),
    };
    let (claimed_from, claimed_at) = store.claim_of(&w.id)?.unwrap_or_default();
    Ok(proto::Workspace {
        outdated: w
            .active_version_id
            .as_ref()
            .is_some_and(|a| *a != w.template_version_id),
        template_version_name: w.template_version_name,
        automatic_updates: w.automatic_updates.as_str().to_string(),
        claimed_from,
        claimed_at,
        outputs: state_outputs(w.state.as_deref()),
        id: w.id,
        name: w.name,
        owner: w.owner,
        template: w.template,
        template_version_id: w.template_version_id,
        latest_transition: transition as i32,
        latest_job_id: job_id,
        latest_job_status: status,
        created_at: w.created_at,
        variables: w.var_values.into_iter().collect(),
    })
}
