//! Ships a running job's log lines with UpdateJob, which doubles as the job
//! heartbeat. One RPC is in flight at a time; lines keep arriving while it
//! is, and stay pending (in memory, or spooled to disk beyond a bound: see
//! `backlog`) until the coordinator confirms storing them.
//!
//! It also watches the job lease: a job whose updates have not got through
//! for longer than the coordinator's lease is being failed by the
//! coordinator, so terraform is interrupted rather than left to change
//! infrastructure nobody will hear about.

use std::future::{self, Future};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::backlog::Backlog;
use super::backoff::Backoff;
use super::batch::BatchPolicy;
use super::metrics::Metrics;
use super::rpc::{self, Client, Verdict};
use super::spool::SpoolError;
use crate::grpc::{MAX_LOG_LINE_BYTES, Secret};
use crate::proto::{LogLevel, LogLine, LogSource, UpdateJobRequest, UpdateJobResponse};
use crate::runner::{Level, LogEntry, Source};

/// Without log traffic, an empty UpdateJob this often tells the coordinator
/// the job is alive (and asks whether it was canceled); more often if the
/// lease is short.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// However short the lease, heartbeats never come closer than this.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// Most runner lines taken in one go, so a batch that is due is not kept
/// waiting behind a flood.
const BURST: usize = 512;

type InFlight = Pin<Box<dyn Future<Output = Result<UpdateJobResponse, Status>> + Send>>;

pub(super) struct Shipper<'a> {
    pub client: &'a Client,
    pub job_id: &'a str,
    /// The job's secret from its offer, sent with every update.
    pub secret: &'a Secret,
    /// Canceled when the coordinator answers `canceled`, or the lease ran
    /// out.
    pub job_cancel: &'a CancellationToken,
    pub started: Instant,
    /// The coordinator's job lease in milliseconds; 0 while unknown.
    pub lease_ms: &'a AtomicU64,
    /// Lines and bytes the coordinator confirmed are counted here.
    pub metrics: Metrics,
}

/// What shipping has done so far. The caller owns it, so that what is not
/// confirmed yet outlives a shipping the caller stopped waiting for.
pub(super) struct Progress {
    /// The lines not confirmed yet.
    pub backlog: Backlog,
    /// Set if terraform was interrupted because the coordinator was
    /// unreachable for longer than this lease.
    pub lease_expired: Option<Duration>,
}

