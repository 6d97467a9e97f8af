//! Ships a running job's log lines with UpdateJob, which doubles as the job
//! heartbeat. One RPC is in flight at a time; lines keep arriving while it
//! is, and stay pending until the coordinator confirms storing them.

use std::future::{self, Future};
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::backoff::Backoff;
use super::batch::{BatchPolicy, Batcher};
use super::rpc::{self, Client, Verdict};
use crate::proto::{LogLevel, LogLine, LogSource, UpdateJobRequest, UpdateJobResponse};
use crate::runner::{Level, LogEntry, Source};

/// Without log traffic, an empty UpdateJob this often tells the coordinator
/// the job is alive (and asks whether it was canceled).
const HEARTBEAT: Duration = Duration::from_secs(5);

type InFlight = Pin<Box<dyn Future<Output = Result<UpdateJobResponse, Status>> + Send>>;

pub(super) struct Shipper<'a> {
    pub client: &'a Client,
    pub job_id: &'a str,
    /// Canceled when the coordinator answers `canceled`.
    pub job_cancel: &'a CancellationToken,
    pub started: Instant,
}

impl Shipper<'_> {
    /// Ships until `logs` closes (the runner returned) and every line is
    /// confirmed; returns the number of lines shipped. An error means the
    /// coordinator refused the job's updates for good.
    pub(super) async fn ship(&self, logs: &mut mpsc::Receiver<LogEntry>) -> Result<u64, String> {
        let mut batcher = Batcher::new(BatchPolicy::default());
        let mut in_flight: Option<InFlight> = None;
        let mut backoff = Backoff::new();
        let mut retry_at: Option<Instant> = None;
        let mut last_sent = Instant::now();
        let mut open = true;
        loop {
            if !open && batcher.is_empty() && in_flight.is_none() {
                return Ok(batcher.numbered());
            }
            let now = Instant::now();
            let heartbeat_at = last_sent + HEARTBEAT;
            if retry_at.is_some_and(|t| now >= t) {
                retry_at = None;
            }
            if in_flight.is_none() && retry_at.is_none() {
                let flushing = !open && !batcher.is_empty();
                if flushing || batcher.due(now) || now >= heartbeat_at {
                    in_flight = Some(self.send(batcher.batch()));
                    last_sent = now;
                }
            }
            // With nothing in flight, wake for the retry, the batch
            // deadline or the heartbeat, whichever is first.
            let wake = match (&in_flight, retry_at) {
                (Some(_), _) => None,
                (None, Some(t)) => Some(t),
                (None, None) => Some(
                    batcher
                        .deadline()
                        .map_or(heartbeat_at, |d| d.min(heartbeat_at)),
                ),
            };
            let answer = tokio::select! {
                entry = logs.recv(), if open && !batcher.is_full() => {
                    match entry {
                        Some(entry) => batcher.push(log_line(entry), Instant::now()),
                        None => open = false,
                    }
                    continue;
                }
                answer = poll_in_flight(&mut in_flight), if in_flight.is_some() => answer,
                () = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => continue,
            };
            in_flight = None;
            match answer {
                Ok(r) => {
                    backoff.reset();
                    batcher.ack(r.stored_seq);
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
                            "ship job logs failed; retrying"
                        );
                        retry_at = Some(Instant::now() + wait);
                    }
                    Verdict::Refused => {
                        return Err(format!(
                            "ship logs of job {}: coordinator refused: {}",
                            self.job_id,
                            rpc::describe(&st)
                        ));
                    }
                },
            }
        }
    }

    fn send(&self, logs: Vec<LogLine>) -> InFlight {
        let mut client = self.client.clone();
        let req = UpdateJobRequest {
            job_id: self.job_id.to_string(),
            logs,
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

/// The wire form of a runner line; `seq` is assigned by the batcher.
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
mod tests {
    use super::*;

    #[test]
    fn runner_lines_map_to_wire_enums() {
        let l = log_line(LogEntry {
            created_at_ms: 42,
            level: Level::Warn,
            source: Source::Terraform,
            stage: "Applying".into(),
            output: "done".into(),
        });
        assert_eq!(l.level, LogLevel::Warn as i32);
        assert_eq!(l.source, LogSource::Terraform as i32);
        assert_eq!(
            (l.created_at, l.stage.as_str(), l.output.as_str()),
            (42, "Applying", "done")
        );
    }
}
