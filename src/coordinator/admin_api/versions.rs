//! Template versions: list, promote (rollback is promoting an older one),
//! archive. The decisions are the store's (`store/versions.rs`); this
//! checks the request and wakes the prebuild reconciler, whose pools
//! follow the active version.

use super::{AdminApi, convert};
use crate::coordinator::bounds;
use crate::coordinator::error::Result;
use crate::coordinator::paging::Page;
use crate::grpc::limits::MAX_VALUE_NAME_BYTES;
use crate::proto;

fn check(action: &str, template: &str, version: &str) -> Result<()> {
    bounds::text(action, "template", template, MAX_VALUE_NAME_BYTES)?;
    bounds::text(action, "version", version, MAX_VALUE_NAME_BYTES)
}

impl AdminApi {
    pub(super) fn versions_page(
        &self,
        req: proto::ListTemplateVersionsRequest,
    ) -> Result<proto::ListTemplateVersionsResponse> {
        check("list template versions", &req.template, &req.after)?;
        let page = Page::new(req.limit);
        let rows = self.hub.store.versions_page(
            &req.template,
            req.include_archived,
            &req.after,
            page.fetch(),
        )?;
        let (versions, next_cursor) = page
            .fill(rows.into_iter().map(|v| Ok(convert::version(v))), |v| {
                v.id.clone()
            })?;
        Ok(proto::ListTemplateVersionsResponse {
            versions,
            next_cursor,
        })
    }
}

pub(super) fn promote(
    api: &AdminApi,
    req: proto::PromoteTemplateVersionRequest,
) -> Result<proto::TemplateVersion> {
    check("promote template version", &req.template, &req.version)?;
    let v = api.hub.store.promote_version(&req.template, &req.version)?;
    tracing::info!(template = %v.template, version = %v.name, id = %v.id, "template version promoted");
    // The pools follow the active version: the leader's reconciler
    // replaces prebuilds of the old one now, not at its next tick.
    api.hub
        .cluster
        .publish(crate::coordinator::cluster::Event::ReconcilePrebuilds);
    Ok(convert::version(v))
}

pub(super) fn archive(
    api: &AdminApi,
    req: proto::ArchiveTemplateVersionRequest,
) -> Result<proto::TemplateVersion> {
    check("archive template version", &req.template, &req.version)?;
    let v = api
        .hub
        .store
        .archive_version(&req.template, &req.version, !req.unarchive)?;
    Ok(convert::version(v))
}
