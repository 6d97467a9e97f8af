//! A running job's unconfirmed log lines: in memory up to the batch
//! policy's bound, beyond it in the job's spool file, so the runner is never
//! held up by a coordinator outage and memory stays bounded however long it
//! lasts.
//!
//! Invariant: lines are numbered in arrival order; memory holds the oldest
//! unconfirmed ones, the spool's unread records the rest, then at most one
//! `held` line. While a spool exists it also holds a copy of every line in
//! memory (they are written to it when spilling starts), so the file a
//! killed daemon leaves behind continues exactly where the coordinator's
//! copy ends. The spool is removed once memory is empty and it has no
//! unread records.

use std::collections::VecDeque;
use std::path::PathBuf;

use tokio::time::Instant;

use super::batch::{BatchPolicy, Batcher};
use super::spool::{Replacement, Spool, SpoolError};
use crate::proto::LogLine;

pub(super) struct Backlog {
    batcher: Batcher,
    spool_dir: PathBuf,
    job_id: String,
    spool: Option<Spool>,
    /// Set when writing to the spool failed: it is only read from now on.
    spool_broken: bool,
    /// A numbered line that failed to reach the spool. Until it is in
    /// memory no more lines are taken: the runner waits instead.
    /// Lines not yet in memory or the spool after a spool write failed, in
    /// order: at most the pieces of one runner entry (a long line split in
    /// 64 KiB pieces), since no entry is read while any is held.
    held: VecDeque<LogLine>,
}

impl Backlog {
    pub(super) fn new(policy: BatchPolicy, spool_dir: PathBuf, job_id: &str) -> Self {
        Backlog {
            batcher: Batcher::new(policy),
            spool_dir,
            job_id: job_id.to_string(),
            spool: None,
            spool_broken: false,
            held: VecDeque::new(),
        }
    }

    /// Whether another line may be pushed (false only after a spool write
    /// failed, until memory has room again).
    pub(super) fn accepting(&self) -> bool {
        self.held.is_empty()
    }

    /// Takes the next line of the job. An error means the spool could not
    /// be written: the line is kept, but no more are taken until memory has
    /// room for it.
    pub(super) fn push(&mut self, line: LogLine, now: Instant) -> Result<(), SpoolError> {
        if !self.held.is_empty() {
            // Behind held lines: numbered now, kept in order after them.
            let line = self.batcher.number(line);
            self.held.push_back(line);
            return Ok(());
        }
        if self.spool.is_none() && !self.batcher.is_full() {
            self.batcher.push(line, now);
            return Ok(());
        }
        let line = self.batcher.number(line);
        let written = match self.spool.as_mut() {
            _ if self.spool_broken => Err(None),
            Some(spool) => spool.append(&line).map_err(Some),
            None => self.start_spool(&line).map_err(Some),
        };
        match written {
            Ok(()) => self.refill(now),
            Err(e) => {
                self.spool_broken = self.spool.is_some();
                self.held.push_back(line);
                e.map_or(Ok(()), Err)
            }
        }
    }

    /// Opens the spool with a copy of the lines in memory, then `line`.
    fn start_spool(&mut self, line: &LogLine) -> Result<(), SpoolError> {
        let mut spool = Spool::create(&self.spool_dir, &self.job_id)?;
        for held in self.batcher.pending() {
            spool.append(held)?;
        }
        spool.skip_unread()?;
        spool.append(line)?;
        tracing::info!(
            job_id = self.job_id,
            path = %spool.path().display(),
            "job log lines are not being confirmed; spooling them to disk"
        );
        self.spool = Some(spool);
        Ok(())
    }

    /// The coordinator stored every line up to `stored_seq`.
    pub(super) fn ack(&mut self, stored_seq: u64, now: Instant) -> Result<(), SpoolError> {
        self.batcher.ack(stored_seq);
        self.refill(now)
    }

    /// Moves spooled (then held) lines into memory while it has room, and
    /// removes the spool once it holds nothing memory does not.
    fn refill(&mut self, now: Instant) -> Result<(), SpoolError> {
        while !self.batcher.is_full() {
            if let Some(spool) = self.spool.as_mut()
                && let Some(line) = spool.next()?
            {
                self.batcher.hold(line, now);
            } else if let Some(line) = self.held.pop_front() {
                self.batcher.hold(line, now);
            } else {
                break;
            }
        }
        let drained = self.spool.as_ref().is_some_and(|s| s.unread() == 0);
        if drained && self.held.is_empty() && (self.batcher.is_empty() || self.spool_broken) {
            self.spool_broken = false;
            if let Some(spool) = self.spool.take() {
                spool.remove()?;
            }
        }
        Ok(())
    }

    /// Writes every unconfirmed line, in order — memory's, the spool's
    /// unread ones, the held one, then `rest` (lines the runner sent that
    /// were never taken; numbered here) — to the job's spool file, replacing
    /// it, for the next start of the daemon to deliver. For when the daemon
    /// gives up on reporting the job: the lines would die with it otherwise.
    /// Returns the spool's path, `None` if there was nothing to keep.
    pub(super) fn persist(mut self, rest: Vec<LogLine>) -> Result<Option<PathBuf>, SpoolError> {
        if self.is_empty() && rest.is_empty() {
            return Ok(None);
        }
        let mut out = Replacement::create(&self.spool_dir, &self.job_id)?;
        for line in self.batcher.pending() {
            out.append(line)?;
        }
        if let Some(spool) = self.spool.as_mut() {
            while let Some(line) = spool.next()? {
                out.append(&line)?;
            }
        }
        for line in self.held.drain(..) {
            out.append(&line)?;
        }
        for line in rest {
            out.append(&self.batcher.number(line))?;
        }
        out.commit().map(Some)
    }

    /// Nothing is waiting for confirmation, in memory or on disk.
    pub(super) fn is_empty(&self) -> bool {
        self.batcher.is_empty()
            && self.held.is_empty()
            && self.spool.as_ref().is_none_or(|s| s.unread() == 0)
    }

    pub(super) fn numbered(&self) -> u64 {
        self.batcher.numbered()
    }

    pub(super) fn spooled(&self) -> u64 {
        self.spool.as_ref().map_or(0, Spool::unread)
    }

    pub(super) fn due(&self, now: Instant) -> bool {
        self.batcher.due(now)
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.batcher.deadline()
    }

    pub(super) fn batch(&self) -> Vec<LogLine> {
        self.batcher.batch()
    }
}

#[cfg(test)]
mod tests;
