//! Claiming a prebuilt workspace, and the reconciler's destroy of one.
//!
//! Both are decided on the workspace row inside one transaction: a claim
//! takes a prebuild only while it is still the reconciler's (owner
//! `prebuilds`, `reconciled = 1`) with no build in flight, and enqueues
//! its claim build in the same transaction; the reconciler's destroy
//! enqueues only under the same condition. Whichever commits first wins
//! the row, and the other sees it is no longer eligible, so a prebuild
//! goes to exactly one creator and is never destroyed under a person.

use std::collections::BTreeMap;

use super::db::{Connection, OptionalExtension, params};

use super::enqueue::{JobKind, NewJob, PREBUILDS_OWNER, insert_job, set_build_parameters};
use super::{NewBuild, Store, VersionRow, WorkspaceRow, now_ms};
use crate::coordinator::error::{CoordError, Result};
use crate::proto::Transition;

/// Still the reconciler's and idle: the condition both a claim and the
/// reconciler's destroy hold the row to (`w` is the workspace).
const STILL_PREBUILD: &str = "w.deleted = 0 AND w.reconciled = 1 AND w.owner = 'prebuilds'
    AND NOT EXISTS (SELECT 1 FROM jobs b WHERE b.workspace_id = w.id
                    AND b.status IN ('pending', 'running', 'canceling'))";

/// Which prebuilds a create may claim.
pub struct ClaimWanted<'a> {
    pub template: &'a str,
    /// The template's active version (only its prebuilds are eligible).
    pub version: &'a VersionRow,
    pub preset: &'a str,
    /// `expiration_policy { ttl }`; 0: never expires.
    pub ttl_seconds: u64,
    /// The workspace's new name and owner.
    pub name: &'a str,
    pub owner: &'a str,
    pub automatic_updates: super::AutomaticUpdates,
}

/// A prebuild about to be claimed, as the claim build is planned for it.
#[derive(Debug, Clone)]
pub struct ClaimCandidate {
    pub id: String,
    /// Its name as a prebuild.
    pub name: String,
    pub created_at: i64,
    pub parameters: BTreeMap<String, String>,
}

/// A claim that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub workspace_id: String,
    pub job_id: String,
    /// The prebuild's name before the claim.
    pub from: String,
    /// When the prebuild was created (ms since epoch).
    pub built_at: i64,
}

