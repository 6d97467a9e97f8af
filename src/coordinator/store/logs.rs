//! A job's log lines: appended by its daemon's UpdateJob, read by the
//! admin API and log followers.

use super::db::params;

use super::jobs::owned_in;
use super::{JobStatus, Store, now_ms};
use crate::coordinator::error::{CoordError, Result};
use crate::proto;

#[derive(Debug, Clone)]
pub struct LogRow {
    pub seq: u64,
    pub created_at: i64,
    pub level: i32,
    pub source: i32,
    pub stage: String,
    pub output: String,
}

impl Store {
    /// Stores log lines and bumps the job's heartbeat. Sequence numbers
    /// already stored are skipped (a retried batch), a gap is refused.
    /// Returns (lines stored so far, job canceled).
    pub fn append_logs(
        &self,
        job_id: &str,
        daemon_name: &str,
        key_name: &str,
        lines: &[proto::LogLine],
    ) -> Result<(u64, bool)> {
        self.write(|tx| {
            let job = owned_in(tx, "update job", job_id, daemon_name, key_name)?;
            // A job the reaper failed still takes its daemon's logs: the
            // daemon was only out of touch, and its lines and state are
            // worth keeping.
            if job.is_finished() && !job.lost {
                return Err(CoordError::FailedPrecondition(format!(
                    "update job {job_id}: it has already {}",
                    job.status
                )));
            }
            let mut stored = job.log_count;
            {
                // Cached: parsing the statement again for every line cost
                // more than storing the line.
                let mut insert = tx.prepare_cached(
                    "INSERT INTO job_logs(job_id, seq, created_at, level, source, stage, output)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for line in lines {
                    if line.seq <= stored {
                        continue;
                    }
                    if line.seq != stored + 1 {
                        return Err(CoordError::FailedPrecondition(format!(
                            "update job {job_id}: log line {} would leave a gap after {stored}",
                            line.seq
                        )));
                    }
                    insert.execute(params![
                        job_id,
                        line.seq as i64,
                        line.created_at,
                        line.level,
                        line.source,
                        line.stage,
                        line.output
                    ])?;
                    stored = line.seq;
                }
            }
            tx.prepare_cached("UPDATE jobs SET log_count = ?2, updated_at = ?3 WHERE id = ?1")?
                .execute(params![job_id, stored as i64, now_ms()])?;
            // A lost job is told to stop: it has been failed, whatever
            // terraform does next; the daemon interrupts it and reports its
            // state.
            Ok((stored, job.status == JobStatus::Canceling || job.lost))
        })
    }

    pub fn logs(&self, job_id: &str, after_seq: u64, limit: u32) -> Result<Vec<LogRow>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, created_at, level, source, stage, output FROM job_logs
             WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![job_id, after_seq as i64, limit], |r| {
            Ok(LogRow {
                seq: r.get::<_, i64>(0)? as u64,
                created_at: r.get(1)?,
                level: r.get(2)?,
                source: r.get(3)?,
                stage: r.get(4)?,
                output: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
