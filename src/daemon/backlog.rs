//! A running job's unconfirmed log lines: in memory up to the batch
//! policy's bound, beyond it in the job's spool file, so the runner is never
//! held up by a coordinator outage and memory stays bounded however long it
//! lasts.
//!
//! Invariant: lines are numbered in arrival order; memory holds the oldest
//! unconfirmed ones, the spool's unread records the rest, then the lines
//! bound for the spool but not written yet (`spill`: written together, see
//! [`Backlog::flush`]), then the `held` lines of a failed spool write.
//! While a spool exists it also holds a copy of every line in
//! memory (they are written to it when spilling starts), so the file a
//! killed daemon leaves behind continues exactly where the coordinator's
//! copy ends. The spool is removed once memory is empty and it has no
//! unread records.

use std::collections::VecDeque;
use std::path::PathBuf;

use tokio::time::Instant;

use super::batch::{BatchPolicy, Batcher};

/// Output bytes past which a burst of lines stops being taken and the
/// spill is written: bounds the memory a burst of long lines holds.
const SPILL_BYTES: usize = 1024 * 1024;
use super::spool::{Replacement, Spool, SpoolError};
use crate::proto::LogLine;

pub(super) struct Backlog {
    batcher: Batcher,
    spool_dir: PathBuf,
    job_id: String,
    spool: Option<Spool>,
    /// Set when writing to the spool failed: it is only read from now on.
    spool_broken: bool,
    /// Lines not yet in memory or the spool after a spool write failed, in
    /// order: at most one spill (bounded by [`SPILL_BYTES`], plus the pieces
    /// of the entry that crossed it), since no entry is read while any is
    /// held. Until they are in memory the runner waits.
    held: VecDeque<LogLine>,
    /// Numbered lines past the memory bound, to be written to the spool in
    /// one go by [`Backlog::flush`].
    spill: Vec<LogLine>,
    spill_bytes: usize,
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
            spill: Vec::new(),
            spill_bytes: 0,
        }
    }

    /// Whether another line may be pushed (false only after a spool write
    /// failed, until memory has room again).
    pub(super) fn accepting(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether a burst may take another line before [`Backlog::flush`].
    pub(super) fn taking_more(&self) -> bool {
        self.accepting() && self.spill_bytes < SPILL_BYTES
    }

    /// Takes the next line of the job. An error means the spool could not
    /// be written: the line is kept, but no more are taken until memory has
    /// room for it.
    #[cfg(test)]
    pub(super) fn push(&mut self, line: LogLine, now: Instant) -> Result<(), SpoolError> {
        self.push_buffered(line, now);
        self.flush(now)
    }

    /// Takes the next line like [`Backlog::push`], but a line bound for the
    /// spool waits for [`Backlog::flush`], which the caller must call before
    /// it waits for anything: lines taken in a burst go to disk in one
    /// write.
    pub(super) fn push_buffered(&mut self, line: LogLine, now: Instant) {
        if !self.held.is_empty() {
            // Behind held lines: numbered now, kept in order after them.
            let line = self.batcher.number(line);
            self.held.push_back(line);
            return;
        }
        if self.spool.is_none() && self.spill.is_empty() && !self.batcher.is_full() {
            self.batcher.push(line, now);
            return;
        }
        let line = self.batcher.number(line);
        self.spill_bytes += line.output.len();
        self.spill.push(line);
    }

    /// Writes the lines bound for the spool. On an error they are kept
    /// (held, in order), and no more lines are taken until memory has room
    /// for them.
    pub(super) fn flush(&mut self, now: Instant) -> Result<(), SpoolError> {
        if self.spill.is_empty() {
            return Ok(());
        }
        let written = match self.spool.as_mut() {
            _ if self.spool_broken => Err(None),
            Some(spool) => spool.append_all(&self.spill).map_err(Some),
            None => self.start_spool().map_err(Some),
        };
        match written {
            Ok(()) => {
                self.spill.clear();
                self.spill_bytes = 0;
                self.refill(now)
            }
            Err(e) => {
                self.spool_broken = self.spool.is_some();
                // Behind any held lines: the spill was numbered after them.
                self.held.extend(self.spill.drain(..));
                self.spill_bytes = 0;
                e.map_or(Ok(()), Err)
            }
        }
    }

    /// Opens the spool with a copy of the lines in memory, then the spill.
    fn start_spool(&mut self) -> Result<(), SpoolError> {
        let mut spool = Spool::create(&self.spool_dir, &self.job_id)?;
        let memory: Vec<LogLine> = self.batcher.pending().cloned().collect();
        spool.append_all(&memory)?;
        spool.skip_unread()?;
        spool.append_all(&self.spill)?;
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
        if drained
            && self.spill.is_empty()
            && self.held.is_empty()
            && (self.batcher.is_empty() || self.spool_broken)
        {
            self.spool_broken = false;
            if let Some(spool) = self.spool.take() {
                spool.remove()?;
            }
        }
        Ok(())
    }

    /// Writes every unconfirmed line, in order — memory's, the spool's
    /// unread ones, those bound for it, the held ones, then `rest` (lines the runner sent that
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
        out.append_all(&self.spill)?;
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
            && self.spill.is_empty()
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
