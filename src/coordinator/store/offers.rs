//! Offers: claiming the best pending job for a daemon, what is pushed to
//! it, withdrawing an offer, and whether one still stands. The offer
//! itself is `jobs.offered_to`; the daemon's acknowledgement is `ack` in
//! `jobs.rs`.
//!
//! Each offer comes with a fresh job secret (`auth::new_job_secret`): the
//! daemon gets it in the offer, the row keeps only its hash
//! (`jobs.secret_hash`, written by the claim's UPDATE, so an offer costs no
//! extra statement), and every later call about the job must present it
//! (`jobs::owned_in`). A job offered again gets a new one.
//!
//! The claim is an index lookup, not a scan: the tag sets the daemon may
//! take (few, cached: `tagsets.rs`), then per set the head of the
//! `jobs_claim` index, the best of those heads marked offered by one
//! conditional UPDATE. Its cost does not grow with the jobs the daemon
//! cannot take. On a server database the same shape is one statement:
//!
//! ```sql
//! UPDATE jobs SET offered_to = $1 WHERE id = (
//!   SELECT id FROM jobs WHERE status = 'pending' AND offered_to IS NULL
//!     AND tag_set = ANY($2)
//!   ORDER BY is_prebuild, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
//! RETURNING id
//! ```

use std::collections::BTreeMap;

use super::db::{Connection, OptionalExtension, params};

use super::enqueue::JobKind;
use super::{Store, tags_from_json};
use crate::coordinator::auth;
use crate::coordinator::error::Result;
use crate::grpc::Secret;
use crate::proto::Transition;
use crate::tags::Tags;

/// A claimed job as pushed to the daemon it was offered to: metadata
/// only; the blobs are announced by size and sha256 and fetched later.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub job_id: String,
    pub kind: JobKind,
    pub created_at: i64,
    pub initiator: String,
    pub tags: Tags,
    pub template_name: String,
    pub template_version_id: String,
    pub template_version_name: String,
    pub archive: Blob,
    /// Template variable values: the version's, then the workspace's.
    pub variables: Vec<OfferVariable>,
    pub build: Option<OfferBuild>,
    pub parameters: BTreeMap<String, String>,
    pub previous_parameters: BTreeMap<String, String>,
    /// The job secret for the daemon this offer is pushed to (only its hash
    /// is stored; `Debug` never shows it).
    pub secret: Secret,
}

/// A blob's size and lowercase hex sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferVariable {
    pub name: String,
    pub value: String,
    pub sensitive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferBuild {
    pub workspace_id: String,
    pub workspace_name: String,
    pub owner: String,
    pub transition: Transition,
    /// The state the previous build returned (size 0: the first build).
    pub state: Blob,
    pub prebuild_claim: bool,
}

impl Store {
    /// Picks the best pending job this daemon may take — people's jobs
    /// before prebuilds, then oldest first — and marks it offered to the
    /// daemon. The UPDATE is conditional on the row still being claimable,
    /// so the claim stays exclusive with a database shared by writers
    /// (on PostgreSQL it takes no writers' lock: see `TxKind::Claim`).
    pub fn claim(&self, daemon_id: &str, daemon_tags: &Tags) -> Result<Option<Offer>> {
        let replica = self.replica.as_deref().unwrap_or("");
        self.transaction(super::db::TxKind::Claim, |tx| {
            if tx.engine() == super::db::Engine::Postgres {
                // Held until the claim commits: a replica burying this
                // daemon's (see `replicas.rs`) waits for it and then
                // returns its offer. A daemon no longer connected here
                // (buried meanwhile) gets nothing.
                let here: Option<bool> = tx
                    .prepare_cached(
                        "SELECT connected = 1 AND COALESCE(replica, '') = ?2
                         FROM daemons WHERE id = ?1 FOR SHARE",
                    )?
                    .query_row(params![daemon_id, replica], |r| r.get(0))
                    .optional()?;
                if here == Some(false) {
                    return Ok(None);
                }
            }
            let sets = self
                .sets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .matching(tx, daemon_tags)?;
            // A writer sharing the database may take the head between our
            // read and our UPDATE: then look again, until a claim lands or
            // nothing is left. (PostgreSQL: each statement reads what is
            // committed, so the next look sees the other claim.)
            loop {
                let Some(id) = best_head(tx, &sets)? else {
                    return Ok(None);
                };
                let (secret, secret_hash) = auth::new_job_secret();
                let n = tx.execute(
                    "UPDATE jobs SET offered_to = ?2, secret_hash = ?3
                     WHERE id = ?1 AND status = 'pending' AND offered_to IS NULL",
                    params![id, daemon_id, secret_hash],
                )?;
                if n == 1 {
                    return offer(tx, &id, secret).map(Some);
                }
            }
        })
    }

    /// Withdraws an offer that still stands (the daemon could not be
    /// reached, or let the offer expire). True when it was withdrawn; false
    /// when the daemon acknowledged it first (the ack and this are both
    /// conditional on the row, so exactly one wins), or it was canceled.
    pub fn release_offer(&self, job_id: &str, daemon_id: &str) -> Result<bool> {
        let n = self.conn()?.execute(
            "UPDATE jobs SET offered_to = NULL, secret_hash = NULL
             WHERE id = ?1 AND offered_to = ?2 AND status = 'pending'",
            params![job_id, daemon_id],
        )?;
        Ok(n == 1)
    }

