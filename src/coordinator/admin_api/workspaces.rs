//! Workspaces: create (or claim a prebuild), build, get.

use std::collections::BTreeMap;

use super::{AdminApi, DEFAULT_OWNER, convert};
use crate::coordinator::bounds;
use crate::coordinator::claim;
use crate::coordinator::error::{CoordError, Result};
use crate::coordinator::store;
use crate::coordinator::workspaces;
use crate::grpc::limits::MAX_VALUE_NAME_BYTES;
use crate::proto::{self, Transition};
use crate::tags;

pub(super) fn create(
    api: &AdminApi,
    req: proto::CreateWorkspaceRequest,
) -> Result<proto::BuildResponse> {
    let action = format!("create workspace {:?}", tags::shown(&req.name));
    bounds::values(&action, "variables", &req.variables)?;
    bounds::values(&action, "parameters", &req.parameters)?;
    bounds::text(&action, "preset", &req.preset, MAX_VALUE_NAME_BYTES)?;
    bounds::text(
        &action,
        "template version",
        &req.template_version,
        MAX_VALUE_NAME_BYTES,
    )?;
    let automatic_updates = store::AutomaticUpdates::parse(&req.automatic_updates)
        .map_err(|e| CoordError::Invalid(format!("{action}: {e}")))?;
    let owner = if req.owner.is_empty() {
        DEFAULT_OWNER
    } else {
        req.owner.as_str()
    };
    let created = claim::create_or_claim(
        &api.hub,
        &workspaces::NewWorkspace {
            name: &req.name,
            template: &req.template,
            owner,
            variables: req.variables.into_iter().collect(),
            parameters: req.parameters.into_iter().collect(),
            preset: (!req.preset.is_empty()).then_some(req.preset.as_str()),
            reconciled: false,
            version: (!req.template_version.is_empty()).then_some(req.template_version.as_str()),
            automatic_updates,
        },
        req.default_preset,
    )?;
    let (claimed_from, claimed_built_at) = created
        .claimed
        .map_or((String::new(), 0), |c| (c.from, c.built_at));
    Ok(proto::BuildResponse {
        workspace_id: created.workspace_id,
        job_id: created.job_id,
        claimed_from,
        claimed_built_at,
        claim_tried: created.claim_tried,
    })
}

pub(super) fn build(
    api: &AdminApi,
    req: proto::BuildWorkspaceRequest,
) -> Result<proto::BuildResponse> {
    let transition = match Transition::try_from(req.transition) {
        Ok(t @ (Transition::Start | Transition::Stop | Transition::Destroy)) => t,
        _ => {
            return Err(CoordError::Invalid(
                "build workspace: transition must be start, stop or destroy".into(),
            ));
        }
    };
    let action = format!("build workspace {:?}", tags::shown(&req.name));
    bounds::values(&action, "parameters", &req.parameters)?;
    let ws = api.hub.store.workspace(&req.name)?;
    let given: BTreeMap<String, String> = req.parameters.into_iter().collect();
    if req.update && transition != Transition::Start {
        return Err(CoordError::Invalid(format!(
            "{action}: only a start can update a workspace to the active version"
        )));
    }
    let job_id = workspaces::build(&api.hub, &ws, transition, &given, req.update)?;
    Ok(proto::BuildResponse {
        workspace_id: ws.id,
        job_id,
        ..Default::default()
    })
}

pub(super) fn get(api: &AdminApi, req: proto::GetWorkspaceRequest) -> Result<proto::Workspace> {
    let ws = api.hub.store.workspace(&req.name)?;
    convert::workspace(&api.hub.store, ws)
}

pub(super) fn set_automatic_updates(
    api: &AdminApi,
    req: proto::SetAutomaticUpdatesRequest,
) -> Result<proto::Workspace> {
    let action = format!(
        "set automatic updates of workspace {:?}",
        tags::shown(&req.name)
    );
    let mode = store::AutomaticUpdates::parse(&req.automatic_updates)
        .map_err(|e| CoordError::Invalid(format!("{action}: {e}")))?;
    api.hub.store.set_automatic_updates(&req.name, mode)?;
    get(api, proto::GetWorkspaceRequest { name: req.name })
}
