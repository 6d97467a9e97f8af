//! The `Admin` service the CLI talks to. Every call needs the admin token.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Hub;
use super::auth;
use super::bounds;
use super::error::{CoordError, Result};
use super::outputs::state_outputs;
use super::prebuilds;
use super::store::{self, JobKind, JobRow, WorkspaceRow};
use super::templates;
use super::transfer;
use super::workspaces;
use crate::archive;
use crate::grpc::limits::{MAX_META_BYTES, MAX_VALUE_NAME_BYTES};
use crate::proto::admin_server::Admin;
use crate::proto::{self, Transition};
use crate::tags;

mod lists;

/// The owner of workspaces created without `--owner`.
pub const DEFAULT_OWNER: &str = "admin";

pub struct AdminApi {
    pub hub: Arc<Hub>,
    /// Bounds a pushed template archive must stay within.
    pub archive_limits: archive::Limits,
}

fn check_name(what: &str, name: &str) -> Result<()> {
    tags::check_name(what, name).map_err(CoordError::Invalid)
}

impl AdminApi {
    fn auth<T>(&self, req: &Request<T>) -> Result<()> {
        auth::check_admin(&self.hub.store, req)
    }

    fn job_to_proto(&self, j: JobRow) -> proto::Job {
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

    fn workspace_to_proto(&self, w: WorkspaceRow) -> Result<proto::Workspace> {
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

/// A pushed archive must pass the daemon's own extraction checks within
/// `limits` (its size first, before anything is parsed or stored) and hold
/// at least one `.tf` file at its root; anything else could never import.
fn check_template(archive: &[u8], limits: &archive::Limits) -> std::result::Result<(), String> {
    archive::check(archive, limits).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(archive);
    let mut has_tf = false;
    for entry in ar.entries().map_err(|e| format!("read archive: {e}"))? {
        let entry = entry.map_err(|e| format!("read archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("read archive entry: {e}"))?;
        let name = path.to_string_lossy();
        let name = name.strip_prefix("./").unwrap_or(&name);
        has_tf |= !name.contains('/') && name.ends_with(".tf");
    }
    if has_tf {
        Ok(())
    } else {
        Err("archive has no .tf file at its root".into())
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn create_key(
        &self,
        req: Request<proto::CreateKeyRequest>,
    ) -> Result<Response<proto::CreateKeyResponse>, Status> {
        self.auth(&req)?;
        let req = req.into_inner();
        check_name("key", &req.name)?;
        let tags = bounds::tags(&format!("create key {:?}", req.name), &req.tags)?;
        let secret = auth::new_secret("pdk_");
        let key = self
            .hub
            .store
            .create_key(&req.name, &auth::hash(&secret), &tags)?;
        Ok(Response::new(proto::CreateKeyResponse {
            secret,
            key: Some(proto::Key {
                name: key.name,
                tags: key.tags.into_iter().collect(),
                created_at: key.created_at,
            }),
        }))
    }

    async fn list_keys(
        &self,
        req: Request<proto::ListKeysRequest>,
    ) -> Result<Response<proto::ListKeysResponse>, Status> {
        self.auth(&req)?;
        Ok(Response::new(self.keys_page(req.into_inner())?))
    }

    async fn delete_key(
        &self,
        req: Request<proto::DeleteKeyRequest>,
    ) -> Result<Response<proto::DeleteKeyResponse>, Status> {
        self.auth(&req)?;
        let name = req.into_inner().name;
        self.hub.store.delete_key(&name)?;
        self.hub.disconnect_key(&name);
        Ok(Response::new(proto::DeleteKeyResponse {}))
    }

    async fn push_template(
        &self,
        req: Request<Streaming<proto::PushTemplatePart>>,
    ) -> Result<Response<proto::PushTemplateResponse>, Status> {
        self.auth(&req)?;
        // Counted as the chunks arrive: an archive over the limit is refused
        // before the rest is read, and nothing is stored unless it is whole.
        let (req, archive) =
            transfer::read_push(req.into_inner(), self.archive_limits.max_archive_bytes).await?;
        check_name("template", &req.name)?;
        let action = format!("push template {:?}", req.name);
        let tags = bounds::tags(&action, &req.provisioner_tags)?;
        bounds::values(&action, "variables", &req.variables)?;
        // Checked and read without terraform: a template whose parameters,
        // presets or tags are wrong is refused now, with the file and line.
        // CPU work on a hostile archive (links to resolve, HCL to parse)
        // runs off the async workers.
        let (name, limits) = (req.name.clone(), self.archive_limits);
        let (archive, meta) = tokio::task::spawn_blocking(move || {
            check_template(&archive, &limits)
                .map_err(|e| CoordError::Invalid(format!("push template {name:?}: {e}")))?;
            let meta = templates::read(&name, &archive, &limits)?;
            Ok::<_, CoordError>((archive, meta))
        })
        .await
        .map_err(|e| CoordError::Internal(format!("push template {:?}: check: {e}", req.name)))??;
        let vars: BTreeMap<String, String> = req.variables.into_iter().collect();
        let import_tags = templates::import_tags(&req.name, &meta, &vars, &tags)?;
        let meta_json = templates::meta_json(&meta)?;
        if meta_json.len() > MAX_META_BYTES {
            return Err(CoordError::Invalid(format!(
                "push template {:?}: its metadata (variables, parameters, presets, README) \
                 is {} bytes, over the limit of {MAX_META_BYTES} bytes",
                req.name,
                meta_json.len()
            ))
            .into());
        }
        let (version_id, job_id) = self.hub.store.push_template(
            &req.name,
            &archive,
            &tags,
            &vars,
            DEFAULT_OWNER,
            &store::NewImport {
                meta_json: Some(meta_json),
                tags: import_tags,
            },
        )?;
        self.hub.dispatcher.kick();
        Ok(Response::new(proto::PushTemplateResponse {
            template_version_id: version_id,
            job_id,
        }))
    }

    async fn list_templates(
        &self,
        req: Request<proto::ListTemplatesRequest>,
    ) -> Result<Response<proto::ListTemplatesResponse>, Status> {
        self.auth(&req)?;
        Ok(Response::new(self.templates_page(req.into_inner())?))
    }

    async fn get_template(
        &self,
        req: Request<proto::GetTemplateRequest>,
    ) -> Result<Response<proto::TemplateDetail>, Status> {
        self.auth(&req)?;
        let name = req.into_inner().name;
        let template = self.hub.store.template(&name)?;
        let latest = self.hub.store.latest_version(&name)?;
        Ok(Response::new(proto::TemplateDetail {
            name,
            active_version_id: template.active_version_id.unwrap_or_default(),
            latest_version_id: latest.id,
            meta_json: latest.meta_json.unwrap_or_default(),
        }))
    }

    async fn create_workspace(
        &self,
        req: Request<proto::CreateWorkspaceRequest>,
    ) -> Result<Response<proto::BuildResponse>, Status> {
        self.auth(&req)?;
        let req = req.into_inner();
        let action = format!("create workspace {:?}", tags::shown(&req.name));
        bounds::values(&action, "variables", &req.variables)?;
        bounds::values(&action, "parameters", &req.parameters)?;
        bounds::text(&action, "preset", &req.preset, MAX_VALUE_NAME_BYTES)?;
        let owner = if req.owner.is_empty() {
            DEFAULT_OWNER
        } else {
            req.owner.as_str()
        };
        let created = super::claim::create_or_claim(
            &self.hub,
            &workspaces::NewWorkspace {
                name: &req.name,
                template: &req.template,
                owner,
                variables: req.variables.into_iter().collect(),
                parameters: req.parameters.into_iter().collect(),
                preset: (!req.preset.is_empty()).then_some(req.preset.as_str()),
                reconciled: false,
            },
            req.default_preset,
        )?;
        let (claimed_from, claimed_built_at) = created
            .claimed
            .map_or((String::new(), 0), |c| (c.from, c.built_at));
        Ok(Response::new(proto::BuildResponse {
            workspace_id: created.workspace_id,
            job_id: created.job_id,
            claimed_from,
            claimed_built_at,
            claim_tried: created.claim_tried,
        }))
    }

    async fn build_workspace(
        &self,
        req: Request<proto::BuildWorkspaceRequest>,
    ) -> Result<Response<proto::BuildResponse>, Status> {
        self.auth(&req)?;
        let req = req.into_inner();
        let transition = match Transition::try_from(req.transition) {
            Ok(t @ (Transition::Start | Transition::Stop | Transition::Destroy)) => t,
            _ => {
                return Err(Status::invalid_argument(
                    "build workspace: transition must be start, stop or destroy",
                ));
            }
        };
        let action = format!("build workspace {:?}", tags::shown(&req.name));
        bounds::values(&action, "parameters", &req.parameters)?;
        let ws = self.hub.store.workspace(&req.name)?;
        let given: BTreeMap<String, String> = req.parameters.into_iter().collect();
        let job_id = workspaces::build(&self.hub, &ws, transition, &given)?;
        Ok(Response::new(proto::BuildResponse {
            workspace_id: ws.id,
            job_id,
            ..Default::default()
        }))
    }

    async fn list_workspaces(
        &self,
        req: Request<proto::ListWorkspacesRequest>,
    ) -> Result<Response<proto::ListWorkspacesResponse>, Status> {
        self.auth(&req)?;
        Ok(Response::new(self.workspaces_page(req.into_inner())?))
    }

    async fn get_workspace(
        &self,
        req: Request<proto::GetWorkspaceRequest>,
    ) -> Result<Response<proto::Workspace>, Status> {
        self.auth(&req)?;
        let ws = self.hub.store.workspace(&req.into_inner().name)?;
        Ok(Response::new(self.workspace_to_proto(ws)?))
    }

    async fn list_jobs(
        &self,
        req: Request<proto::ListJobsRequest>,
    ) -> Result<Response<proto::ListJobsResponse>, Status> {
        self.auth(&req)?;
        Ok(Response::new(self.jobs_page(req.into_inner())?))
    }

    async fn get_job(
        &self,
        req: Request<proto::GetJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        self.auth(&req)?;
        let job = self.hub.store.job(&req.into_inner().id)?;
        let mut routing = Vec::new();
        if let Some(daemon) = &job.offered_to {
            routing.push(format!(
                "offered to daemon {daemon}: it runs once the daemon acknowledges it, \
                 or goes back to the queue if it does not in time"
            ));
        }
        if job.status == "pending" {
            routing.extend(super::routing::explain(
                &job.tags,
                &self.hub.store.list_daemons()?,
            ));
        }
        let mut job = self.job_to_proto(job);
        job.routing = routing;
        Ok(Response::new(job))
    }

    async fn cancel_job(
        &self,
        req: Request<proto::CancelJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        self.auth(&req)?;
        let id = req.into_inner().id;
        let canceled = self.hub.store.cancel_job(&id)?;
        let daemon = canceled.job.daemon_name.as_deref().unwrap_or_default();
        match &canceled.notify_daemon {
            Some(daemon_id) if self.hub.push_cancel(daemon_id, &id) => {
                tracing::info!(job = %id, daemon, "job canceling: daemon told");
            }
            // It learns from the answer to its next UpdateJob.
            Some(_) => tracing::warn!(
                job = %id,
                daemon,
                "job canceling: daemon not reachable on its session; it learns on its next update"
            ),
            None => tracing::info!(job = %id, "job canceled before it ran"),
        }
        self.hub.job_changed(&id);
        Ok(Response::new(self.job_to_proto(canceled.job)))
    }

    type StreamJobLogsStream = Pin<Box<dyn Stream<Item = Result<proto::LogLine, Status>> + Send>>;

    async fn stream_job_logs(
        &self,
        req: Request<proto::StreamJobLogsRequest>,
    ) -> Result<Response<Self::StreamJobLogsStream>, Status> {
        self.auth(&req)?;
        let req = req.into_inner();
        self.hub.store.job(&req.job_id)?;
        let (tx, rx) = mpsc::channel(256);
        let hub = self.hub.clone();
        self.hub.tasks.spawn(follow_logs(hub, req, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_daemons(
        &self,
        req: Request<proto::ListDaemonsRequest>,
    ) -> Result<Response<proto::ListDaemonsResponse>, Status> {
        self.auth(&req)?;
        Ok(Response::new(self.daemons_page(req.into_inner())?))
    }

    async fn pause_prebuilds(
        &self,
        req: Request<proto::PausePrebuildsRequest>,
    ) -> Result<Response<proto::PrebuildStatus>, Status> {
        self.auth(&req)?;
        // Waits for an acting reconcile pass: off the async workers.
        let hub = self.hub.clone();
        let status = tokio::task::spawn_blocking(move || prebuilds::set_paused(&hub, true))
            .await
            .map_err(|e| CoordError::Internal(format!("pause prebuilds: {e}")))??;
        Ok(Response::new(status))
    }

    async fn resume_prebuilds(
        &self,
        req: Request<proto::ResumePrebuildsRequest>,
    ) -> Result<Response<proto::PrebuildStatus>, Status> {
        self.auth(&req)?;
        // Waits for an acting reconcile pass: off the async workers.
        let hub = self.hub.clone();
        let status = tokio::task::spawn_blocking(move || prebuilds::set_paused(&hub, false))
            .await
            .map_err(|e| CoordError::Internal(format!("resume prebuilds: {e}")))??;
        Ok(Response::new(status))
    }

    async fn get_prebuild_status(
        &self,
        req: Request<proto::GetPrebuildStatusRequest>,
    ) -> Result<Response<proto::PrebuildStatus>, Status> {
        self.auth(&req)?;
        Ok(Response::new(prebuilds::status(&self.hub)?))
    }

    async fn reset_prebuilds(
        &self,
        req: Request<proto::ResetPrebuildsRequest>,
    ) -> Result<Response<proto::PrebuildStatus>, Status> {
        self.auth(&req)?;
        let r = req.into_inner();
        // Reads templates and writes the store: off the async workers.
        let hub = self.hub.clone();
        let status =
            tokio::task::spawn_blocking(move || prebuilds::reset(&hub, &r.template, &r.preset))
                .await
                .map_err(|e| CoordError::Internal(format!("reset prebuilds: {e}")))??;
        Ok(Response::new(status))
    }
}

/// Sends a job's stored lines after `after_seq`; with `follow`, keeps
/// sending new ones until the job has finished and every line is out.
async fn follow_logs(
    hub: Arc<Hub>,
    req: proto::StreamJobLogsRequest,
    tx: mpsc::Sender<Result<proto::LogLine, Status>>,
) {
    let mut changes = hub.changes.subscribe();
    let mut after = req.after_seq;
    loop {
        // Read the status before the lines: if it says finished, the lines
        // read next are complete (FinishJob requires every line stored).
        let finished = match hub.store.job(&req.job_id) {
            Ok(j) => j.is_finished(),
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        loop {
            let rows = match hub.store.logs(&req.job_id, after, 500) {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            if rows.is_empty() {
                break;
            }
            for r in rows {
                after = r.seq;
                let line = proto::LogLine {
                    seq: r.seq,
                    created_at: r.created_at,
                    level: r.level,
                    source: r.source,
                    stage: r.stage,
                    output: r.output,
                };
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
        }
        if !req.follow || finished {
            return;
        }
        // Wake on a change to this job, or re-check after a second in case
        // a notification was missed (lagged receiver).
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match changes.recv().await {
                    Ok(id) if id == req.job_id => return,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        })
        .await;
        if tx.is_closed() || hub.stopping.is_cancelled() {
            return;
        }
    }
}
