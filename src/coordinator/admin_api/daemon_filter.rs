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

    fn keeps_all(&self) -> bool {
        self.statuses.is_empty() && self.tags.is_empty() && self.seen_since.is_none()
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
            // Unfiltered, every row read is kept: read only the page.
            let batch = if self.keeps_all() {
                want
            } else {
                BATCH.max(want)
            };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::store::{Report, testdb};

    /// 600 daemons, three of them on a GPU key: a filtered page keeps
    /// reading past a whole batch of rows that do not match, and its cursor
    /// continues after the last one kept (on both engines).
    #[test]
    fn a_filtered_page_reads_past_a_batch_that_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = testdb::open(dir.path()).unwrap();
        let plain = store.create_key("plain", "h1", &Tags::new()).unwrap();
        let gpu_tags = tags::parse_pairs(&["gpu=true"]).unwrap();
        let gpu = store.create_key("gpu", "h2", &gpu_tags).unwrap();
        for i in 0..600 {
            let key = if [7, 598, 599].contains(&i) {
                &gpu
            } else {
                &plain
            };
            let name = format!("d{i:03}");
            store
                .connect_daemon(&name, key, "0", &Report::default())
                .unwrap();
        }
        let names = |f: &DaemonFilter, after: &str, want: u32| -> Vec<String> {
            let rows = f.rows(&store, after, want).unwrap();
            rows.into_iter().map(|d| d.name).collect()
        };
        let on_gpu = DaemonFilter::new(&proto::ListDaemonsRequest {
            tags: [("gpu".to_string(), "true".to_string())].into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(names(&on_gpu, "", 2), ["d007", "d598"]);
        assert_eq!(names(&on_gpu, "d007", 2), ["d598", "d599"]);
        assert!(names(&on_gpu, "d599", 2).is_empty());

        let all = DaemonFilter::new(&Default::default()).unwrap();
        assert!(all.keeps_all() && !on_gpu.keeps_all());
        assert_eq!(names(&all, "d100", 3), ["d101", "d102", "d103"]);
    }
}