impl Progress {
    /// Nothing shipped yet; lines beyond the in-memory bound go to a spool
    /// file under `spool_dir`.
    pub(super) fn new(spool_dir: PathBuf, job_id: &str) -> Self {
        Progress {
            backlog: Backlog::new(BatchPolicy::default(), spool_dir, job_id),
            lease_expired: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ShipError {
    #[error("ship logs of job {job_id}: coordinator refused: {reason}")]
    Refused { job_id: String, reason: String },
    /// The spool could not be read back: the lines after `stored` (all the
    /// coordinator has) are lost.
    #[error("ship logs of job {job_id}: {source}")]
    Spool {
        job_id: String,
        stored: u64,
        #[source]
        source: SpoolError,
    },
}

/// The heartbeat period for a lease (`ZERO`: unknown): several beats fit
/// in a lease, so one lost beat does not cost the job.
pub(super) fn heartbeat(lease: Duration) -> Duration {
    if lease.is_zero() {
        HEARTBEAT
    } else {
        (lease / 3).clamp(MIN_HEARTBEAT, HEARTBEAT)
    }
}

impl Shipper<'_> {
    /// Ships until `logs` closes (the runner returned) and every line is
    /// confirmed; returns how many lines were shipped (the job's
    /// `log_count`). An error means the coordinator refused the job's
    /// updates for good, or the spool could not be read back. Dropping the
    /// future leaves the unconfirmed lines in `progress`.
    pub(super) async fn ship(
        &self,
        logs: &mut mpsc::Receiver<LogEntry>,
        progress: &mut Progress,
    ) -> Result<u64, ShipError> {
        let Progress {
            backlog,
            lease_expired,
        } = progress;
        let mut in_flight: Option<InFlight> = None;
        // (seq, output bytes) of the lines in flight, and the highest seq
        // confirmed: what each answer newly confirms is counted once, even
        // when a lost answer made us resend.
        let mut sent: Vec<(u64, u64)> = Vec::new();
        let mut confirmed = 0;
        let mut backoff = Backoff::new();
        let mut retry_at: Option<Instant> = None;
        let mut last_sent = Instant::now();
        // Ownership was confirmed just before: the lease counts from here.
        let mut last_ok = Instant::now();
        let mut open = true;
        loop {
            if !open && backlog.is_empty() && in_flight.is_none() {
                return Ok(backlog.numbered());
            }
            let now = Instant::now();
            let lease = Duration::from_millis(self.lease_ms.load(Ordering::Relaxed));
            let heartbeat_at = last_sent + heartbeat(lease);
            if retry_at.is_some_and(|t| now >= t) {
                retry_at = None;
            }
            if in_flight.is_none() && retry_at.is_none() {
                let flushing = !open && !backlog.is_empty();
                if flushing || backlog.due(now) || now >= heartbeat_at {
                    let batch = backlog.batch();
                    sent = batch
                        .iter()
                        .map(|l| (l.seq, l.output.len() as u64))
                        .collect();
                    in_flight = Some(self.send(batch));
                    last_sent = now;
                }
            }
            // Only a running terraform is interrupted, and only once.
            let watch = open && lease_expired.is_none() && !self.job_cancel.is_cancelled();
            let lease_at = (watch && !lease.is_zero())
                .then(|| last_ok.checked_add(lease))
                .flatten();
            // With nothing in flight, wake for the retry, the batch
            // deadline or the heartbeat, whichever is first.
            let wake = match (&in_flight, retry_at) {
                (Some(_), _) => None,
                (None, Some(t)) => Some(t),
                (None, None) => Some(
                    backlog
                        .deadline()
                        .map_or(heartbeat_at, |d| d.min(heartbeat_at)),
                ),
            };
            let answer = tokio::select! {
                entry = logs.recv(), if open && backlog.accepting() => {
                    match entry {
                        Some(entry) => {
                            self.take(backlog, entry);
                            // Whatever else the runner has sent is taken now,
                            // and what spills goes to disk in one write: one
                            // turn of this loop, or one write, per line cost
                            // more than the line.
                            for _ in 1..BURST {
                                if !backlog.taking_more() {
                                    break;
                                }
                                match logs.try_recv() {
                                    Ok(entry) => self.take(backlog, entry),
                                    Err(mpsc::error::TryRecvError::Empty) => break,
                                    Err(mpsc::error::TryRecvError::Disconnected) => {
                                        open = false;
                                        break;
                                    }
                                }
                            }
                            self.flush(backlog);
                        }
                        None => open = false,
                    }
                    continue;
                }
                answer = poll_in_flight(&mut in_flight), if in_flight.is_some() => answer,
                () = tokio::time::sleep_until(lease_at.unwrap_or(now)), if lease_at.is_some() => {
                    *lease_expired = Some(lease);
                    self.lease_ran_out(lease, backlog.spooled());
                    continue;
                }
                () = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => continue,
            };
            in_flight = None;
            match answer {
                Ok(r) => {
                    let (lines, bytes) = sent
                        .iter()
                        .filter(|(seq, _)| *seq > confirmed && *seq <= r.stored_seq)
                        .fold((0, 0), |(n, b), (_, len)| (n + 1, b + len));
                    self.metrics.lines_shipped(lines, bytes);
                    confirmed = confirmed.max(r.stored_seq);
                    backoff.reset();
                    last_ok = Instant::now();
                    backlog
                        .ack(r.stored_seq, last_ok)
                        .map_err(|source| ShipError::Spool {
                            job_id: self.job_id.to_string(),
                            stored: r.stored_seq,
                            source,
                        })?;
                    if r.canceled && !self.job_cancel.is_cancelled() {
                        tracing::info!(
                            job_id = self.job_id,
                            "coordinator canceled the job; interrupting it"
                        );
                        self.job_cancel.cancel();
                    }
                }
                Err(st) => match rpc::classify(&st, self.started.elapsed()) {
                    Verdict::Retry => {
                        let wait = backoff.next_delay();
                        tracing::warn!(
                            job_id = self.job_id,
                            error = %rpc::describe(&st),
                            retry_in = ?wait,
                            spooled = backlog.spooled(),
                            "ship job logs failed; retrying"
                        );
                        retry_at = Some(Instant::now() + wait);
                    }
                    Verdict::Refused => {
                        return Err(ShipError::Refused {
                            job_id: self.job_id.to_string(),
                            reason: rpc::describe(&st),
                        });
                    }
                },
            }
        }
    }

    /// Adds one runner line to the backlog; lines bound for the spool wait
    /// for [`Shipper::flush`].
    fn take(&self, backlog: &mut Backlog, entry: LogEntry) {
        let now = Instant::now();
        for line in log_lines(entry) {
            backlog.push_buffered(line, now);
        }
    }

    /// Writes the lines taken past the memory bound to the spool. A write
    /// failure keeps them and pauses reading: the runner waits, nothing is
    /// lost.
    fn flush(&self, backlog: &mut Backlog) {
        if let Err(e) = backlog.flush(Instant::now()) {
            tracing::warn!(
                job_id = self.job_id,
                error = %e,
                "spool job logs to disk failed; terraform's output waits for the coordinator"
            );
        }
    }

    fn lease_ran_out(&self, lease: Duration, spooled: u64) {
        tracing::warn!(
            job_id = self.job_id,
            spooled,
            "coordinator unreachable for longer than the job lease ({}): \
             interrupting terraform, the job is being failed",
            humantime::format_duration(lease)
        );
        self.job_cancel.cancel();
    }

    fn send(&self, logs: Vec<LogLine>) -> InFlight {
        let mut client = self.client.clone();
        let req = UpdateJobRequest {
            job_id: self.job_id.to_string(),
            logs,
            job_secret: self.secret.expose().to_string(),
        };
        Box::pin(async move { rpc::bounded(client.update_job(req)).await })
    }
}

async fn poll_in_flight(f: &mut Option<InFlight>) -> Result<UpdateJobResponse, Status> {
    match f {
        Some(f) => f.await,
        None => future::pending().await,
    }
}

/// The wire form of a runner line; `seq` is assigned by the batcher. A
/// line longer than [`MAX_LOG_LINE_BYTES`] (one huge terraform output
/// line) becomes several continuation lines, split at character
/// boundaries, so every UpdateJob batch fits in a message and nothing is
/// truncated or dropped.
pub(super) fn log_lines(e: LogEntry) -> Vec<LogLine> {
    let line = log_line(e);
    if line.output.len() <= MAX_LOG_LINE_BYTES {
        return vec![line];
    }
    let mut pieces = Vec::new();
    let mut rest = line.output.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(MAX_LOG_LINE_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        pieces.push(LogLine {
            output: head.to_string(),
            ..line.clone()
        });
        rest = tail;
    }
    pieces
}

fn log_line(e: LogEntry) -> LogLine {
    let level = match e.level {
        Level::Trace => LogLevel::Trace,
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    let source = match e.source {
        Source::Daemon => LogSource::Daemon,
        Source::Terraform => LogSource::Terraform,
    };
    LogLine {
        seq: 0,
        created_at: e.created_at_ms,
        level: level as i32,
        source: source as i32,
        stage: e.stage,
        output: e.output,
    }
}

#[cfg(test)]
mod tests;
