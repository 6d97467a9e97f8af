//! The log batching policy, kept free of I/O so its timing can be tested:
//! numbers lines, holds them until the coordinator confirms storing them,
//! and says when a batch is due.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::proto::LogLine;

#[derive(Debug, Clone, Copy)]
pub(super) struct BatchPolicy {
    /// A line waits at most this long before a batch carrying it is due, so
    /// a continuous stream is shipped steadily rather than after silence.
    pub max_age: Duration,
    pub max_lines: usize,
    /// Output bytes per batch (a single larger line still goes alone).
    pub max_bytes: usize,
    /// Unconfirmed lines held in memory; beyond this (the coordinator is
    /// down) they go to the job's spool file (see `backlog`).
    pub max_pending_lines: usize,
    pub max_pending_bytes: usize,
}

impl Default for BatchPolicy {
    fn default() -> Self {
        BatchPolicy {
            max_age: Duration::from_millis(250),
            // A flood of short lines takes one UpdateJob per 1000 (200
            // made the round trips the bound); a batch still holds the
            // coordinator's store only a millisecond or two.
            max_lines: 1000,
            max_bytes: 512 * 1024,
            max_pending_lines: 10_000,
            max_pending_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug)]
pub(super) struct Batcher {
    policy: BatchPolicy,
    /// Unconfirmed lines in seq order, with the time each arrived.
    pending: VecDeque<(Instant, LogLine)>,
    pending_bytes: usize,
    next_seq: u64,
}

fn size(line: &LogLine) -> usize {
    line.output.len() + line.stage.len()
}

impl Batcher {
    pub(super) fn new(policy: BatchPolicy) -> Self {
        Batcher {
            policy,
            pending: VecDeque::new(),
            pending_bytes: 0,
            next_seq: 1,
        }
    }

    /// Numbers `line` (from 1, without gaps) and holds it until confirmed.
    pub(super) fn push(&mut self, line: LogLine, now: Instant) {
        let line = self.number(line);
        self.hold(line, now);
    }

    /// Gives `line` the next sequence number, without holding it (it is
    /// held later, or spooled).
    pub(super) fn number(&mut self, mut line: LogLine) -> LogLine {
        line.seq = self.next_seq;
        self.next_seq += 1;
        line
    }

    /// Holds an already numbered line until confirmed; lines must come in
    /// seq order. `now` starts its batch clock.
    pub(super) fn hold(&mut self, line: LogLine, now: Instant) {
        self.pending_bytes += size(&line);
        self.pending.push_back((now, line));
    }

    /// The unconfirmed lines, oldest first.
    pub(super) fn pending(&self) -> impl Iterator<Item = &LogLine> {
        self.pending.iter().map(|(_, line)| line)
    }

    /// How many lines have been numbered: the job's `log_count` once all
    /// are confirmed.
    pub(super) fn numbered(&self) -> u64 {
        self.next_seq - 1
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(super) fn is_full(&self) -> bool {
        self.pending.len() >= self.policy.max_pending_lines
            || self.pending_bytes >= self.policy.max_pending_bytes
    }

    /// When the oldest pending line turns `max_age` old.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.pending
            .front()
            .map(|(at, _)| *at + self.policy.max_age)
    }

    /// Whether enough is pending, or has waited long enough, to send.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.pending.len() >= self.policy.max_lines
            || self.pending_bytes >= self.policy.max_bytes
            || self.deadline().is_some_and(|d| now >= d)
    }

    /// The oldest pending lines, within the per-batch limits. They stay
    /// pending until [`Batcher::ack`] confirms them, so a failed send is
    /// simply retried.
    pub(super) fn batch(&self) -> Vec<LogLine> {
        let mut bytes = 0;
        let mut out = Vec::new();
        for (_, line) in &self.pending {
            if out.len() == self.policy.max_lines
                || (!out.is_empty() && bytes + size(line) > self.policy.max_bytes)
            {
                break;
            }
            bytes += size(line);
            out.push(line.clone());
        }
        out
    }

