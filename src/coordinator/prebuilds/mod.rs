//! Prebuild pools: one reconciler task keeps, for every template's active
//! version and every preset with `prebuilds`, the desired number of
//! prebuilt workspaces (owner `prebuilds`) — creating missing ones through
//! the same path as `Admin.CreateWorkspace`, destroying extras, expired
//! ones and those of outdated versions, backing off a failing pool. The
//! pause flag lives in the store (`settings`), so a restart stays paused.
//!
//! Decisions are a pure function of the store (`plan::assess`), so the
//! status RPC and `/metrics` show exactly what the reconciler acts on.

mod health;
pub mod plan;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Hub;
use super::error::Result;
use super::store::{self, PREBUILDS_OWNER};
use super::templates;
use super::workspaces;
use crate::proto;
pub use health::reset;
use plan::{Action, Assessment, Slot};

/// How many past creates of a pool are read to count its failures.
const HISTORY: u32 = 32;

/// How many job leases a create failed as lost stays in flight waiting
/// for its daemon's late report.
const LOST_GRACE_LEASES: u32 = 4;

/// What the reconciler shares with the RPCs and `/metrics`.
pub struct Prebuilds {
    /// `None`: no reconciler runs in this coordinator.
    pub interval: Option<Duration>,
    /// `--prebuild-failure-hard-limit` (0: off).
    pub hard_limit: u32,
    /// What the log last said about each pool's health, so a backoff or
    /// hard limit is logged once, not every pass.
    noted: Mutex<HashMap<(String, String), health::Noted>>,
    /// Wakes the reconciler early (on resume).
    wake: Notify,
    reconciled_at: AtomicI64,
    /// Why the last attempt to create for a pool failed, by
    /// (version, preset); cleared by a create that worked.
    errors: Mutex<HashMap<(String, String), String>>,
    /// Held while a pass acts and while the pause flag is written, so a
    /// pause that returned means no further creates or destroys.
    acting: Mutex<()>,
}

impl Prebuilds {
    pub fn new(interval: Option<Duration>, hard_limit: u32) -> Prebuilds {
        Prebuilds {
            interval,
            hard_limit,
            noted: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            reconciled_at: AtomicI64::new(0),
            errors: Mutex::new(HashMap::new()),
            acting: Mutex::new(()),
        }
    }

    /// Wakes the reconciler for a pass now (it acts if this replica leads).
    pub fn wake_up(&self) {
        self.wake.notify_one();
    }

    fn acting(&self) -> std::sync::MutexGuard<'_, ()> {
        self.acting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn errors(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), String>> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pools as the store shows them now, and what to do about them.
pub fn assess(hub: &Hub) -> Result<(Vec<Slot>, Assessment)> {
    let now = chrono::Utc::now();
    let mut slots = Vec::new();
    for t in hub.store.list_templates()? {
        let Some(active) = t.active_version_id else {
            continue;
        };
        let version = hub.store.version(&active)?;
        let Some(meta) = templates::meta_of(&version)? else {
            continue;
        };
        for p in meta.presets {
            let Some(pb) = p.prebuilds else { continue };
            slots.push(Slot {
                template: t.name.clone(),
                version_id: version.id.clone(),
                preset: p.name,
                desired: pb.desired_at(now),
                ttl_seconds: pb.ttl_seconds,
                hard_limit: hub.prebuilds.hard_limit,
            });
        }
    }
    let mut workspaces = hub.store.prebuild_workspaces()?;
    // A lost create's daemon gets this long to report before the
    // workspace is judged by its (failed) status.
    let grace_ms = hub.job_lease.saturating_mul(LOST_GRACE_LEASES).as_millis() as i64;
    for pw in &mut workspaces {
        let finished = pw.latest.as_ref().and_then(|j| j.finished_at);
        if pw.awaiting_late && finished.is_some_and(|at| now.timestamp_millis() - at > grace_ms) {
            pw.awaiting_late = false;
        }
    }
    let history = slots
        .iter()
        .map(|s| {
            let since = hub.store.prebuild_reset_at(&s.template, &s.preset)?;
            // Enough history to see the hard limit reached.
            let limit = HISTORY.max(s.hard_limit);
            hub.store
                .prebuild_creates(&s.version_id, &s.preset, limit, since)
        })
        .collect::<Result<Vec<_>>>()?;
    let interval = hub.prebuilds.interval.unwrap_or(DEFAULT_INTERVAL);
    let a = plan::assess(
        slots.clone(),
        &workspaces,
        &history,
        now.timestamp_millis(),
        interval,
    );
    Ok((slots, a))
}

/// The setting holding the last reconcile's time (ms), whichever replica
/// ran it.
const RECONCILED_AT: &str = "prebuilds_reconciled_at";

/// `--prebuild-reconcile-interval` unless set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// `PrebuildStatus` as of now.
pub fn status(hub: &Hub) -> Result<proto::PrebuildStatus> {
    let (_, a) = assess(hub)?;
    let errors = hub.prebuilds.errors();
    Ok(proto::PrebuildStatus {
        paused: hub.store.prebuilds_paused()?,
        interval_ms: hub.prebuilds.interval.map_or(0, |d| d.as_millis() as u64),
        // From the store: the leading replica reconciles, any may answer.
        reconciled_at: hub
            .store
            .setting(RECONCILED_AT)?
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| hub.prebuilds.reconciled_at.load(Ordering::Relaxed)),
        presets: a
            .pools
            .into_iter()
            .map(|p| proto::PrebuildPreset {
                error: errors
                    .get(&(p.slot.version_id.clone(), p.slot.preset.clone()))
                    .cloned()
                    .unwrap_or_default(),
                template: p.slot.template,
                preset: p.slot.preset,
                template_version_id: p.slot.version_id,
                desired: p.slot.desired,
                running: p.running,
                in_flight: p.in_flight,
                failures: p.failures,
                backoff_until: p.backoff_until,
                hard_limited: p.hard_limited,
                eligible: p.eligible,
            })
            .collect(),
    })
}

