//! The reconciler's decisions as a pure function of what the store holds:
//! per preset pool, how many prebuilt workspaces are wanted, running and
//! being created, whether creates are backing off, and which workspaces
//! to create or destroy. The status RPC and `/metrics` read the same
//! assessment the reconciler acts on.

use std::collections::HashMap;
use std::time::Duration;

use crate::coordinator::store::{JobKind, JobStatus, PrebuildWorkspace};
use crate::proto::Transition;

/// The longest wait between creates of a failing pool (at least one
/// reconcile interval).
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// One preset with `prebuilds` of a template's active version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub template: String,
    pub version_id: String,
    pub preset: String,
    pub desired: u32,
    /// `expiration_policy { ttl }`; 0 or none: never expires.
    pub ttl_seconds: Option<u64>,
    /// `--prebuild-failure-hard-limit`: after this many consecutive failed
    /// creates the pool creates nothing more (0: no limit).
    pub hard_limit: u32,
}

/// A pool as assessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub slot: Slot,
    /// Built (latest build a succeeded start), expired ones not yet
    /// destroyed included.
    pub running: u32,
    /// Running and not expired: what a claim may take.
    pub eligible: u32,
    pub in_flight: u32,
    /// Consecutive failed creates (newest first until a success).
    pub failures: u32,
    /// Creates wait until then (ms since epoch); 0: no backoff.
    pub backoff_until: i64,
    /// `failures` reached the hard limit: no creates until a new version
    /// or `prebuilds reset`.
    pub hard_limited: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create {
        slot: usize,
    },
    /// Destroy the workspace (by name), and why.
    Destroy {
        workspace: String,
        why: &'static str,
    },
}

#[derive(Debug, Default)]
pub struct Assessment {
    pub pools: Vec<Pool>,
    pub actions: Vec<Action>,
}

/// Create history of a pool, newest first: (job status, finished_at).
pub type History = Vec<(JobStatus, Option<i64>)>;

fn in_flight(status: JobStatus) -> bool {
    !status.is_finished()
}

/// How long a pool waits after `failures` consecutive failed creates:
/// the interval, doubling with each further failure, at most
/// [`MAX_BACKOFF`] (or the interval, if longer).
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (failures - 1).min(16);
    interval
        .saturating_mul(factor)
        .min(MAX_BACKOFF.max(interval))
}

