//! Leader election: the replica holding a PostgreSQL session advisory lock
//! on its own connection leads, for as long as that connection lives.
//! Every replica tries to take the lock each interval; the leader checks
//! its connection each interval instead, and stops leading the moment the
//! connection is lost or a check goes unanswered — before the server can
//! have released the lock to another replica (the server's own keepalive
//! on the session, set below, takes several seconds longer).

use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio_postgres::{Client, Config, NoTls};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pg::{Backoff, pause};

/// The advisory lock's key (in the `public` schema; see `pg::Scope`):
/// "provisi" in ASCII, then 1 for "leader".
pub const LOCK_KEY: i64 = 0x7072_6f76_6973_6901;

/// Server-side keepalives for the lock's session: the server drops (and
/// unlocks) a vanished leader after about 8 s, while the leader itself
/// gives up after one unanswered check (at most two intervals).
const SESSION_SETTINGS: &str = "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 1; \
     SET tcp_keepalives_count = 3; SET tcp_user_timeout = 8000";

pub(super) struct Election {
    pub(super) config: Config,
    pub(super) lock_key: i64,
    pub(super) every: Duration,
    pub(super) leader: watch::Sender<bool>,
    pub(super) gauge: Gauge,
    pub(super) tasks: TaskTracker,
}

/// The lock's connection, and whether it ended.
struct Link {
    client: Client,
    closed: CancellationToken,
}

impl Election {
    pub(super) async fn run(self, shutdown: CancellationToken) {
        let mut link: Option<Link> = None;
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Backoff::new();
        loop {
            let closed = link.as_ref().map(|l| l.closed.clone());
            tokio::select! {
                // Dropping the connection releases the lock at once.
                _ = shutdown.cancelled() => {
                    self.set(false, "shutting down");
                    return;
                }
                () = ended(closed) => {
                    link = None;
                    self.set(false, "lost the database connection holding the leader lock");
                    continue;
                }
                _ = tick.tick() => {}
            }
            if link.is_none() {
                match self.connect().await {
                    Ok(l) => {
                        link = Some(l);
                        backoff = Backoff::new();
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cluster: connect for leader election");
                        // Not every tick while the database is away.
                        if !pause(backoff.next(), &shutdown).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(l) = &link else { continue };
            let leading = *self.leader.borrow();
            let query = async {
                if leading {
                    // Held while the session lives: this checks the session.
                    l.client.simple_query("SELECT 1").await.map(|_| true)
                } else {
                    l.client
                        .query_one("SELECT pg_try_advisory_lock($1)", &[&self.lock_key])
                        .await
                        .map(|row| row.get::<_, bool>(0))
                }
            };
            let answer = tokio::time::timeout(self.every, query).await;
            match answer {
                Ok(Ok(true)) if !leading => self.set(true, "took the leader lock"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cluster: leader election query failed");
                    link = None;
                    self.set(false, "the leader lock's connection failed");
                }
                Err(_) => {
                    link = None;
                    self.set(false, "the leader lock's connection did not answer in time");
                }
            }
        }
    }

    async fn connect(&self) -> Result<Link, tokio_postgres::Error> {
        let (client, conn) = self.config.connect(NoTls).await?;
        let closed = CancellationToken::new();
        let done = closed.clone();
        self.tasks.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "cluster: leader lock connection ended");
            }
            done.cancel();
        });
        let settings = tokio::time::timeout(self.every, client.batch_execute(SESSION_SETTINGS));
        if let Ok(Err(e)) = settings.await {
            // An older server without one of them: the client side's
            // checks still hold.
            tracing::debug!(error = %e, "cluster: set keepalives on the leader lock's session");
        }
        Ok(Link { client, closed })
    }

    fn set(&self, leading: bool, why: &str) {
        // The gauge first: whoever sees the change sees it on the gauge too.
        self.gauge.set(i64::from(leading));
        let was = self.leader.send_replace(leading);
        match (was, leading) {
            (false, true) => tracing::info!(
                why,
                "cluster: this replica is now the leader (lease reaper, prebuild reconciler)"
            ),
            (true, false) => tracing::warn!(why, "cluster: this replica is no longer the leader"),
            _ => {}
        }
    }
}

async fn ended(closed: Option<CancellationToken>) {
    match closed {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
    }
}
