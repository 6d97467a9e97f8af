//! A person's create that may claim a prebuilt workspace: the preset is
//! chosen as Coder's CLI does (none given: the template's default preset;
//! `none`: no preset), and when it has prebuilds the store hands over the
//! oldest eligible one (see `store::claim`) with its claim build, else the
//! workspace is built anew through `workspaces::create`.

use std::time::Instant;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::Hub;
use super::error::Result;
use super::metrics::prebuilds::coder_labels;
use super::store::{ClaimWanted, Claimed, PREBUILDS_OWNER, VersionRow};
use super::templates;
use super::workspaces::{self, NewWorkspace};
use crate::proto::Transition;
use crate::tags;
use crate::template::TemplateMeta;

/// `--preset none`: explicitly no preset (Coder's CLI word).
pub const NO_PRESET: &str = "none";

/// Bucket bounds (seconds) of the claim duration histogram.
const CLAIM_BOUNDS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

type ClaimLabels = Vec<(&'static str, String)>;

/// `coderd_prebuilt_workspace_claim_duration_seconds`: how long the claim
/// operation (choosing, taking and enqueueing) took, per pool.
pub type ClaimDurations = Family<ClaimLabels, Histogram, fn() -> Histogram>;

pub fn claim_durations() -> ClaimDurations {
    Family::new_with_constructor(|| Histogram::new(CLAIM_BOUNDS))
}

/// A create's outcome.
#[derive(Debug, Clone)]
pub struct Created {
    pub workspace_id: String,
    pub job_id: String,
    /// The prebuild it claimed; `None`: built anew.
    pub claimed: Option<Claimed>,
    /// The preset has prebuilds: a claim was tried.
    pub claim_tried: bool,
}

/// Creates workspace `req` for a person, claiming an eligible prebuild of
/// its preset when there is one. `default_preset`: no preset named means
/// the template's default one.
pub fn create_or_claim(hub: &Hub, req: &NewWorkspace<'_>, default_preset: bool) -> Result<Created> {
    let started = Instant::now();
    // Read only when a default preset is to be found or a claim may be
    // tried; a plain create reads the template once, in `workspaces::create`.
    let needed = match req.preset {
        Some(NO_PRESET) => false,
        Some(_) => claimable(req),
        None => default_preset,
    };
    let active = if needed {
        chosen_version(hub, req)?
    } else {
        None
    };
    let meta = active.as_ref().map(|(_, m, _)| m);
    let preset = choose_preset(req, default_preset, meta);
    let chosen_id = active.as_ref().map(|(v, _, _)| v.id.clone());
    let fresh = NewWorkspace {
        preset: preset.as_deref(),
        // The version read here, not the active one again: a promote in
        // between must not pair this version's preset with another.
        version: chosen_id.as_deref().or(req.version),
        variables: req.variables.clone(),
        parameters: req.parameters.clone(),
        ..*req
    };
    let (claim_tried, claimed) = try_claim(hub, &fresh, active)?;
    if let Some(claimed) = claimed {
        let labels = coder_labels(req.template, preset.as_deref().unwrap_or_default());
        hub.claim_durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        hub.kick();
        tracing::info!(
            workspace = %req.name, owner = %req.owner, from = %claimed.from,
            job = %claimed.job_id, "prebuilds: claimed"
        );
        return Ok(Created {
            workspace_id: claimed.workspace_id.clone(),
            job_id: claimed.job_id.clone(),
            claimed: Some(claimed),
            claim_tried,
        });
    }
    let (workspace_id, job_id) = workspaces::create(hub, &fresh)?;
    Ok(Created {
        workspace_id,
        job_id,
        claimed: None,
        claim_tried,
    })
}

/// The preset a create uses: the one named, none for `none`, else (with
/// `default_preset`) the active version's default preset, if any. Errors
/// (no template, no active version) are left to `workspaces::create`.
fn choose_preset(
    req: &NewWorkspace<'_>,
    default_preset: bool,
    meta: Option<&TemplateMeta>,
) -> Option<String> {
    match req.preset {
        Some(NO_PRESET) => None,
        Some(p) => Some(p.to_string()),
        None if !default_preset => None,
        None => meta?
            .presets
            .iter()
            .find(|p| p.default)
            .map(|p| p.name.clone()),
    }
}

/// Whether a create may take a prebuild at all: not the reconciler's own,
/// not for `prebuilds`, and without `--var` values of its own (prebuilds
/// were built with the template's).
fn claimable(req: &NewWorkspace<'_>) -> bool {
    !req.reconciled && req.owner != PREBUILDS_OWNER && req.variables.is_empty()
}

/// The version the create builds from and its metadata, read once per
/// create, and whether it is the template's active one (only then may a
/// prebuild be claimed: prebuilds are of the active version). `None` when
/// there is none (no template, nothing imported yet, no metadata):
/// `workspaces::create` then reports what is missing. A version asked for
/// that cannot be used is refused here, with the reason.
fn chosen_version(hub: &Hub, req: &NewWorkspace<'_>) -> Result<Option<Chosen>> {
    let Ok(template) = hub.store.template(req.template) else {
        return Ok(None);
    };
    let active = template.active_version_id;
    let version = match (req.version, &active) {
        (Some(v), _) => {
            let action = format!("create workspace {:?}", req.name);
            workspaces::version_for_create(hub, &action, req.template, Some(v))?
        }
        (None, Some(active)) => hub.store.version(active)?,
        (None, None) => return Ok(None),
    };
    let is_active = active.as_deref() == Some(version.id.as_str());
    Ok(templates::meta_of(&version)?.map(|meta| (version, meta, is_active)))
}

/// The version a create builds from, its metadata, and whether it was the
/// active one when read (the claim checks that again, in its transaction).
type Chosen = (VersionRow, TemplateMeta, bool);

/// Claims a prebuild for `req` if its preset has prebuilds and one is
/// eligible. Workspaces with their own `--var` values are not claimed
/// (prebuilds were built with the template's). Returns whether a claim
/// was tried (the preset has prebuilds), and the claim.
fn try_claim(
    hub: &Hub,
    req: &NewWorkspace<'_>,
    active: Option<Chosen>,
) -> Result<(bool, Option<Claimed>)> {
    let Some(preset) = req.preset else {
        return Ok((false, None));
    };
    if !claimable(req) {
        return Ok((false, None));
    }
    let Some((version, meta, is_active)) = active else {
        return Ok((false, None));
    };
    if !is_active {
        // Built from the version asked for; prebuilds are of another.
        return Ok((false, None));
    }
    let Some(pb) = meta
        .presets
        .iter()
        .find(|p| p.name == preset)
        .and_then(|p| p.prebuilds.as_ref())
    else {
        return Ok((false, None));
    };
    tags::check_name("workspace", req.name).map_err(super::error::CoordError::Invalid)?;
    tags::check_name("owner", req.owner).map_err(super::error::CoordError::Invalid)?;
    let action = format!("create workspace {:?}", req.name);
    let variables = version.var_values.clone();
    let claimed = hub.store.claim_prebuild(
        &ClaimWanted {
            template: req.template,
            version: &version,
            preset,
            ttl_seconds: pb.ttl_seconds.unwrap_or(0),
            name: req.name,
            owner: req.owner,
            automatic_updates: req.automatic_updates,
        },
        // The claim build is planned for its new owner and name, so the
        // template's workspace tags route it as a person's build.
        &|c| {
            templates::plan(&templates::Plan {
                action: &action,
                workspace_name: req.name,
                workspace_id: &c.id,
                owner: req.owner,
                transition: Transition::Start,
                version: &version,
                variables: &variables,
                given: &req.parameters,
                preset: Some(preset),
                previous: Some(&c.parameters),
            })
        },
    )?;
    Ok((true, claimed))
}