    /// The coordinator holds every line up to `stored_seq`: drop them.
    pub(super) fn ack(&mut self, stored_seq: u64) {
        while let Some((_, line)) = self.pending.front() {
            if line.seq > stored_seq {
                break;
            }
            self.pending_bytes -= size(line);
            self.pending.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(output: &str) -> LogLine {
        LogLine {
            output: output.to_string(),
            ..Default::default()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_lone_line_waits_for_max_age() {
        let t0 = Instant::now();
        let mut b = Batcher::new(BatchPolicy::default());
        assert!(!b.due(t0) && b.deadline().is_none());
        b.push(line("hello"), t0);
        assert!(!b.due(t0 + ms(249)));
        assert_eq!(b.deadline(), Some(t0 + ms(250)));
        assert!(b.due(t0 + ms(250)));
        assert_eq!(b.batch()[0].seq, 1);
    }

    #[test]
    fn a_continuous_stream_is_flushed_at_max_age_of_its_oldest_line() {
        let t0 = Instant::now();
        let mut b = Batcher::new(BatchPolicy::default());
        // One line every 10 ms never goes quiet, and never reaches max_lines
        // before 250 ms: the age of the first line triggers the batch.
        let mut t = t0;
        while t < t0 + ms(250) {
            b.push(line("x"), t);
            assert!(!b.due(t), "due too early at {:?}", t - t0);
            t += ms(10);
        }
        assert!(b.due(t0 + ms(250)));
        let sent = b.batch();
        assert_eq!(sent.len(), 25);
        // Confirmed lines go; the clock restarts at the oldest unsent line.
        b.push(line("late"), t0 + ms(260));
        b.ack(sent.last().unwrap().seq);
        assert_eq!(b.deadline(), Some(t0 + ms(510)));
        assert_eq!(b.batch()[0].seq, 26);
    }

    #[test]
    fn line_and_byte_limits_make_a_batch_due_at_once_and_cap_it() {
        let t0 = Instant::now();
        let mut b = Batcher::new(BatchPolicy::default());
        let max = BatchPolicy::default().max_lines;
        for _ in 1..max {
            b.push(line("x"), t0);
        }
        assert!(!b.due(t0));
        b.push(line("x"), t0);
        b.push(line("x"), t0);
        assert!(b.due(t0));
        assert_eq!(b.batch().len(), max);

        let mut b = Batcher::new(BatchPolicy::default());
        let big = "y".repeat(300 * 1024);
        b.push(line(&big), t0);
        assert!(!b.due(t0));
        b.push(line(&big), t0);
        assert!(b.due(t0), "600 KiB pending");
        assert_eq!(b.batch().len(), 1, "two would exceed 512 KiB");

        let mut b = Batcher::new(BatchPolicy::default());
        b.push(line(&"z".repeat(1024 * 1024)), t0);
        assert_eq!(b.batch().len(), 1, "an oversized line still goes");
    }

    #[test]
    fn a_flood_of_short_lines_goes_in_few_batches_each_far_below_the_message_limit() {
        use crate::grpc::limits::{MAX_LOG_STAGE_BYTES, MAX_MESSAGE_BYTES};
        use crate::proto::UpdateJobRequest;
        use prost::Message;
        let t0 = Instant::now();
        // The largest a batch of short lines gets: every field at its
        // widest (the longest stage, varints of the largest values).
        let widest = |output: &str| LogLine {
            seq: 0, // numbered by the batcher
            created_at: i64::MAX,
            level: i32::MAX,
            source: i32::MAX,
            stage: "s".repeat(MAX_LOG_STAGE_BYTES),
            output: output.to_string(),
        };
        let mut b = Batcher::new(BatchPolicy::default());
        let total = 10_000;
        for i in 0..total {
            b.push(widest(&format!("flood line {i:>40}")), t0);
        }
        let mut batches = 0;
        while !b.is_empty() {
            let batch = b.batch();
            let last = batch.last().unwrap().seq;
            let req = UpdateJobRequest {
                job_id: "x".repeat(64),
                logs: batch,
                job_secret: format!("pdj_{}", "0".repeat(64)),
            };
            assert!(
                req.encoded_len() < MAX_MESSAGE_BYTES / 4,
                "{} bytes",
                req.encoded_len()
            );
            b.ack(last);
            batches += 1;
        }
        assert!(batches <= 10, "{total} lines took {batches} UpdateJobs");
    }

    #[test]
    fn acks_drop_confirmed_lines_and_retries_resend_the_rest() {
        let t0 = Instant::now();
        let policy = BatchPolicy {
            max_pending_lines: 5,
            ..BatchPolicy::default()
        };
        let mut b = Batcher::new(policy);
        for i in 0..5 {
            b.push(line(&i.to_string()), t0);
        }
        assert!(b.is_full());
        assert_eq!(b.numbered(), 5);
        // A failed send confirms nothing: the same lines come again.
        assert_eq!(b.batch(), b.batch());
        // The coordinator stored part of the batch.
        b.ack(3);
        assert!(!b.is_full());
        let seqs: Vec<u64> = b.batch().iter().map(|l| l.seq).collect();
        assert_eq!(seqs, [4, 5]);
        // Stale or repeated acks change nothing.
        b.ack(2);
        assert_eq!(b.batch().len(), 2);
        b.ack(5);
        assert!(b.is_empty());
        b.push(line("next"), t0);
        assert_eq!(b.batch()[0].seq, 6);
    }
}
