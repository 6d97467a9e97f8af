//! The `Admin` service the CLI talks to. Every call needs the admin token,
//! checked here; each call is then one call into its resource's module
//! (`keys`, `templates`, `workspaces`, `jobs`, `prebuilds`, the `lists`
//! of every resource), which answers with messages made in `convert`.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::Hub;
use super::auth;
use super::error::{CoordError, Result};
use super::store;
use crate::archive;
use crate::proto;
use crate::proto::admin_server::Admin;
use crate::tags;

mod convert;
mod daemon_filter;
mod jobs;
mod keys;
mod lists;
mod prebuilds;
mod templates;
mod versions;
mod workspaces;

/// The owner of workspaces created without `--owner`.
pub const DEFAULT_OWNER: &str = "admin";

#[derive(Clone)]
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

    /// Runs a call's store work off the async workers (`store::blocking`):
    /// for the list pages, which read up to a thousand rows. Small unary
    /// calls stay on the worker: the hop to the blocking pool costs more
    /// than their few indexed statements (ARCHITECTURE.md, "Store").
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AdminApi) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let api = self.clone();
        store::blocking(move || f(&api)).await
    }
}

#[tonic::async_trait]
impl Admin for AdminApi {
    async fn create_key(
        &self,
        req: Request<proto::CreateKeyRequest>,
    ) -> Result<Response<proto::CreateKeyResponse>, Status> {
        self.auth(&req)?;
        Ok(Response::new(keys::create(self, req.into_inner())?))
    }

    async fn list_keys(
        &self,
        req: Request<proto::ListKeysRequest>,
    ) -> Result<Response<proto::ListKeysResponse>, Status> {
        self.auth(&req)?;
        let r = req.into_inner();
        Ok(Response::new(
            self.blocking(move |api| api.keys_page(r)).await?,
        ))
    }

    async fn delete_key(
        &self,
        req: Request<proto::DeleteKeyRequest>,
    ) -> Result<Response<proto::DeleteKeyResponse>, Status> {
        self.auth(&req)?;
        Ok(Response::new(keys::delete(self, req.into_inner())?))
    }

    async fn push_template(
        &self,
        req: Request<Streaming<proto::PushTemplatePart>>,
    ) -> Result<Response<proto::PushTemplateResponse>, Status> {
        self.auth(&req)?;
        Ok(Response::new(
            templates::push(self, req.into_inner()).await?,
        ))
    }

    async fn list_templates(
        &self,
        req: Request<proto::ListTemplatesRequest>,
    ) -> Result<Response<proto::ListTemplatesResponse>, Status> {
        self.auth(&req)?;
        let r = req.into_inner();
        Ok(Response::new(
            self.blocking(move |api| api.templates_page(r)).await?,
        ))
    }

    async fn get_template(
        &self,
        req: Request<proto::GetTemplateRequest>,
    ) -> Result<Response<proto::TemplateDetail>, Status> {
        self.auth(&req)?;
        Ok(Response::new(templates::get(self, req.into_inner())?))
    }

    async fn list_template_versions(
        &self,
        req: Request<proto::ListTemplateVersionsRequest>,
    ) -> Result<Response<proto::ListTemplateVersionsResponse>, Status> {
        self.auth(&req)?;
        let r = req.into_inner();
        Ok(Response::new(
            self.blocking(move |api| api.versions_page(r)).await?,
        ))
    }

    async fn promote_template_version(
        &self,
        req: Request<proto::PromoteTemplateVersionRequest>,
    ) -> Result<Response<proto::TemplateVersion>, Status> {
        self.auth(&req)?;
        Ok(Response::new(versions::promote(self, req.into_inner())?))
    }

    async fn archive_template_version(
        &self,
        req: Request<proto::ArchiveTemplateVersionRequest>,
    ) -> Result<Response<proto::TemplateVersion>, Status> {
        self.auth(&req)?;
        Ok(Response::new(versions::archive(self, req.into_inner())?))
    }

    async fn create_workspace(
        &self,
        req: Request<proto::CreateWorkspaceRequest>,
    ) -> Result<Response<proto::BuildResponse>, Status> {
        self.auth(&req)?;
        Ok(Response::new(workspaces::create(self, req.into_inner())?))
    }

