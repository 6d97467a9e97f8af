//! Operator cancels: a pending job ends at once; a running job becomes
//! `canceling` until its daemon reports how it ended.

use super::db::{OptionalExtension, params};

use super::jobs::{JobRow, job_in};
use super::{JobStatus, Store, now_ms};
use crate::coordinator::error::{CoordError, Result};

/// The error a job canceled before any daemon ran it carries.
pub const CANCELED_BY_OPERATOR: &str = "canceled by an operator";

/// The result of [`Store::cancel_job`].
#[derive(Debug, Clone)]
pub struct Canceled {
    /// The job after the cancel.
    pub job: JobRow,
    /// The daemon running it, which must be told to interrupt it; `None`
    /// when the job ended here (it was pending).
    pub notify_daemon: Option<String>,
}

impl Store {
    /// Cancels a job. Pending (offered or not): canceled at once, the offer
    /// withdrawn, so the offered daemon's ack is refused. Running: canceling.
    /// Canceling: unchanged (the daemon is told again). Finished: refused.
    pub fn cancel_job(&self, id: &str) -> Result<Canceled> {
        self.cancel_job_if(id, false)
    }

    /// [`Store::cancel_job`], which with `only_if_pending` refuses (and
    /// leaves alone) a job that is running: the caller asked nobody about
    /// interrupting terraform.
    pub fn cancel_job_if(&self, id: &str, only_if_pending: bool) -> Result<Canceled> {
        self.write(|tx| {
            let row: Option<(JobStatus, Option<String>)> = tx
                .query_row(
                    "SELECT status, daemon_id FROM jobs WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((status, daemon_id)) = row else {
                return Err(CoordError::NotFound(format!(
                    "cancel job {id}: no such job"
                )));
            };
            let notify_daemon = match status {
                JobStatus::Pending => {
                    let now = now_ms();
                    tx.execute(
                        "UPDATE jobs SET status = 'canceled', offered_to = NULL, error = ?2,
                             finished_at = ?3, updated_at = ?3
                         WHERE id = ?1",
                        params![id, CANCELED_BY_OPERATOR, now],
                    )?;
                    None
                }
                // The lease keeps counting from the daemon's last update: a
                // daemon that never answers the cancel is still reaped.
                JobStatus::Running if only_if_pending => {
                    return Err(CoordError::FailedPrecondition(format!(
                        "cancel job {id}: it is running and only a pending job was to be \
                         canceled; nothing was changed"
                    )));
                }
                JobStatus::Running => {
                    tx.execute("UPDATE jobs SET status = 'canceling' WHERE id = ?1", [id])?;
                    daemon_id
                }
                JobStatus::Canceling => daemon_id,
                done => {
                    return Err(CoordError::FailedPrecondition(format!(
                        "cancel job {id}: it has already ended ({done})"
                    )));
                }
            };
            Ok(Canceled {
                job: job_in(tx, id)?,
                notify_daemon,
            })
        })
    }

    /// The canceling jobs a daemon runs (to tell it again when it
    /// reconnects).
    pub fn canceling_jobs(&self, daemon_id: &str) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT id FROM jobs WHERE daemon_id = ?1 AND status = 'canceling'")?;
        let rows = stmt.query_map([daemon_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
