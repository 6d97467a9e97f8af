//! Workspaces: create (or claim a prebuild), build, get.

use std::collections::BTreeMap;

use super::{AdminApi, DEFAULT_OWNER, convert};
use crate::coordinator::bounds;
use crate::coordinator::claim;
use crate::coordinator::error::{CoordError, Result};
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
    let job_id = workspaces::build(&api.hub, &ws, transition, &given)?;
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