/// Decides what to do. `history[i]` is the create history of `slots[i]`.
pub fn assess(
    slots: Vec<Slot>,
    workspaces: &[PrebuildWorkspace],
    history: &[History],
    now_ms: i64,
    interval: Duration,
) -> Assessment {
    let mut out = Assessment::default();
    let index: HashMap<(&str, &str), usize> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.version_id.as_str(), s.preset.as_str()), i))
        .collect();
    let mut running: Vec<Vec<&PrebuildWorkspace>> = vec![Vec::new(); slots.len()];
    let mut busy = vec![0u32; slots.len()];
    let mut expired = vec![0u32; slots.len()];
    for pw in workspaces {
        let Some(job) = &pw.latest else { continue };
        let destroy = |why| Action::Destroy {
            workspace: pw.workspace.name.clone(),
            why,
        };
        // A destroy an operator canceled (the runbook's bulk cancel takes
        // every pending job `prebuilds` initiated) is issued again, or the
        // workspace would be stranded; a failed one is left for an
        // operator.
        if job.kind == JobKind::WorkspaceBuild(Transition::Destroy)
            && job.status == JobStatus::Canceled
        {
            out.actions.push(destroy("its destroy was canceled"));
            continue;
        }
        // Destroys in progress (or failed: left for an operator) and
        // stopped workspaces (parked for investigation) are not touched.
        if job.kind != JobKind::WorkspaceBuild(Transition::Start) {
            continue;
        }
        let preset = pw.workspace.preset.as_deref().unwrap_or_default();
        let slot = index
            .get(&(job.template_version_id.as_str(), preset))
            .copied();
        // A create the lease reaper failed may still be applying on its
        // daemon: it counts as in flight (neither destroyed nor replaced)
        // until the daemon reports or the grace runs out (see
        // `PrebuildWorkspace::awaiting_late`).
        let status = if pw.awaiting_late {
            JobStatus::Running
        } else {
            job.status
        };
        match (slot, status) {
            (Some(i), s) if in_flight(s) => busy[i] += 1,
            // Let a create of an outdated version finish before removing it.
            (None, s) if in_flight(s) => {}
            (None, _) => out.actions.push(destroy(
                "its template version or preset no longer has prebuilds",
            )),
            (Some(i), JobStatus::Succeeded) => {
                let ttl = slots[i].ttl_seconds.unwrap_or(0);
                let age_ms = now_ms - pw.workspace.created_at;
                if ttl > 0 && age_ms > (ttl as i64).saturating_mul(1000) {
                    expired[i] += 1;
                    out.actions.push(destroy("expired (older than its ttl)"));
                } else {
                    running[i].push(pw);
                }
            }
            (Some(_), _) => out
                .actions
                .push(destroy("its create failed or was canceled")),
        }
    }
    for (i, slot) in slots.into_iter().enumerate() {
        let have = running[i].len() as u32 + busy[i];
        if have > slot.desired {
            // Extras: the oldest running ones go first, as Coder does —
            // they are the nearest to expiring and the most likely to have
            // drifted (in-flight creates are left to finish, then counted).
            let mut extra = running[i].clone();
            extra.sort_by_key(|pw| (pw.workspace.created_at, pw.workspace.name.clone()));
            let surplus = (have - slot.desired).min(extra.len() as u32) as usize;
            for pw in extra.into_iter().take(surplus) {
                out.actions.push(Action::Destroy {
                    workspace: pw.workspace.name.clone(),
                    why: "more prebuilds than desired",
                });
            }
        }
        let finished = history[i].iter().filter(|(s, _)| !in_flight(*s));
        let mut failures = 0u32;
        let mut last_failure = None;
        for (status, finished_at) in finished {
            match status {
                JobStatus::Succeeded => break,
                // An operator's cancel (the runbook) is not the template
                // failing.
                JobStatus::Canceled => continue,
                _ => {}
            }
            failures += 1;
            last_failure = last_failure.or(*finished_at);
        }
        let hard_limited = slot.hard_limit > 0 && failures >= slot.hard_limit;
        let backoff_until = match last_failure {
            // A hard-limited pool waits for a new version or a reset, not
            // for a time.
            _ if hard_limited => 0,
            Some(at) if failures > 0 => at + backoff(interval, failures).as_millis() as i64,
            _ => 0,
        };
        let mut missing = slot.desired.saturating_sub(have);
        if failures > 0 {
            // A failing pool probes with one create at a time.
            missing = missing.min(1u32.saturating_sub(busy[i]));
        }
        if now_ms >= backoff_until && !hard_limited {
            for _ in 0..missing {
                out.actions.push(Action::Create { slot: i });
            }
        }
        out.pools.push(Pool {
            running: running[i].len() as u32 + expired[i],
            eligible: running[i].len() as u32,
            hard_limited,
            in_flight: busy[i],
            failures,
            backoff_until: if now_ms < backoff_until {
                backoff_until
            } else {
                0
            },
            slot,
        });
    }
    out
}

/// A prebuilt workspace's name: `prebuild-<template>-<preset>-<6 chars>`,
/// within the 64-character name rule (long names are shortened).
pub fn workspace_name(template: &str, preset: &str, random: &str) -> String {
    fn slug(s: &str, max: usize) -> String {
        let mut out = String::new();
        for c in s.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
        }
        let mut out: String = out.chars().take(max).collect();
        while out.ends_with('-') {
            out.pop();
        }
        if out.is_empty() { "x".into() } else { out }
    }
    // "prebuild-" 9 + 2 dashes + 6 random = 17; 47 left for the two parts.
    format!(
        "prebuild-{}-{}-{random}",
        slug(template, 24),
        slug(preset, 23)
    )
}

#[cfg(test)]
mod tests;