impl Store {
    /// Claims the oldest eligible prebuild for `want` — eligible: created
    /// by the reconciler from that preset of the active version, latest
    /// build a succeeded start, not expired, nothing in flight — renaming
    /// it, giving it to the new owner and enqueueing the claim build that
    /// `plan` returns for it, all in one transaction. `None`: nothing
    /// eligible (the caller builds a new workspace).
    pub fn claim_prebuild(
        &self,
        want: &ClaimWanted<'_>,
        plan: &dyn Fn(&ClaimCandidate) -> Result<NewBuild>,
    ) -> Result<Option<Claimed>> {
        let conn = self.conn()?;
        let tx = conn.begin(super::db::TxKind::Write)?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM workspaces WHERE name = ?1 AND deleted = 0)",
            [want.name],
            |r| r.get(0),
        )?;
        if taken {
            return Err(CoordError::AlreadyExists(format!(
                "create workspace {:?}: a workspace with that name exists",
                want.name
            )));
        }
        let now = now_ms();
        let Some(c) = eligible(&tx, want, now)? else {
            return Ok(None);
        };
        let build = plan(&c)?;
        let n = tx.execute(
            &format!(
                "UPDATE workspaces AS w SET owner = ?2, name = ?3, reconciled = 0,
                        claimed_from = w.name, claimed_at = ?4, parameters = ?5,
                        automatic_updates = ?6
                 WHERE w.id = ?1 AND {STILL_PREBUILD}"
            ),
            params![
                c.id,
                want.owner,
                want.name,
                now,
                serde_json::to_string(&build.parameters)?,
                want.automatic_updates.as_str()
            ],
        )?;
        if n != 1 {
            // Cannot happen while the transaction holds the database; if
            // it did, the prebuild is someone else's: build anew.
            return Ok(None);
        }
        let job_id = insert_job(
            &tx,
            &NewJob {
                kind: JobKind::WorkspaceBuild(Transition::Start),
                initiator: want.owner.to_string(),
                tags: build.tags.clone(),
                template_version_id: want.version.id.clone(),
                workspace_id: Some(c.id.clone()),
            },
        )?;
        tx.execute(
            "UPDATE jobs SET prebuild_claim = 1 WHERE id = ?1",
            [&job_id],
        )?;
        set_build_parameters(&tx, &job_id, &build.parameters, &c.parameters)?;
        tx.commit()?;
        Ok(Some(Claimed {
            workspace_id: c.id,
            job_id,
            from: c.name,
            built_at: c.created_at,
        }))
    }

    /// Enqueues the reconciler's destroy of prebuild `ws` (`build` planned
    /// for it) only if it is still the reconciler's and idle; a claimed or
    /// busy one is refused (FAILED_PRECONDITION) and left alone.
    pub fn destroy_prebuild(&self, ws: &WorkspaceRow, build: &NewBuild) -> Result<String> {
        let conn = self.conn()?;
        let tx = conn.begin(super::db::TxKind::Write)?;
        let still: bool = tx.query_row(
            &format!(
                "SELECT EXISTS(SELECT 1 FROM workspaces w WHERE w.id = ?1 AND {STILL_PREBUILD})"
            ),
            [&ws.id],
            |r| r.get(0),
        )?;
        if !still {
            return Err(CoordError::FailedPrecondition(format!(
                "destroy prebuilt workspace {:?}: it was claimed, or a build of it is in flight",
                ws.name
            )));
        }
        let job_id = insert_job(
            &tx,
            &NewJob {
                kind: JobKind::WorkspaceBuild(Transition::Destroy),
                initiator: PREBUILDS_OWNER.to_string(),
                tags: build.tags.clone(),
                template_version_id: ws.template_version_id.clone(),
                workspace_id: Some(ws.id.clone()),
            },
        )?;
        set_build_parameters(&tx, &job_id, &build.parameters, &ws.parameters)?;
        tx.commit()?;
        Ok(job_id)
    }

    /// Which prebuild a workspace was claimed from and when (ms); `None`:
    /// built for its owner.
    pub fn claim_of(&self, workspace_id: &str) -> Result<Option<(String, i64)>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT claimed_from, claimed_at FROM workspaces
                 WHERE id = ?1 AND claimed_from IS NOT NULL",
                [workspace_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Claim builds ever enqueued, by (template, preset): the claimed
    /// counter, read from the jobs so it survives a restart.
    pub fn claim_counts(&self) -> Result<Vec<(String, String, u64)>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT w.template, COALESCE(w.preset, ''), COUNT(*) FROM jobs j
             JOIN workspaces w ON w.id = j.workspace_id
             WHERE j.prebuild_claim = 1
             GROUP BY w.template, w.preset ORDER BY w.template, w.preset",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Claim builds that replaced resources, by (template, preset): the
    /// replacements counter, read from the jobs so it survives a restart.
    pub fn replacement_counts(&self) -> Result<Vec<(String, String, u64)>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT w.template, COALESCE(w.preset, ''), COUNT(*) FROM jobs j
             JOIN workspaces w ON w.id = j.workspace_id
             WHERE j.prebuild_claim = 1 AND j.replacements IS NOT NULL
             GROUP BY w.template, w.preset ORDER BY w.template, w.preset",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The oldest eligible prebuild, if any.
fn eligible(tx: &Connection, want: &ClaimWanted<'_>, now: i64) -> Result<Option<ClaimCandidate>> {
    let born_after = if want.ttl_seconds == 0 {
        i64::MIN
    } else {
        now.saturating_sub((want.ttl_seconds as i64).saturating_mul(1000))
    };
    let row = tx
        .query_row(
            &format!(
                "SELECT w.id, w.name, w.created_at, w.parameters FROM workspaces w
                 WHERE {STILL_PREBUILD}
                   AND w.template = ?1 AND w.template_version_id = ?2 AND w.preset = ?3
                   AND w.created_at >= ?4
                   -- Still the active version (a promote may have committed
                   -- since the caller read it): prebuilds are of that one.
                   AND EXISTS(SELECT 1 FROM templates t
                              WHERE t.name = ?1 AND t.active_version_id = ?2)
                   AND (SELECT l.type = 'workspace_build' AND l.transition = 'start'
                               AND l.status = 'succeeded' AND l.template_version_id = ?2
                        FROM jobs l WHERE l.workspace_id = w.id
                        ORDER BY l.created_at DESC, l.rowid DESC LIMIT 1)
                 ORDER BY w.created_at ASC, w.rowid ASC LIMIT 1"
            ),
            params![want.template, want.version.id, want.preset, born_after],
            |r| {
                Ok(ClaimCandidate {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_at: r.get(2)?,
                    parameters: r
                        .get::<_, Option<String>>(3)?
                        .and_then(|s| serde_json::from_str(&s).ok())
                        .unwrap_or_default(),
                })
            },
        )
        .optional()?;
    Ok(row)
}
