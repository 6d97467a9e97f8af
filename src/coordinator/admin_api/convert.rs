//! Rows → the messages the `Admin` service answers with.

use super::AdminApi;
use crate::coordinator::error::Result;
use crate::coordinator::outputs::state_outputs;
use crate::coordinator::store::{JobKind, JobRow, WorkspaceRow};
use crate::proto::{self, Transition};

impl AdminApi {
    pub(super) fn job_to_proto(&self, j: JobRow) -> proto::Job {
        let (ty, transition) = match j.kind {
            JobKind::TemplateImport => (proto::JobType::TemplateImport, Transition::Unspecified),
            JobKind::WorkspaceBuild(t) => (proto::JobType::WorkspaceBuild, t),
        };
        let version = self.hub.store.version(&j.template_version_id).ok();
        let workspace = j
            .workspace_id
            .as_deref()
            .and_then(|id| self.hub.store.workspace_by_id(id).ok());
        proto::Job {
            id: j.id,
            r#type: ty as i32,
            status: j.status,
            initiator: j.initiator,
            tags: j.tags.into_iter().collect(),
            created_at: j.created_at,
            started_at: j.started_at.unwrap_or(0),
            finished_at: j.finished_at.unwrap_or(0),
            error: j.error.unwrap_or_default(),
            daemon: j.daemon_name.unwrap_or_default(),
            offered_to: j.offered_to.unwrap_or_default(),
            template: version.map(|v| v.template).unwrap_or_default(),
            template_version_id: j.template_version_id,
            workspace: workspace.map(|w| w.name).unwrap_or_default(),
            transition: transition as i32,
            log_count: j.log_count,
            replacements: j.replacements,
            // Filled in by GetJob for a pending job only: it costs a look
            // at every daemon.
            routing: Vec::new(),
        }
    }

    pub(super) fn workspace_to_proto(&self, w: WorkspaceRow) -> Result<proto::Workspace> {
        let latest = self.hub.store.latest_build(&w.id)?;
        let (transition, job_id, status) = match latest {
            Some(j) => {
                let t = match j.kind {
                    JobKind::WorkspaceBuild(t) => t,
                    JobKind::TemplateImport => Transition::Unspecified,
                };
                (t, j.id, j.status)
            }
            None => (Transition::Unspecified, String::new(), String::new()),
        };
        let (claimed_from, claimed_at) = self.hub.store.claim_of(&w.id)?.unwrap_or_default();
        Ok(proto::Workspace {
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
}
