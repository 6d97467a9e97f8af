//! The prebuild pools on `/metrics` under Coder's names, types and labels
//! (`template_name`, `preset_name`, `organization_name` = `default`), so
//! dashboards and alerts written for Coder work unchanged. Values come
//! from the store snapshot: the counters from the job history (so they
//! survive restarts), the gauges from the reconciler's own assessment.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::family::Family;

use super::{Labels, gauges};
use crate::coordinator::store::PrebuildCount;

/// Coder's labels for a preset's series (one organization here).
pub(crate) fn coder_labels(template: &str, preset: &str) -> Labels {
    vec![
        ("template_name", template.to_string()),
        ("preset_name", preset.to_string()),
        ("organization_name", "default".to_string()),
    ]
}

/// The prebuild pools under Coder's metric names, types and labels.
pub(super) fn encode(
    e: &mut DescriptorEncoder,
    status: &crate::proto::PrebuildStatus,
    counts: Vec<PrebuildCount>,
) -> std::fmt::Result {
    counter(
        e,
        "coderd_prebuilt_workspaces_created",
        "Prebuilt workspaces the reconciler created (create builds started), failed ones included.",
        counts
            .iter()
            .map(|c| (c.template.as_str(), c.preset.as_str(), c.created)),
    )?;
    counter(
        e,
        "coderd_prebuilt_workspaces_failed",
        "Prebuilt workspaces whose create build failed.",
        counts
            .iter()
            .map(|c| (c.template.as_str(), c.preset.as_str(), c.failed)),
    )?;
    let pools = &status.presets;
    let series = |f: fn(&crate::proto::PrebuildPreset) -> i64| {
        pools
            .iter()
            .map(move |p| (coder_labels(&p.template, &p.preset), f(p)))
    };
    gauges(
        e,
        "coderd_prebuilt_workspaces_desired",
        "Prebuilt workspaces wanted now per preset of an active template version (schedule applied).",
        series(|p| i64::from(p.desired)),
    )?;
    gauges(
        e,
        "coderd_prebuilt_workspaces_running",
        "Prebuilt workspaces whose latest build is a succeeded start (expired ones not yet deleted included).",
        series(|p| i64::from(p.running)),
    )?;
    gauges(
        e,
        "coderd_prebuilt_workspaces_eligible",
        "Running prebuilt workspaces that are not expired and have no build in flight: claimable.",
        series(|p| i64::from(p.eligible)),
    )?;
    gauges(
        e,
        "coderd_prebuilt_workspaces_preset_hard_limited",
        "1 while a preset's consecutive failed creates are at the hard limit (no creates).",
        series(|p| i64::from(p.hard_limited)),
    )
}

/// Claims by people: `coderd_prebuilt_workspaces_claimed_total` and, of
/// those, the claim builds that replaced resources
/// (`coderd_prebuilt_workspaces_resource_replacements_total`); (template,
/// preset, count) rows counted from the store, so they survive a restart.
pub(super) fn encode_claims(
    e: &mut DescriptorEncoder,
    claims: &[(String, String, u64)],
    replacements: &[(String, String, u64)],
) -> std::fmt::Result {
    counter(
        e,
        "coderd_prebuilt_workspaces_claimed",
        "Prebuilt workspaces claimed by people.",
        claims.iter().map(|(t, p, n)| (t.as_str(), p.as_str(), *n)),
    )?;
    counter(
        e,
        "coderd_prebuilt_workspaces_resource_replacements",
        "Claims of prebuilt workspaces whose build replaced resources.",
        replacements
            .iter()
            .map(|(t, p, n)| (t.as_str(), p.as_str(), *n)),
    )
}

/// One counter family under Coder's labels, from (template, preset, value)
/// rows (the encoder appends `_total`).
fn counter<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (&'a str, &'a str, u64)>,
) -> std::fmt::Result {
    let family = Family::<Labels, prometheus_client::metrics::counter::Counter>::default();
    for (template, preset, n) in rows {
        family
            .get_or_create(&coder_labels(template, preset))
            .inc_by(n);
    }
    let m = e.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(m)
}
