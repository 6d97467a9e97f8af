//! A job's log lines: appended by its daemon's UpdateJob, read by the
//! admin API and log followers.

use super::db::{Connection, Engine, ToSql, params};

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

/// Rows per multi-row INSERT on PostgreSQL, largest first: a batch of a
/// thousand lines is a handful of round trips, not a thousand, and the
/// statements stay few (each size is cached once per connection).
const CHUNKS: [usize; 4] = [128, 32, 8, 1];

/// Inserts `lines` (already checked: new, in order, no gap). SQLite: one
/// cached single-row statement per line (in-process, nothing to save).
/// PostgreSQL: multi-row statements, since each statement is a round trip.
fn insert_lines(tx: &Connection, job_id: &str, lines: &[&proto::LogLine]) -> Result<()> {
    if tx.engine() == Engine::Sqlite {
        // Prepared once for the batch, bound per line without allocating.
        let mut insert = tx.prepare_cached(insert_sql(1))?;
        for l in lines {
            insert.execute(params![
                job_id,
                l.seq,
                l.created_at,
                l.level,
                l.source,
                l.stage,
                l.output
            ])?;
        }
        return Ok(());
    }
    let mut rest = lines;
    while !rest.is_empty() {
        let n = CHUNKS.into_iter().find(|c| *c <= rest.len()).unwrap_or(1);
        let (now, later) = rest.split_at(n);
        // Cached: parsing the statement again for every batch cost more
        // than storing the lines.
        let mut insert = tx.prepare_cached(insert_sql(n))?;
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(n * 7);
        for l in now {
            values.extend([
                &job_id as &dyn ToSql,
                &l.seq,
                &l.created_at,
                &l.level,
                &l.source,
                &l.stage,
                &l.output,
            ]);
        }
        insert.execute(values.as_slice())?;
        rest = later;
    }
    Ok(())
}

/// The INSERT of `n` rows (`n` one of [`CHUNKS`]), made once.
fn insert_sql(n: usize) -> &'static str {
    static SQL: std::sync::LazyLock<Vec<(usize, String)>> = std::sync::LazyLock::new(|| {
        CHUNKS
            .iter()
            .map(|&n| {
                let rows: Vec<String> = (0..n)
                    .map(|i| {
                        let p: Vec<String> = (1..=7).map(|c| format!("?{}", i * 7 + c)).collect();
                        format!("({})", p.join(", "))
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO job_logs(job_id, seq, created_at, level, source, stage, output) \
                     VALUES {}",
                    rows.join(", ")
                );
                (n, sql)
            })
            .collect()
    });
    SQL.iter()
        .find(|(size, _)| *size == n)
        .map(|(_, sql)| sql.as_str())
        .expect("a chunk size of CHUNKS")
}

impl Store {
    /// Stores log lines and bumps the job's heartbeat, for the daemon
    /// holding the job's `secret` (checked before anything is written, so
    /// a refused call stores no line and extends no lease). Sequence numbers
    /// already stored are skipped (a retried batch), a gap is refused.
    /// Returns (lines stored so far, job canceled).
    pub fn append_logs(
        &self,
        job_id: &str,
        daemon_name: &str,
        key_name: &str,
        secret: &str,
        lines: &[proto::LogLine],
    ) -> Result<(u64, bool)> {
        self.write(|tx| {
            let job = owned_in(tx, "update job", job_id, daemon_name, key_name, secret)?;
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
            let mut new = Vec::with_capacity(lines.len());
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
                new.push(line);
                stored = line.seq;
            }
            insert_lines(tx, job_id, &new)?;
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
