//! Tag sets: the routing key of the queue.
//!
//! Every distinct set of job tags is stored once in `tag_sets` (its key is
//! the set's canonical JSON: `Tags` is ordered, so equal sets have equal
//! keys), and each job carries its set's id in `jobs.tag_set`. The queue
//! index `jobs_claim (tag_set, is_prebuild, created_at) WHERE status =
//! 'pending' AND offered_to IS NULL` then answers "the best job of this
//! set" with one index probe, whatever the depth of the queue.
//!
//! Which sets a daemon may take is decided by [`crate::tags::matches`]
//! over the sets, not over the jobs: a deployment has a handful of
//! distinct job tag sets (one per pool and template routing), against
//! thousands of jobs. [`TagSetIndex`] caches the sets and, per daemon tag
//! set, the ids it matches; sets are only ever added (a set with no jobs
//! left costs one empty probe), so the cache catches up by reading the
//! rows past the last id it knows.

use std::collections::HashMap;

use super::db::{Connection, OptionalExtension, params};

use super::tags_to_json;
use crate::coordinator::error::Result;
use crate::tags::{self, Tags};

/// The id of `tags`' set, adding the set if it is new.
pub(super) fn set_id(conn: &Connection, tags: &Tags) -> Result<i64> {
    let key = tags_to_json(tags)?;
    let found: Option<i64> = conn
        .prepare_cached("SELECT id FROM tag_sets WHERE key = ?1")?
        .query_row([&key], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    Ok(conn
        .prepare_cached("INSERT INTO tag_sets(key) VALUES (?1) RETURNING id")?
        .query_row([&key], |r| r.get(0))?)
}

/// Gives every job without a set its set: rows written before the column
/// existed. Runs at open, before anything claims.
pub(super) fn backfill(conn: &Connection) -> Result<()> {
    conn.execute(
        "INSERT INTO tag_sets(key) SELECT DISTINCT tags FROM jobs WHERE tag_set IS NULL
         ON CONFLICT DO NOTHING",
        [],
    )?;
    let n = conn.execute(
        "UPDATE jobs SET tag_set = (SELECT id FROM tag_sets WHERE key = jobs.tags)
         WHERE tag_set IS NULL",
        [],
    )?;
    if n > 0 {
        tracing::info!(jobs = n, "schema 2: indexed jobs by tag set");
    }
    Ok(())
}

#[derive(Default)]
pub(super) struct TagSetIndex {
    /// Every set known, by id order.
    sets: Vec<(i64, Tags)>,
    /// Per daemon tag set (its canonical JSON): how many of `sets` were
    /// looked at, and the ids among them it may take.
    matching: HashMap<String, (usize, Vec<i64>)>,
}

impl TagSetIndex {
    /// The ids of the sets a daemon with `daemon` tags may take.
    pub(super) fn matching(&mut self, conn: &Connection, daemon: &Tags) -> Result<Vec<i64>> {
        self.catch_up(conn)?;
        let key = tags_to_json(daemon)?;
        let (seen, ids) = self.matching.entry(key).or_default();
        for (id, set) in &self.sets[*seen..] {
            if tags::matches(daemon, set) {
                ids.push(*id);
            }
        }
        *seen = self.sets.len();
        Ok(ids.clone())
    }

    /// Reads the sets added since the last call (by this process or, with
    /// a shared database, another).
    fn catch_up(&mut self, conn: &Connection) -> Result<()> {
        let last = self.sets.last().map_or(0, |(id, _)| *id);
        let mut stmt =
            conn.prepare_cached("SELECT id, key FROM tag_sets WHERE id > ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![last], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (id, key) = row?;
            self.sets.push((id, super::tags_from_json(&key)));
        }
        Ok(())
    }
}
