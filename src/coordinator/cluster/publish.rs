//! Sending this replica's events: `NOTIFY`s on a connection of their own,
//! a batch per statement, kept and sent again across a reconnect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tokio_postgres::{Client, Config, NoTls, Statement};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Event;
use super::pg::{Backoff, pause};

/// A `NOTIFY` payload must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7900;
/// Events sent in one statement at most.
const MAX_BATCH: usize = 256;

/// Sends this replica's published events, in order, a batch per statement.
pub(super) struct Publisher {
    pub(super) config: Config,
    pub(super) channel: String,
    pub(super) rx: mpsc::Receiver<Event>,
    /// Set when an event was dropped before it reached `rx`.
    pub(super) overflow: Arc<AtomicBool>,
    pub(super) tasks: TaskTracker,
}

impl Publisher {
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let mut link: Option<(Client, Statement)> = None;
        let mut batch: Vec<String> = Vec::new();
        let mut backoff = Backoff::new();
        loop {
            if batch.is_empty() {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    e = self.rx.recv() => e,
                };
                let Some(first) = first else { return };
                self.take(first, &mut batch);
                while batch.len() < MAX_BATCH {
                    match self.rx.try_recv() {
                        Ok(e) => self.take(e, &mut batch),
                        Err(_) => break,
                    }
                }
            }
            if self.overflow.swap(false, Ordering::AcqRel) {
                self.take(Event::Resync, &mut batch);
            }
            if link.is_none() {
                match self.connect().await {
                    Ok(l) => link = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, pending = batch.len(), "cluster: connect to publish events; retrying");
                        if !pause(backoff.next(), &shutdown).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some((client, notify)) = &link else {
                continue;
            };
            // Kept until sent: a retry after a reconnect sends them again
            // (events are idempotent, so one sent twice does no harm).
            match client.execute(notify, &[&batch]).await {
                Ok(_) => {
                    batch.clear();
                    backoff = Backoff::new();
                }
                Err(e) => {
                    tracing::warn!(error = %e, pending = batch.len(), "cluster: publish events; reconnecting");
                    link = None;
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