/// Pauses or resumes; a resume reconciles at once.
pub fn set_paused(hub: &Hub, paused: bool) -> Result<proto::PrebuildStatus> {
    {
        // Waits for a pass that is acting: after this, none acts until a
        // resume.
        let _acting = hub.prebuilds.acting();
        hub.store.set_prebuilds_paused(paused)?;
    }
    if paused {
        tracing::warn!(
            "prebuilds paused: the reconciler creates and deletes nothing until resumed"
        );
    } else {
        tracing::info!("prebuilds resumed");
        // The leader's reconciler acts, whichever replica took the resume.
        hub.cluster
            .publish(super::cluster::Event::ReconcilePrebuilds);
    }
    status(hub)
}

/// The reconciler: runs every `interval` (and at once on resume, and on
/// becoming the leader) until `shutdown`. The only code that creates or
/// destroys prebuilt workspaces; it acts only on the cluster's leader, so
/// one replica at a time does.
pub async fn run(hub: std::sync::Arc<Hub>, interval: Duration, shutdown: CancellationToken) {
    tracing::info!(interval = ?interval, "prebuilds: reconciler started");
    let mut leadership = hub.cluster.leadership();
    loop {
        if hub.cluster.is_leader() {
            // The store is synchronous: off the async workers.
            let pass = hub.clone();
            match tokio::task::spawn_blocking(move || reconcile(&pass)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "prebuilds: reconcile"),
                Err(e) => tracing::error!(error = %e, "prebuilds: reconcile task"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            _ = hub.prebuilds.wake.notified() => {}
            // A replica that never changes leadership (SQLite) has no
            // sender: the branch is then off.
            Ok(()) = leadership.changed() => {}
        }
    }
}

/// One pass: assess, then (unless paused) act.
pub fn reconcile(hub: &Hub) -> Result<()> {
    let (slots, a) = assess(hub)?;
    let now = store::now_ms();
    hub.prebuilds.reconciled_at.store(now, Ordering::Relaxed);
    hub.store.set_setting(RECONCILED_AT, &now.to_string())?;
    health::note(hub, &a.pools);
    let _acting = hub.prebuilds.acting();
    if hub.store.prebuilds_paused()? {
        if !a.actions.is_empty() {
            tracing::debug!(
                actions = a.actions.len(),
                "prebuilds: paused, leaving the pools as they are"
            );
        }
        return Ok(());
    }
    for action in a.actions {
        match action {
            Action::Create { slot } => create(hub, &slots[slot]),
            Action::Destroy { workspace, why } => destroy(hub, &workspace, why),
        }
    }
    Ok(())
}

fn create(hub: &Hub, slot: &Slot) {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let name = plan::workspace_name(&slot.template, &slot.preset, &random[..6]);
    let made = workspaces::create(
        hub,
        &workspaces::NewWorkspace {
            name: &name,
            template: &slot.template,
            owner: PREBUILDS_OWNER,
            variables: Default::default(),
            parameters: Default::default(),
            preset: Some(&slot.preset),
            reconciled: true,
            // The version the pool was assessed for (a promote since then
            // is seen by the next pass).
            version: Some(&slot.version_id),
            automatic_updates: Default::default(),
        },
    );
    let key = (slot.version_id.clone(), slot.preset.clone());
    match made {
        Ok((_, job)) => {
            tracing::info!(template = %slot.template, preset = %slot.preset, workspace = %name, %job, "prebuilds: creating");
            hub.prebuilds.errors().remove(&key);
        }
        Err(e) => {
            tracing::warn!(template = %slot.template, preset = %slot.preset, error = %e, "prebuilds: create failed");
            hub.prebuilds.errors().insert(key, e.to_string());
        }
    }
}

fn destroy(hub: &Hub, name: &str, why: &str) {
    let result = hub
        .store
        .workspace(name)
        .and_then(|ws| workspaces::destroy_prebuild(hub, &ws));
    match result {
        Ok(job) => tracing::info!(workspace = %name, why, %job, "prebuilds: destroying"),
        Err(e) => tracing::warn!(workspace = %name, why, error = %e, "prebuilds: destroy failed"),
    }
}
