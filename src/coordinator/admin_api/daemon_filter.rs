//! `ListDaemons`' filters: states, tags, and the retention of offline
//! daemons. A daemon's status is derived from several columns (see
//! `DaemonRow::status`), so the rows are filtered here, after the store
//! read them by name, batch by batch until a page is full.

use crate::coordinator::error::{CoordError, Result};
use crate::coordinator::store::{DaemonRow, Store, now_ms};
use crate::proto;
use crate::tags::{self, Tags};

/// Every status `Daemon.status` takes.
pub const STATUSES: [&str; 7] = [
    "idle",
    "offered",
    "busy",
    "draining",
    "canceling",
    "not-ready",
    "offline",
];

/// Rows read from the store per batch while filtering: most daemons match
/// usually, and a batch costs one query.
const BATCH: u32 = 500;

pub struct DaemonFilter {
    statuses: Vec<String>,
    tags: Tags,
    /// Offline daemons last seen before this (ms since the epoch) are left
    /// out; `None`: all are kept.
    seen_since: Option<i64>,
}

impl DaemonFilter {
    pub fn new(req: &proto::ListDaemonsRequest) -> Result<DaemonFilter> {
        for s in &req.status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(CoordError::Invalid(format!(
                    "list daemons: status {:?} is not one of {}",
                    tags::shown(s),
                    STATUSES.join(", ")
                )));
            }
        }
        if req.max_age_ms < 0 {
            return Err(CoordError::Invalid(format!(
                "list daemons: max age {} ms is negative",
                req.max_age_ms
            )));
        }
        Ok(DaemonFilter {
            statuses: req.status.clone(),
            tags: req.tags.clone().into_iter().collect(),
            seen_since: (req.max_age_ms > 0).then(|| now_ms().saturating_sub(req.max_age_ms)),
        })
    }

    fn keeps(&self, d: &DaemonRow) -> bool {
        let status = d.status();
        if !self.statuses.is_empty() && !self.statuses.iter().any(|s| s == status) {
            return false;
        }
        if !self.tags.iter().all(|(k, v)| d.tags.get(k) == Some(v)) {
            return false;
        }
        // Only offline daemons age out: a connected one is listed however
        // long ago its last heartbeat row was written.
        !(status == "offline" && self.seen_since.is_some_and(|t| d.last_seen_at < t))
    }

    /// Up to `want` matching daemons named after `after`, by name.
    pub fn rows(&self, store: &Store, after: &str, want: u32) -> Result<Vec<DaemonRow>> {
        let mut out = Vec::new();
        let mut cursor = after.to_string();
        loop {
            let batch = BATCH.max(want);
            let rows = store.daemons_after(&cursor, batch.into())?;
            let end = rows.len() < batch as usize;
            if let Some(last) = rows.last() {
                cursor = last.name.clone();
            }
            for d in rows {
                if self.keeps(&d) {
                    out.push(d);
                    if out.len() >= want as usize {
                        return Ok(out);
                    }
                }
            }
            if end {
                return Ok(out);
            }
        }
    }
}
