//! Sending this replica's events: `NOTIFY`s on a connection of their own,
//! a batch per statement, kept and sent again across a reconnect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, NoTls, Statement};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Event;
use super::pg::Backoff;

/// A `NOTIFY` payload must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7900;
/// Events sent in one statement at most.
const MAX_BATCH: usize = 256;
/// At shutdown: how long events are still sent, and how long without one
/// ends that early.
const DRAIN: Duration = Duration::from_secs(1);
const QUIET: Duration = Duration::from_millis(200);

/// Sends this replica's published events, in order, a batch per statement.
pub(super) struct Publisher {
    pub(super) config: Config,
    pub(super) channel: String,
    pub(super) rx: mpsc::Receiver<Event>,
    /// Set when an event was dropped before it reached `rx`.
    pub(super) overflow: Arc<AtomicBool>,
    pub(super) tasks: TaskTracker,
}

/// The connection and what is taken from the channel but not yet sent.
#[derive(Default)]
struct Sending {
    link: Option<(Client, Statement)>,
    batch: Vec<String>,
}

impl Publisher {
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let mut sending = Sending::default();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            () = self.serve(&mut sending, None) => return,
        }
        // Shutting down: what is published while the sessions end (their
        // offers back in the queue, for the other replicas) still goes
        // out, for a short while.
        let _ = tokio::time::timeout(DRAIN, self.serve(&mut sending, Some(QUIET))).await;
    }

    /// Sends events until the channel closes, or (with `quiet`) until none
    /// came for that long. A batch stays in `sending` until it was sent.
    async fn serve(&mut self, sending: &mut Sending, quiet: Option<Duration>) {
        let mut backoff = Backoff::new();
        loop {
            if sending.batch.is_empty() {
                let first = match quiet {
                    None => self.rx.recv().await,
                    Some(q) => tokio::time::timeout(q, self.rx.recv()).await.ok().flatten(),
                };
                let Some(first) = first else { return };
                self.take(first, &mut sending.batch);
                while sending.batch.len() < MAX_BATCH {
                    match self.rx.try_recv() {
                        Ok(e) => self.take(e, &mut sending.batch),
                        Err(_) => break,
                    }
                }
            }
            if self.overflow.swap(false, Ordering::AcqRel) {
                self.take(Event::Resync, &mut sending.batch);
            }
            if sending.link.is_none() {
                match self.connect().await {
                    Ok(l) => sending.link = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, pending = sending.batch.len(), "cluster: connect to publish events; retrying");
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                }
            }
            let Some((client, notify)) = &sending.link else {
                continue;
            };
            // Kept until sent: a retry after a reconnect sends them again
            // (events are idempotent, so one sent twice does no harm).
            match client.execute(notify, &[&sending.batch]).await {
                Ok(_) => {
                    sending.batch.clear();
                    backoff = Backoff::new();
                }
                Err(e) => {
                    tracing::warn!(error = %e, pending = sending.batch.len(), "cluster: publish events; reconnecting");
                    sending.link = None;
                }
            }
        }
    }

    /// Adds `e` to the batch as its payload, unless the same payload is
    /// already in it (one is enough).
    fn take(&self, e: Event, batch: &mut Vec<String>) {
        let payload = payload(e);
        if !batch.contains(&payload) {
            batch.push(payload);
        }
    }

    async fn connect(&self) -> Result<(Client, Statement), tokio_postgres::Error> {
        let (client, conn) = self.config.connect(NoTls).await?;
        self.tasks.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "cluster: publish connection ended");
            }
        });
        // One statement for the batch: one round trip; a function scan
        // yields the array in order, so the events go out in order.
        let notify = client
            .prepare(&format!(
                "SELECT pg_notify('{}', p) FROM unnest($1::text[]) AS p",
                self.channel
            ))
            .await?;
        Ok((client, notify))
    }
}

/// The event as a payload; one too large for `NOTIFY` becomes what stands
/// in for it (a queued job's tags: a kick of every daemon).
fn payload(e: Event) -> String {
    let text = serde_json::to_string(&e).unwrap_or_default();
    if !text.is_empty() && text.len() <= MAX_PAYLOAD {
        return text;
    }
    let stand_in = match e {
        Event::JobQueued { .. } => Event::Kick,
        _ => Event::Resync,
    };
    tracing::warn!(
        bytes = text.len(),
        "cluster: event too large to send; sending {stand_in:?} instead"
    );
    serde_json::to_string(&stand_in).unwrap_or_default()
}