    async fn build_workspace(
        &self,
        req: Request<proto::BuildWorkspaceRequest>,
    ) -> Result<Response<proto::BuildResponse>, Status> {
        self.auth(&req)?;
        Ok(Response::new(workspaces::build(self, req.into_inner())?))
    }

    async fn list_workspaces(
        &self,
        req: Request<proto::ListWorkspacesRequest>,
    ) -> Result<Response<proto::ListWorkspacesResponse>, Status> {
        self.auth(&req)?;
        let r = req.into_inner();
        Ok(Response::new(
            self.blocking(move |api| api.workspaces_page(r)).await?,
        ))
    }

    async fn get_workspace(
        &self,
        req: Request<proto::GetWorkspaceRequest>,
    ) -> Result<Response<proto::Workspace>, Status> {
        self.auth(&req)?;
        Ok(Response::new(workspaces::get(self, req.into_inner())?))
    }

    async fn set_automatic_updates(
        &self,
        req: Request<proto::SetAutomaticUpdatesRequest>,
    ) -> Result<Response<proto::Workspace>, Status> {
        self.auth(&req)?;
        Ok(Response::new(workspaces::set_automatic_updates(
            self,
            req.into_inner(),
        )?))
    }

    async fn list_jobs(
        &self,
        req: Request<proto::ListJobsRequest>,
    ) -> Result<Response<proto::ListJobsResponse>, Status> {
        self.auth(&req)?;
        let r = req.into_inner();
        Ok(Response::new(
            self.blocking(move |api| api.jobs_page(r)).await?,
        ))
    }

    async fn get_job(
        &self,
        req: Request<proto::GetJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        self.auth(&req)?;
        Ok(Response::new(jobs::get(self, req.into_inner())?))
    }

    async fn cancel_job(
        &self,
        req: Request<proto::CancelJobRequest>,
    ) -> Result<Response<proto::Job>, Status> {
        self.auth(&req)?;
        Ok(Response::new(jobs::cancel(self, req.into_inner())?))
    }

    type StreamJobLogsStream = Pin<Box<dyn Stream<Item = Result<proto::LogLine, Status>> + Send>>;

    async fn stream_job_logs(
        &self,
        req: Request<proto::StreamJobLogsRequest>,
    ) -> Result<Response<Self::StreamJobLogsStream>, Status> {
        self.auth(&req)?;
        Ok(Response::new(Box::pin(jobs::logs(self, req.into_inner())?)))
    }

    async fn list_daemons(
        &self,
        req: Request<proto::ListDaemonsRequest>,
    ) -> Result<Response<proto::ListDaemonsResponse>, Status> {
        self.auth(&req)?;
        let r = req.into_inner();
        Ok(Response::new(
            self.blocking(move |api| api.daemons_page(r)).await?,
        ))
    }

    async fn pause_prebuilds(
        &self,
        req: Request<proto::PausePrebuildsRequest>,
    ) -> Result<Response<proto::PrebuildStatus>, Status> {
        self.auth(&req)?;
        Ok(Response::new(prebuilds::set_paused(self, true).await?))
    }

    async fn resume_prebuilds(
        &self,
        req: Request<proto::ResumePrebuildsRequest>,
    ) -> Result<Response<proto::PrebuildStatus>, Status> {
        self.auth(&req)?;
        Ok(Response::new(prebuilds::set_paused(self, false).await?))
    }

    async fn get_prebuild_status(
        &self,
        req: Request<proto::GetPrebuildStatusRequest>,
    ) -> Result<Response<proto::PrebuildStatus>, Status> {
        self.auth(&req)?;
        Ok(Response::new(prebuilds::status(self)?))
    }

    async fn reset_prebuilds(
        &self,
        req: Request<proto::ResetPrebuildsRequest>,
    ) -> Result<Response<proto::PrebuildStatus>, Status> {
        self.auth(&req)?;
        Ok(Response::new(
            prebuilds::reset(self, req.into_inner()).await?,
        ))
    }
}
