//! Offers: claiming the best pending job for a daemon, building what is
//! pushed to it, withdrawing an offer, and whether one still stands. The
//! offer itself is `jobs.offered_to`; the daemon's acknowledgement is
//! `ack` in `jobs.rs`.

use rusqlite::{OptionalExtension, params};

use super::jobs::JobKind;
use super::{Store, tags_from_json};
use crate::coordinator::error::Result;
use crate::proto;
use crate::tags::{self, Tags};

/// A claimed job, ready to push to the daemon it was offered to.
pub type Offer = proto::JobOffer;

impl Store {
    /// Picks the best pending job this daemon may take — people's jobs
    /// before prebuilds, then oldest first — and marks it offered to the
    /// daemon. The conditional UPDATE makes the claim exclusive even if
    /// several callers raced for the same row.
    pub fn claim(&self, daemon_id: &str, daemon_tags: &Tags) -> Result<Option<Offer>> {
        let candidates: Vec<(String, String)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT id, tags FROM jobs WHERE status = 'pending' AND offered_to IS NULL
                 ORDER BY is_prebuild ASC, created_at ASC, rowid ASC",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (id, job_tags) in candidates {
            if !tags::matches(daemon_tags, &tags_from_json(&job_tags)) {
                continue;
            }
            let n = self.conn().execute(
                "UPDATE jobs SET offered_to = ?2
                 WHERE id = ?1 AND status = 'pending' AND offered_to IS NULL",
                params![id, daemon_id],
            )?;
            if n == 1 {
                return self.build_offer(&id).map(Some);
            }
        }
        Ok(None)
    }

    /// Withdraws an offer that still stands (the daemon could not be
    /// reached, or let the offer expire). True when it was withdrawn; false
    /// when the daemon acknowledged it first (the ack and this are both
    /// conditional on the row, so exactly one wins), or it was canceled.
    pub fn release_offer(&self, job_id: &str, daemon_id: &str) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE jobs SET offered_to = NULL
             WHERE id = ?1 AND offered_to = ?2 AND status = 'pending'",
            params![job_id, daemon_id],
        )?;
        Ok(n == 1)
    }

    fn build_offer(&self, job_id: &str) -> Result<Offer> {
        let job = self.job(job_id)?;
        let version = self.version(&job.template_version_id)?;
        let archive = self.version_archive(&version.id)?;
        let mut values = version.var_values.clone();
        let mut build = None;
        if let (JobKind::WorkspaceBuild(transition), Some(ws_id)) = (job.kind, &job.workspace_id) {
            let ws = self.workspace_by_id(ws_id)?;
            values.extend(ws.var_values.clone());
            let prebuild_claim: bool = self.conn().query_row(
                "SELECT prebuild_claim FROM jobs WHERE id = ?1",
                [&job.id],
                |r| r.get(0),
            )?;
            build = Some(proto::WorkspaceBuild {
                prebuild_claim,
                workspace_id: ws.id,
                workspace_name: ws.name,
                owner: ws.owner,
                transition: transition as i32,
                build_id: job.id.clone(),
                state_size: ws.state.as_ref().map_or(0, |s| s.len() as u64),
                state_sha256: crate::chunk::sha256_hex(ws.state.as_deref().unwrap_or_default()),
            });
        }
        let declared = version.declared.unwrap_or_default();
        let variables = values
            .into_iter()
            .map(|(name, value)| proto::VariableValue {
                sensitive: declared.iter().any(|d| d.name == name && d.sensitive),
                name,
                value,
            })
            .collect();
        let ty = match job.kind {
            JobKind::TemplateImport => proto::JobType::TemplateImport,
            JobKind::WorkspaceBuild(_) => proto::JobType::WorkspaceBuild,
        };
        let (parameters, previous_parameters) = self.build_parameters(&job.id)?;
        Ok(Offer {
            job_id: job.id,
            r#type: ty as i32,
            created_at: job.created_at,
            initiator: job.initiator,
            tags: job.tags.into_iter().collect(),
            template_archive_size: archive.len() as u64,
            template_archive_sha256: crate::chunk::sha256_hex(&archive),
            template_name: version.template,
            template_version_id: version.id,
            variables,
            workspace_build: build,
            parameters,
            previous_parameters,
        })
    }

    /// A build's parameter values and the ones it replaced, for terraform's
    /// CODER_PARAMETER_* variables (none for imports).
    fn build_parameters(
        &self,
        job_id: &str,
    ) -> Result<(Vec<proto::Parameter>, Vec<proto::Parameter>)> {
        let (now, before): (Option<String>, Option<String>) = self.conn().query_row(
            "SELECT parameters, previous_parameters FROM jobs WHERE id = ?1",
            [job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let list = |json: Option<String>| -> Result<Vec<proto::Parameter>> {
            let map: std::collections::BTreeMap<String, String> = match json {
                Some(s) => serde_json::from_str(&s)?,
                None => Default::default(),
            };
            Ok(map
                .into_iter()
                .map(|(name, value)| proto::Parameter { name, value })
                .collect())
        };
        Ok((list(now)?, list(before)?))
    }

    /// The job offered to `daemon_id` and not acknowledged yet, if any.
    pub fn standing_offer(&self, daemon_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id FROM jobs WHERE offered_to = ?1 AND status = 'pending' LIMIT 1",
                [daemon_id],
                |r| r.get(0),
            )
            .optional()?)
    }
}
