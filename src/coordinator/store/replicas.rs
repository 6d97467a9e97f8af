//! Replicas sharing one PostgreSQL database, and what a dead one leaves.
//!
//! Each coordinator process on PostgreSQL is a replica with a random id,
//! written in `replicas` with a heartbeat every [`HEARTBEAT_EVERY`]. A
//! daemon's row names the replica holding its session. A replica whose
//! heartbeat is older than [`REPLICA_TIMEOUT`] is dead (killed, or cut off
//! from the database): any live replica then marks its daemons
//! disconnected — so they can register again on the replica they reach
//! next — and returns the offers it made to the queue. A replica that
//! finds itself declared dead (its row gone) ends its sessions: its
//! daemons' rows no longer say they are connected to it.
//!
//! On SQLite there is one process: no row is written, and `replica` stays
//! NULL (a daemon's `connected` flag is the whole truth, as before).

use std::time::Duration;

use super::db::{TxKind, params};
use super::{Store, now_ms};
use crate::coordinator::error::Result;

/// How often a replica writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A replica silent this long is dead. Five heartbeats: a busy machine
/// must not have its sessions ended under it.
pub const REPLICA_TIMEOUT: Duration = Duration::from_secs(5);

/// What one heartbeat found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// This replica had been declared dead: its sessions must end.
    pub revived: bool,
    /// Replicas found dead and cleared now.
    pub buried: usize,
    /// Offers of theirs returned to the queue.
    pub offers_returned: usize,
}

/// The SQL condition "daemon row `d` has a live session": connected, on
/// SQLite's one process or on a replica whose heartbeat is recent
/// (`?N` is the cutoff in ms).
pub(super) fn live_session(d: &str, cutoff_param: usize) -> String {
    format!(
        "({d}.connected = 1 AND ({d}.replica IS NULL OR EXISTS(
            SELECT 1 FROM replicas r WHERE r.id = {d}.replica AND r.heartbeat_at >= ?{cutoff_param})))"
    )
}

pub(super) fn cutoff() -> i64 {
    now_ms() - REPLICA_TIMEOUT.as_millis() as i64
}

impl Store {
    /// This replica's id (PostgreSQL only).
    pub fn replica(&self) -> Option<&str> {
        self.replica.as_deref()
    }

    /// Writes this replica's heartbeat and, with `bury`, clears replicas
    /// found dead. Does nothing on SQLite. The heartbeat itself takes no
    /// writers' lock: a long write elsewhere (a large state stored) must
    /// not make this replica look dead.
    pub fn heartbeat(&self, bury: bool) -> Result<Heartbeat> {
        let Some(me) = self.replica.clone() else {
            return Ok(Heartbeat::default());
        };
        let revived = self.transaction(TxKind::Claim, |tx| {
            let now = now_ms();
            let n = tx.execute(
                "UPDATE replicas SET heartbeat_at = ?2 WHERE id = ?1",
                params![me, now],
            )?;
            if n == 0 {
                tx.execute(
                    "INSERT INTO replicas(id, heartbeat_at) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                    params![me, now],
                )?;
            }
            Ok(n == 0)
        })?;
        let mut beat = Heartbeat {
            revived,
            ..Heartbeat::default()
        };
        if !bury {
            return Ok(beat);
        }
        self.write(|tx| {
            let dead: Vec<String> = tx
                .prepare("SELECT id FROM replicas WHERE heartbeat_at < ?1")?
                .query_map([cutoff()], |r| r.get(0))?
                .collect::<super::db::Result<_>>()?;
            for id in &dead {
                // Daemons first: a claim for one of them holds its row
                // (see `offers.rs`), so once these rows are ours, every
                // offer made to them is committed and returned below.
                let daemons: Vec<String> = tx
                    .prepare(
                        "UPDATE daemons SET connected = 0, replica = NULL
                         WHERE replica = ?1 RETURNING id",
                    )?
                    .query_map([id], |r| r.get(0))?
                    .collect::<super::db::Result<_>>()?;
                for d in &daemons {
                    beat.offers_returned += tx.execute(
                        "UPDATE jobs SET offered_to = NULL, secret_hash = NULL
                         WHERE offered_to = ?1 AND status = 'pending'",
                        [d],
                    )?;
                }
                tx.execute("DELETE FROM replicas WHERE id = ?1", [id])?;
            }
            beat.buried = dead.len();
            Ok(beat)
        })
    }

    /// This replica is stopping: its row goes, so nothing waits for its
    /// heartbeat to expire. Its sessions ended first (their daemons are
    /// marked disconnected by them).
    pub fn leave(&self) -> Result<()> {
        let Some(me) = self.replica.clone() else {
            return Ok(());
        };
        self.write(|tx| {
            tx.execute("DELETE FROM replicas WHERE id = ?1", [me])?;
            Ok(())
        })
    }

    /// The database is back after an outage: daemons could not report
    /// while it was away, so running jobs' leases count from now (as at a
    /// start), not from their last update.
    pub fn extend_leases(&self) -> Result<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "UPDATE jobs SET updated_at = ?1 WHERE status IN ('running', 'canceling')",
                [now_ms()],
            )?)
        })
    }

    /// Replicas with a recent heartbeat, this one included.
    pub fn live_replicas(&self) -> Result<u64> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM replicas WHERE heartbeat_at >= ?1",
                [cutoff()],
                |r| r.get(0),
            )?)
        })
    }
}
