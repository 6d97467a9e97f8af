//! What the operations surface reads and writes: the prebuild pause flag,
//! the readiness write probe, the prebuild pools' workspaces and create
//! history, and the aggregates `/metrics` shows (computed per scrape from
//! the jobs table, so they survive restarts and need no call-site hooks).

use std::collections::BTreeMap;

use super::db::params;

use super::catalog::workspaces_in;
use super::enqueue::PREBUILDS_OWNER;
use super::jobs::latest_build_in;
use super::{JobRow, JobStatus, Store, WorkspaceRow, now_ms, tags_from_json};
use crate::coordinator::error::Result;
use crate::tags;

const PAUSED_KEY: &str = "prebuilds_paused";
const PROBE_KEY: &str = "readiness_probe";

/// Jobs not yet finished, counted by status, tag set (as
/// [`tags::display`] prints it) and whether `prebuilds` initiated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobGauge {
    pub status: String,
    pub tags: String,
    pub prebuild: bool,
    pub count: u64,
}

/// A histogram read from the store: per-bucket counts for `bounds` (the
/// last entry is +Inf), the count and the sum in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Histo {
    pub labels: Vec<String>,
    pub count: u64,
    pub sum_seconds: f64,
    pub buckets: Vec<(f64, u64)>,
}

/// A live prebuilt workspace (created by the reconciler; its `state` is
/// not read) and its latest build.
#[derive(Debug, Clone)]
pub struct PrebuildWorkspace {
    pub workspace: WorkspaceRow,
    pub latest: Option<JobRow>,
    /// The latest build was failed by the lease reaper and its daemon has
    /// not reported yet (`lost = 1`): it may still be applying.
    pub awaiting_late: bool,
}

impl Store {
    /// Whether prebuild reconciliation is paused (kept across restarts).
    pub fn prebuilds_paused(&self) -> Result<bool> {
        Ok(self.setting(PAUSED_KEY)?.as_deref() == Some("true"))
    }

    pub fn set_prebuilds_paused(&self, paused: bool) -> Result<()> {
        self.set_setting(PAUSED_KEY, if paused { "true" } else { "false" })
    }

    /// A write that proves the database takes writes (readiness).
    pub fn probe_write(&self) -> Result<()> {
        self.set_setting(PROBE_KEY, &now_ms().to_string())
    }

    /// Live workspaces the reconciler created, each with its latest build
    /// (without their state: not needed, and possibly large).
    pub fn prebuild_workspaces(&self) -> Result<Vec<PrebuildWorkspace>> {
        self.read(|c| {
            let rows = workspaces_in(c, "deleted = 0 AND reconciled = 1", &[], "NULL", -1)?;
            rows.into_iter()
                .map(|w| {
                    let latest = latest_build_in(c, &w.id)?;
                    let awaiting_late = match &latest {
                        Some(j) if j.lost => {
                            let lost: i64 =
                                c.query_row("SELECT lost FROM jobs WHERE id = ?1", [&j.id], |r| {
                                    r.get(0)
                                })?;
                            lost == 1
                        }
                        _ => false,
                    };
                    Ok(PrebuildWorkspace {
                        latest,
                        awaiting_late,
                        workspace: w,
                    })
                })
                .collect()
        })
    }

