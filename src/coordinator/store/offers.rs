//! What the dispatcher asks about offers it made: whether one still
//! stands. The offer itself is `jobs.offered_to` (see `jobs.rs`: `claim`,
//! `release_offer`, `ack`).

use rusqlite::OptionalExtension;

use super::Store;
use crate::coordinator::error::Result;

impl Store {
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
