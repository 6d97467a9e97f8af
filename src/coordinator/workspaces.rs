//! The one code path that creates a workspace or enqueues a build of one:
//! `Admin.CreateWorkspace`/`BuildWorkspace` and the prebuild reconciler
//! both come through here, so a prebuild is built exactly as a person's
//! workspace with owner `prebuilds` would be.

use std::collections::BTreeMap;

use super::Hub;
use super::error::{CoordError, Result};
use super::store::{self, AutomaticUpdates, VersionRow, WorkspaceRow};
use super::templates;
use crate::proto::Transition;
use crate::tags;

/// A workspace to create (its first build is a start).
pub struct NewWorkspace<'a> {
    pub name: &'a str,
    pub template: &'a str,
    pub owner: &'a str,
    pub variables: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
    pub preset: Option<&'a str>,
    /// Created by the prebuild reconciler (which only ever judges its own).
    pub reconciled: bool,
    /// A version (name or id) to build from instead of the active one.
    pub version: Option<&'a str>,
    pub automatic_updates: AutomaticUpdates,
}

/// The version a create builds from: `version` (name or id) if given —
/// refused, with the reason, unless its import succeeded and it is not
/// archived — else the template's active one.
pub fn version_for_create(
    hub: &Hub,
    action: &str,
    template: &str,
    version: Option<&str>,
) -> Result<VersionRow> {
    if let Some(v) = version {
        let info = hub.store.find_version(template, v).map_err(|e| match e {
            CoordError::NotFound(m) => CoordError::NotFound(format!("{action}: {m}")),
            e => e,
        })?;
        if let Some(why) = store::unusable(&info) {
            return Err(CoordError::FailedPrecondition(format!(
                "{action}: template {template:?} {why}"
            )));
        }
        return hub.store.version(&info.id);
    }
    let active = hub.store.template(template)?.active_version_id;
    let version_id = active.ok_or_else(|| {
        CoordError::FailedPrecondition(format!(
            "{action}: template {template:?} has no active version: no import has succeeded yet, \
             or its versions were pushed with --activate=false (see `provisionerd templates \
             versions list {template}`; make one active with `provisionerd templates versions \
             promote {template} VERSION`)"
        ))
    })?;
    hub.store.version(&version_id)
}

/// Creates the workspace with the template's active version (or the one
/// asked for) and enqueues its first build. Returns (workspace id, job id).
pub fn create(hub: &Hub, req: &NewWorkspace<'_>) -> Result<(String, String)> {
    tags::check_name("workspace", req.name).map_err(CoordError::Invalid)?;
    tags::check_name("owner", req.owner).map_err(CoordError::Invalid)?;
    let action = format!("create workspace {:?}", req.name);
    let version = version_for_create(hub, &action, req.template, req.version)?;
    check_variables(&version, &req.variables)?;
    let workspace_id = store::new_id();
    let mut variables = version.var_values.clone();
    variables.extend(req.variables.clone());
    let build = templates::plan(&templates::Plan {
        action: &action,
        workspace_name: req.name,
        workspace_id: &workspace_id,
        owner: req.owner,
        transition: Transition::Start,
        version: &version,
        variables: &variables,
        given: &req.parameters,
        preset: req.preset,
        previous: None,
    })?;
    let created = hub.store.create_workspace(
        &workspace_id,
        req.name,
        req.owner,
        &version,
        &req.variables,
        &build,
        req.reconciled,
        req.automatic_updates,
    )?;
    hub.job_queued(&build.tags);
    Ok(created)
}

/// Enqueues a start, stop or destroy of an existing workspace, initiated
/// by its owner. A start moves it to the template's active version when
/// its automatic updates are `always` or `update` asks for it (`workspaces
/// update`), and keeps its version otherwise; stop and destroy always run
/// with its own version. Returns the job id.
pub fn build(
    hub: &Hub,
    ws: &WorkspaceRow,
    transition: Transition,
    given: &BTreeMap<String, String>,
    update: bool,
) -> Result<String> {
    let moves = transition == Transition::Start
        && (update || ws.automatic_updates == AutomaticUpdates::Always);
    let version_id = match (&ws.active_version_id, moves) {
        (Some(active), true) => active.clone(),
        (None, true) if update => {
            return Err(CoordError::FailedPrecondition(format!(
                "update workspace {:?}: template {:?} has no active version to move it to \
                 (make one active with `provisionerd templates versions promote {} VERSION`)",
                ws.name, ws.template, ws.template
            )));
        }
        // `always` without an active version: the start keeps its own.
        _ => ws.template_version_id.clone(),
    };
    let version = hub.store.version(&version_id)?;
    let build = templates::plan_existing(ws, &version, transition, given)?;
    let job_id = hub
        .store
        .enqueue_build(ws, &version, transition, &ws.owner, &build)?;
    hub.job_queued(&build.tags);
    Ok(job_id)
}

/// The reconciler's destroy of prebuild `ws`: enqueued only while it is
/// still the reconciler's and idle (decided on the row in the store), so a
/// prebuild being claimed is never destroyed. Returns the job id.
pub fn destroy_prebuild(hub: &Hub, ws: &WorkspaceRow) -> Result<String> {
    let version = hub.store.version(&ws.template_version_id)?;
    let build = templates::plan_existing(ws, &version, Transition::Destroy, &BTreeMap::new())?;
    let job_id = hub.store.destroy_prebuild(ws, &build)?;
    hub.job_queued(&build.tags);
    Ok(job_id)
}

/// Checks workspace variable values against what the template declares:
/// unknown names and missing required values are refused up front rather
/// than failing inside terraform later.
fn check_variables(version: &VersionRow, values: &BTreeMap<String, String>) -> Result<()> {
    let Some(declared) = &version.declared else {
        return Ok(());
    };
    for name in values.keys() {
        if !declared.iter().any(|d| &d.name == name) {
            let known: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
            return Err(CoordError::Invalid(format!(
                "variable {name:?}: template {:?} declares no such variable (declared: {})",
                version.template,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    // Simple types are checked here so a typo fails now, not in plan.
    for d in declared {
        let Some(value) = values.get(&d.name) else {
            continue;
        };
        let ok = match d.r#type.as_str() {
            "number" => value.trim().parse::<f64>().is_ok(),
            "bool" => matches!(value.as_str(), "true" | "false"),
            _ => true,
        };
        if !ok {
            return Err(CoordError::Invalid(format!(
                "variable {:?}: {value:?} is not a {}",
                d.name, d.r#type
            )));
        }
    }
    let missing: Vec<&str> = declared
        .iter()
        .filter(|d| {
            d.required && !values.contains_key(&d.name) && !version.var_values.contains_key(&d.name)
        })
        .map(|d| d.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(CoordError::Invalid(format!(
            "template {:?} requires a value for: {} (pass --var NAME=VALUE)",
            version.template,
            missing.join(", ")
        )));
    }
    Ok(())
}
