//! A person's create that may claim a prebuilt workspace: the preset is
//! chosen as Coder's CLI does (none given: the template's default preset;
//! `none`: no preset), and when it has prebuilds the store hands over the
//! oldest eligible one (see `store::claim`) with its claim build, else the
//! workspace is built anew through `workspaces::create`.

use std::time::Instant;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::Hub;
use super::error::Result;
use super::store::{ClaimWanted, Claimed, PREBUILDS_OWNER};
use super::templates;
use super::workspaces::{self, NewWorkspace};
use crate::proto::Transition;
use crate::tags;

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

/// `coderd_prebuilt_workspaces_claimed_total` (Coder's name and labels),
/// counted from the store so it survives a restart.
pub(super) fn encode_claimed(
    encoder: &mut DescriptorEncoder,
    rows: Vec<(String, String, u64)>,
) -> std::fmt::Result {
    encode_counter(
        encoder,
        rows,
        "coderd_prebuilt_workspaces_claimed",
        "Prebuilt workspaces claimed by people.",
    )
}

/// `coderd_prebuilt_workspaces_resource_replacements_total`: claim builds
/// whose plan replaced a resource.
pub(super) fn encode_replacements(
    encoder: &mut DescriptorEncoder,
    rows: Vec<(String, String, u64)>,
) -> std::fmt::Result {
    encode_counter(
        encoder,
        rows,
        "coderd_prebuilt_workspaces_resource_replacements",
        "Claims of prebuilt workspaces whose build replaced resources.",
    )
}

fn encode_counter(
    encoder: &mut DescriptorEncoder,
    rows: Vec<(String, String, u64)>,
    name: &str,
    help: &str,
) -> std::fmt::Result {
    let family = Family::<ClaimLabels, Counter>::default();
    for (template, preset, n) in rows {
        family
            .get_or_create(&vec![
                ("template_name", template),
                ("preset_name", preset),
                ("organization_name", "default".to_string()),
            ])
            .inc_by(n);
    }
    let m = encoder.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(m)
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
    let preset = choose_preset(hub, req, default_preset)?;
    let fresh = NewWorkspace {
        preset: preset.as_deref(),
        variables: req.variables.clone(),
        parameters: req.parameters.clone(),
        ..*req
    };
    let (claim_tried, claimed) = try_claim(hub, &fresh)?;
    if let Some(claimed) = claimed {
        let labels = vec![
            ("template_name", req.template.to_string()),
            ("preset_name", preset.clone().unwrap_or_default()),
            ("organization_name", "default".to_string()),
        ];
        hub.claim_durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        hub.dispatcher.kick();
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
    hub: &Hub,
    req: &NewWorkspace<'_>,
    default_preset: bool,
) -> Result<Option<String>> {
    match req.preset {
        Some(NO_PRESET) => return Ok(None),
        Some(p) => return Ok(Some(p.to_string())),
        None if !default_preset => return Ok(None),
        None => {}
    }
    let Ok(template) = hub.store.template(req.template) else {
        return Ok(None);
    };
    let Some(active) = template.active_version_id else {
        return Ok(None);
    };
    let version = hub.store.version(&active)?;
    Ok(templates::meta_of(&version)?
        .and_then(|m| m.presets.into_iter().find(|p| p.default))
        .map(|p| p.name))
}

/// Claims a prebuild for `req` if its preset has prebuilds and one is
/// eligible. Workspaces with their own `--var` values are not claimed
/// (prebuilds were built with the template's). Returns whether a claim
/// was tried (the preset has prebuilds), and the claim.
fn try_claim(hub: &Hub, req: &NewWorkspace<'_>) -> Result<(bool, Option<Claimed>)> {
    let Some(preset) = req.preset else {
        return Ok((false, None));
    };
    if req.reconciled || req.owner == PREBUILDS_OWNER || !req.variables.is_empty() {
        return Ok((false, None));
    }
    let Ok(template) = hub.store.template(req.template) else {
        return Ok((false, None));
    };
    let Some(active) = template.active_version_id else {
        return Ok((false, None));
    };
    let version = hub.store.version(&active)?;
    let Some(meta) = templates::meta_of(&version)? else {
        return Ok((false, None));
    };
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