    /// The newest `limit` create builds (first start builds of prebuilt
    /// workspaces) of a version's preset made after `since_ms` (a `prebuilds
    /// reset`), newest first: (status, finished_at). Claimed prebuilds'
    /// creates count too (their claim builds, initiated by the person, do
    /// not): a claim must not make a pool look as if it had been failing.
    pub fn prebuild_creates(
        &self,
        version_id: &str,
        preset: &str,
        limit: u32,
        since_ms: i64,
    ) -> Result<Vec<(JobStatus, Option<i64>)>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT j.status, j.finished_at FROM jobs j JOIN workspaces w ON w.id = j.workspace_id
             WHERE j.initiator = ?1 AND (w.reconciled = 1 OR w.claimed_from IS NOT NULL)
               AND w.preset = ?3 AND j.template_version_id = ?2
               AND j.type = 'workspace_build' AND j.transition = 'start'
               AND j.created_at > ?5
             ORDER BY j.created_at DESC, j.rowid DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![PREBUILDS_OWNER, version_id, preset, limit, since_ms],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Unfinished jobs by status, tag set and initiator kind.
    pub fn job_gauges(&self) -> Result<Vec<JobGauge>> {
        let raw: Vec<(String, String, bool, i64)> = {
            let conn = self.conn()?;
            let mut stmt = conn.prepare(
                "SELECT status, tags, initiator = ?1, COUNT(*) FROM jobs
                 WHERE status IN ('pending', 'running', 'canceling')
                 GROUP BY 1, 2, 3",
            )?;
            let rows = stmt.query_map([PREBUILDS_OWNER], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        // Two JSON spellings of one tag set would be one series.
        let mut merged: BTreeMap<(String, String, bool), u64> = BTreeMap::new();
        for (status, tags_json, prebuild, n) in raw {
            let shown = tags::display(&tags_from_json(&tags_json));
            *merged.entry((status, shown, prebuild)).or_default() += n.max(0) as u64;
        }
        Ok(merged
            .into_iter()
            .map(|((status, tags, prebuild), count)| JobGauge {
                status,
                tags,
                prebuild,
                count,
            })
            .collect())
    }

    /// Finished jobs by type and outcome: how many (labels, count).
    pub fn job_outcomes(&self) -> Result<Vec<(String, String, u64)>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT type, status, COUNT(*) FROM jobs
             WHERE status IN ('succeeded', 'failed', 'canceled') GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Run time (acknowledged → finished) of finished jobs that ran, by
    /// type and outcome.
    pub fn job_durations(&self, bounds: &[f64]) -> Result<Vec<Histo>> {
        self.histograms(
            "finished_at - started_at",
            "type, status",
            2,
            "status IN ('succeeded', 'failed', 'canceled') AND started_at IS NOT NULL
             AND finished_at IS NOT NULL",
            bounds,
        )
    }

    /// Queue wait (created → acknowledged) of jobs a daemon took, by
    /// initiator kind (`prebuild` or `human`).
    pub fn queue_waits(&self, bounds: &[f64]) -> Result<Vec<Histo>> {
        self.histograms(
            "started_at - created_at",
            &format!("CASE WHEN initiator = '{PREBUILDS_OWNER}' THEN 'prebuild' ELSE 'human' END"),
            1,
            "started_at IS NOT NULL",
            bounds,
        )
    }

    /// One aggregate query: per group, the count, the sum and how many
    /// values fall at or under each bound (`value_ms` in milliseconds).
    fn histograms(
        &self,
        value_ms: &str,
        group: &str,
        group_columns: usize,
        filter: &str,
        bounds: &[f64],
    ) -> Result<Vec<Histo>> {
        let under: Vec<String> = bounds
            .iter()
            .map(|b| {
                format!(
                    "SUM(CASE WHEN ({value_ms}) <= {} THEN 1 ELSE 0 END)",
                    b * 1000.0
                )
            })
            .collect();
        let sql = format!(
            "SELECT {group}, COUNT(*), CAST(COALESCE(SUM({value_ms}), 0) AS BIGINT), {} FROM jobs
             WHERE {filter} GROUP BY {group} ORDER BY {group}",
            under.join(", ")
        );
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| {
            let mut labels = Vec::new();
            for i in 0..group_columns {
                labels.push(r.get::<_, String>(i)?);
            }
            let count = r.get::<_, i64>(group_columns)?.max(0) as u64;
            let sum_ms: i64 = r.get(group_columns + 1)?;
            let mut buckets = Vec::with_capacity(bounds.len() + 1);
            let mut below = 0u64;
            for (i, b) in bounds.iter().enumerate() {
                let cumulative = r.get::<_, i64>(group_columns + 2 + i)?.max(0) as u64;
                buckets.push((*b, cumulative.saturating_sub(below)));
                below = cumulative;
            }
            buckets.push((f64::INFINITY, count.saturating_sub(below)));
            Ok(Histo {
                labels,
                count,
                sum_seconds: sum_ms as f64 / 1000.0,
                buckets,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Created and failed prebuild creates of one (template, preset), for the
/// `coderd_prebuilt_workspaces_{created,failed}_total` counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrebuildCount {
    pub template: String,
    pub preset: String,
    pub created: u64,
    pub failed: u64,
}

fn reset_key(template: &str, preset: &str) -> String {
    // Newlines cannot occur in template or preset names.
    format!("prebuild_reset\n{template}\n{preset}")
}

impl Store {
    /// Every create the reconciler ever made (the first build of each
    /// reconciled workspace, deleted ones included), and how many of them
    /// failed, by template and preset. Read from the job history, which
    /// is never pruned, so the counts survive a restart and only grow.
    pub fn prebuild_counts(&self) -> Result<Vec<PrebuildCount>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT w.template, w.preset, COUNT(*), SUM(CASE WHEN j.status = 'failed' THEN 1 ELSE 0 END)
             FROM workspaces w JOIN jobs j ON j.workspace_id = w.id
             WHERE (w.reconciled = 1 OR w.claimed_from IS NOT NULL) AND w.preset IS NOT NULL
               AND j.type = 'workspace_build' AND j.transition = 'start'
               AND j.rowid = (SELECT MIN(rowid) FROM jobs WHERE workspace_id = w.id)
             GROUP BY 1, 2 ORDER BY 1, 2",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PrebuildCount {
                template: r.get(0)?,
                preset: r.get(1)?,
                created: r.get::<_, i64>(2)?.max(0) as u64,
                failed: r.get::<_, Option<i64>>(3)?.unwrap_or(0).max(0) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When `prebuilds reset` last ran for a preset (ms since epoch; 0:
    /// never): failed creates made before then do not count.
    pub fn prebuild_reset_at(&self, template: &str, preset: &str) -> Result<i64> {
        Ok(self
            .setting(&reset_key(template, preset))?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Records a `prebuilds reset` of a preset now; returns the time.
    pub fn reset_prebuilds(&self, template: &str, preset: &str) -> Result<i64> {
        let now = now_ms();
        self.set_setting(&reset_key(template, preset), &now.to_string())?;
        Ok(now)
    }
}
