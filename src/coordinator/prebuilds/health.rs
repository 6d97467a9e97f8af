//! A failing pool's health as operators see it: the backoff and the hard
//! limit are logged once each (when they start, not every pass), and
//! `prebuilds reset` lifts a hard limit by recording a time after which
//! failed creates count again (failures are counted from the job history,
//! so the reset must be stored to survive a restart).

use super::Hub;
use super::plan::Pool;
use crate::coordinator::error::{CoordError, Result};
use crate::proto;

/// What the log last said about a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    Healthy,
    /// Backing off until then (ms since epoch).
    BackingOff(i64),
    HardLimited,
}

fn state(p: &Pool) -> Noted {
    if p.hard_limited {
        Noted::HardLimited
    } else if p.backoff_until > 0 {
        Noted::BackingOff(p.backoff_until)
    } else {
        Noted::Healthy
    }
}

/// Logs each pool's change of health since the last pass.
pub fn note(hub: &Hub, pools: &[Pool]) {
    let mut noted = hub
        .prebuilds
        .noted
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Pools of replaced versions are forgotten: a new version starts
    // healthy.
    noted.retain(|(version, preset), _| {
        pools
            .iter()
            .any(|p| p.slot.version_id == *version && p.slot.preset == *preset)
    });
    for p in pools {
        let key = (p.slot.version_id.clone(), p.slot.preset.clone());
        let now = state(p);
        let before = noted.insert(key, now).unwrap_or(Noted::Healthy);
        if before == now {
            continue;
        }
        let (template, preset) = (&p.slot.template, &p.slot.preset);
        match now {
            Noted::HardLimited => tracing::warn!(
                %template,
                %preset,
                failures = p.failures,
                hard_limit = p.slot.hard_limit,
                "prebuilds: hard limit reached, creates for this preset stop until a new template version is active or `provisionerd prebuilds reset {template} {preset}`"
            ),
            Noted::BackingOff(until) => tracing::info!(
                %template,
                %preset,
                failures = p.failures,
                wait_ms = until - crate::coordinator::store::now_ms(),
                "prebuilds: backing off after failed creates"
            ),
            Noted::Healthy if before == Noted::HardLimited => tracing::info!(
                %template,
                %preset,
                "prebuilds: hard limit lifted, creating again"
            ),
            Noted::Healthy => {}
        }
    }
}

/// `prebuilds reset TEMPLATE PRESET`: failed creates so far stop counting
/// (lifting a hard limit and any backoff); the reconciler runs at once.
pub fn reset(hub: &Hub, template: &str, preset: &str) -> Result<proto::PrebuildStatus> {
    let (slots, _) = super::assess(hub)?;
    if !slots
        .iter()
        .any(|s| s.template == template && s.preset == preset)
    {
        return Err(CoordError::NotFound(format!(
            "reset prebuilds: template {template:?} has no preset {preset:?} with prebuilds in its active version"
        )));
    }
    hub.store.reset_prebuilds(template, preset)?;
    tracing::info!(%template, %preset, "prebuilds: reset, failed creates so far no longer count");
    // The leader's reconciler acts, whichever replica took the reset.
    hub.cluster
        .publish(crate::coordinator::cluster::Event::ReconcilePrebuilds);
    super::status(hub)
}