    /// The bytes a job's input fetch moves (its archive and, for a build,
    /// its workspace's state), from the sizes stored with them; 0 for an
    /// unknown job (the fetch itself says so).
    ///
    /// A caller without the job's secret is told 0 and reserves nothing:
    /// the read that follows refuses it, and until then it has learnt
    /// neither the size nor that the job exists.
    pub fn input_size(&self, job_id: &str, secret: &str) -> Result<u64> {
        let row: Option<(i64, Option<String>)> = self
            .conn()?
            .prepare_cached(
                "SELECT COALESCE(v.archive_size, 0) + COALESCE(w.state_size, 0), j.secret_hash
                 FROM jobs j JOIN template_versions v ON v.id = j.template_version_id
                 LEFT JOIN workspaces w ON w.id = j.workspace_id WHERE j.id = ?1",
            )?
            .query_row([job_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(match row {
            Some((size, hash))
                if hash
                    .as_deref()
                    .is_none_or(|h| crate::coordinator::auth::job_secret_matches(h, secret)) =>
            {
                size.max(0) as u64
            }
            _ => 0,
        })
    }

    /// The job offered to `daemon_id` and not acknowledged yet, if any.
    pub fn standing_offer(&self, daemon_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT id FROM jobs WHERE offered_to = ?1 AND status = 'pending' LIMIT 1",
            )?
            .query_row([daemon_id], |r| r.get(0))
            .optional()?)
    }
}

/// The best claimable job among the tag sets `sets`: the head of each
/// set's index range, then the best of those heads.
fn best_head(conn: &Connection, sets: &[i64]) -> Result<Option<String>> {
    let mut head = conn.prepare_cached(
        "SELECT is_prebuild, created_at, rowid, id FROM jobs INDEXED BY jobs_claim
         WHERE tag_set = ?1 AND status = 'pending' AND offered_to IS NULL
         ORDER BY is_prebuild, created_at, rowid LIMIT 1",
    )?;
    let mut best: Option<(i64, i64, i64, String)> = None;
    for set in sets {
        let row = head
            .query_row([set], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        if let Some(row) = row
            && best
                .as_ref()
                .is_none_or(|b| (row.0, row.1, row.2) < (b.0, b.1, b.2))
        {
            best = Some(row);
        }
    }
    Ok(best.map(|b| b.3))
}

/// SHA-256 of nothing: the state of a workspace's first build.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What is pushed for job `id`: one read of the job, its version and its
/// workspace, no blob (sizes and hashes were stored with the blobs).
fn offer(conn: &Connection, id: &str, secret: Secret) -> Result<Offer> {
    let mut stmt = conn.prepare_cached(
        "SELECT j.type, j.transition, j.created_at, j.initiator, j.tags, j.template_version_id,
                v.template, v.archive_size, v.archive_sha256, v.var_values, v.declared,
                j.parameters, j.previous_parameters, j.prebuild_claim,
                w.id, w.name, w.owner, w.var_values, w.state_size, w.state_sha256,
                COALESCE(v.name, '')
         FROM jobs j JOIN template_versions v ON v.id = j.template_version_id
         LEFT JOIN workspaces w ON w.id = j.workspace_id
         WHERE j.id = ?1",
    )?;
    let offer = stmt.query_row([id], |r| {
        let kind = super::enqueue::kind_from_db(
            &r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?.as_deref(),
        );
        let json_map = |i: usize| -> super::db::Result<BTreeMap<String, String>> {
            Ok(r.get::<_, Option<String>>(i)?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default())
        };
        let mut values = json_map(9)?;
        let declared = r
            .get::<_, Option<String>>(10)?
            .map(|s| super::catalog::declared_from_json(&s))
            .unwrap_or_default();
        let workspace_id: Option<String> = r.get(14)?;
        let build = match (kind, workspace_id) {
            (JobKind::WorkspaceBuild(transition), Some(workspace_id)) => {
                values.extend(json_map(17)?);
                Some(OfferBuild {
                    workspace_id,
                    workspace_name: r.get(15)?,
                    owner: r.get(16)?,
                    transition,
                    state: Blob {
                        size: r.get::<_, Option<i64>>(18)?.unwrap_or(0) as u64,
                        sha256: r
                            .get::<_, Option<String>>(19)?
                            .unwrap_or_else(|| EMPTY_SHA256.to_string()),
                    },
                    prebuild_claim: r.get(13)?,
                })
            }
            _ => None,
        };
        let variables = values
            .into_iter()
            .map(|(name, value)| OfferVariable {
                sensitive: declared.iter().any(|d| d.name == name && d.sensitive),
                name,
                value,
            })
            .collect();
        Ok(Offer {
            job_id: id.to_string(),
            kind,
            created_at: r.get(2)?,
            initiator: r.get(3)?,
            tags: tags_from_json(&r.get::<_, String>(4)?),
            template_version_id: r.get(5)?,
            template_version_name: r.get(20)?,
            template_name: r.get(6)?,
            archive: Blob {
                size: r.get::<_, i64>(7)? as u64,
                sha256: r.get(8)?,
            },
            variables,
            build,
            parameters: json_map(11)?,
            previous_parameters: json_map(12)?,
            secret: secret.clone(),
        })
    })?;
    Ok(offer)
}
