//! The list calls, each answering one page (see [`super::super::paging`]):
//! rows after the request's cursor in a stable order, and the cursor to
//! continue from.

use super::{AdminApi, convert};
use crate::coordinator::error::{CoordError, Result};
use crate::coordinator::paging::Page;
use crate::coordinator::store::{JobFilter, JobStatus};
use crate::proto;
use crate::tags;

impl AdminApi {
    pub(super) fn keys_page(&self, req: proto::ListKeysRequest) -> Result<proto::ListKeysResponse> {
        let page = Page::new(req.limit);
        let rows = self.hub.store.keys_after(&req.after, page.fetch().into())?;
        let (keys, next_cursor) = page
            .fill(rows.into_iter().map(|k| Ok(convert::key(k))), |k| {
                k.name.clone()
            })?;
        Ok(proto::ListKeysResponse { keys, next_cursor })
    }

    pub(super) fn templates_page(
        &self,
        req: proto::ListTemplatesRequest,
    ) -> Result<proto::ListTemplatesResponse> {
        let page = Page::new(req.limit);
        let rows = self
            .hub
            .store
            .templates_after(&req.after, page.fetch().into())?;
        let (templates, next_cursor) = page
            .fill(rows.into_iter().map(|t| Ok(convert::template(t))), |t| {
                t.name.clone()
            })?;
        Ok(proto::ListTemplatesResponse {
            templates,
            next_cursor,
        })
    }

    pub(super) fn workspaces_page(
        &self,
        req: proto::ListWorkspacesRequest,
    ) -> Result<proto::ListWorkspacesResponse> {
        let page = Page::new(req.limit);
        let rows =
            self.hub
                .store
                .workspaces_after(&req.after, &req.owner, &req.template, page.fetch())?;
        let (workspaces, next_cursor) = page.fill(
            rows.into_iter()
                .map(|w| convert::workspace(&self.hub.store, w)),
            |w| w.name.clone(),
        )?;
        Ok(proto::ListWorkspacesResponse {
            workspaces,
            next_cursor,
        })
    }

    pub(super) fn jobs_page(&self, req: proto::ListJobsRequest) -> Result<proto::ListJobsResponse> {
        let mut statuses = Vec::new();
        for s in std::iter::once(&req.status)
            .chain(&req.statuses)
            .filter(|s| !s.is_empty())
        {
            let s = s
                .parse::<JobStatus>()
                .map_err(|e| CoordError::Invalid(format!("list jobs: {e}")))?;
            if !statuses.contains(&s) {
                statuses.push(s);
            }
        }
        if !req.after.is_empty() {
            // A cursor is a job id; an unknown one would list nothing.
            self.hub.store.job(&req.after).map_err(|_| {
                CoordError::Invalid(format!(
                    "list jobs: cursor {:?} is not a job id (pass a next_cursor as --after)",
                    tags::shown(&req.after)
                ))
            })?;
        }
        let page = Page::new(req.limit);
        let filter = JobFilter {
            statuses,
            initiator: (!req.initiator.is_empty()).then_some(req.initiator),
            limit: page.fetch(),
            after: (!req.after.is_empty()).then_some(req.after),
        };
        let jobs = self.hub.store.list_jobs(&filter)?;
        let (jobs, next_cursor) = page.fill(
            jobs.into_iter()
                .map(|j| Ok(convert::job(&self.hub.store, j))),
            |j| j.id.clone(),
        )?;
        Ok(proto::ListJobsResponse { jobs, next_cursor })
    }

    pub(super) fn daemons_page(
        &self,
        req: proto::ListDaemonsRequest,
    ) -> Result<proto::ListDaemonsResponse> {
        let filter = super::daemon_filter::DaemonFilter::new(&req)?;
        let page = Page::new(req.limit);
        let rows = filter.rows(&self.hub.store, &req.after, page.fetch())?;
        let (daemons, next_cursor) = page
            .fill(rows.into_iter().map(|d| Ok(convert::daemon(d))), |d| {
                d.name.clone()
            })?;
        Ok(proto::ListDaemonsResponse {
            daemons,
            next_cursor,
        })
    }
}
