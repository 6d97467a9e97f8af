//! Events over PostgreSQL: the connection settings, the deployment's
//! scope, and the dedicated connection that `LISTEN`s (and comes back
//! after a drop, with a resync for what it may have missed). What this
//! replica publishes goes out through `publish.rs`.

use std::future::poll_fn;
use std::str::FromStr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Socket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{CHANNEL, ClusterError, Event};
use sha2::{Digest, Sha256};

pub(super) type Conn = tokio_postgres::Connection<Socket, NoTlsStream>;

/// Reconnect delays: from the first to the longest.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MOST: Duration = Duration::from_secs(2);

/// The connection settings for `url`, with TCP keepalives short enough
/// that a replica cut off from the database notices within seconds (an
/// idle LISTEN connection would otherwise wait for the kernel's hours).
pub(super) fn config(url: &str) -> Result<Config, ClusterError> {
    let mut c = Config::from_str(url).map_err(|e| ClusterError::Url(e.to_string()))?;
    // Named for operators (pg_stat_activity), unless the URL names them.
    if c.get_application_name().is_none() {
        c.application_name("provisionerd-coordinator");
    }
    c.connect_timeout(Duration::from_secs(5))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3);
    Ok(c)
}

/// What one deployment's replicas share, and nothing else does: the
/// notification channel and the leader lock. Both are per database in
/// PostgreSQL, and a deployment is its database *and* schema (the URL's
/// `search_path`; tests and shared servers put several in one database),
/// so a schema other than `public` gets its own, named after it.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    pub(super) channel: String,
    pub(super) lock_key: i64,
}

impl Scope {
    fn of(schema: &str) -> Scope {
        if schema == "public" {
            return Scope {
                channel: CHANNEL.to_string(),
                lock_key: super::leader::LOCK_KEY,
            };
        }
        let h = Sha256::digest(format!("provisionerd:{schema}").as_bytes());
        let mut key = [0u8; 8];
        key.copy_from_slice(&h[..8]);
        Scope {
            channel: format!("{CHANNEL}_{}", hex::encode(&h[..6])),
            lock_key: i64::from_be_bytes(key),
        }
    }
}

/// A growing delay between reconnects.
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Backoff {
        Backoff(BACKOFF_FIRST)
    }

    pub(super) fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MOST);
        d
    }
}

/// Sleeps `d`; false if `shutdown` came first.
pub(super) async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Connects and runs `LISTEN` on the scope's channel (the scope found on
/// this connection when `scope` is `None`), driving the connection
/// meanwhile.
async fn subscribe(
    config: &Config,
    scope: Option<&Scope>,
) -> Result<(Client, Conn, Scope), String> {
    let (client, mut conn) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    let listened = {
        let listen = async {
            let scope = match scope {
                Some(s) => s.clone(),
                None => {
                    let row = client
                        .query_one("SELECT coalesce(current_schema(), 'public')", &[])
                        .await?;
                    Scope::of(row.get::<_, &str>(0))
                }
            };
            client
                .batch_execute(&format!("LISTEN {}", scope.channel))
                .await
                .map(|()| scope)
        };
        tokio::pin!(listen);
        loop {
            tokio::select! {
                r = &mut listen => break r.map_err(|e| e.to_string()),
                m = poll_fn(|cx| conn.poll_message(cx)) => match m {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Err(e.to_string()),
                    None => break Err("the server closed the connection".to_string()),
                },
            }
        }
    };
    listened.map(|scope| (client, conn, scope))
}

/// Connects the listen connection (an error here stops the start), then
/// hands it to a task that feeds `inbox` until `shutdown`. Returns the
/// deployment's scope.
pub(super) async fn listen(
    config: &Config,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
    inbox: mpsc::Sender<Event>,
) -> Result<Scope, ClusterError> {
    let (client, conn, scope) = subscribe(config, None)
        .await
        .map_err(ClusterError::Connect)?;
    let task = listener(config.clone(), scope.clone(), client, conn, inbox, shutdown);
    tasks.spawn(task);
    Ok(scope)
}

/// Delivers notifications to the inbox; reconnects after a drop and then
/// delivers a resync, because events sent meanwhile are gone.
async fn listener(
    config: Config,
    scope: Scope,
    mut client: Client,
    mut conn: Conn,
    inbox: mpsc::Sender<Event>,
    shutdown: CancellationToken,
) {
    loop {
        let why = loop {
            let m = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = poll_fn(|cx| conn.poll_message(cx)) => m,
            };
            match m {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    match serde_json::from_str::<Event>(n.payload()) {
                        Ok(event) => {
                            if !deliver(&inbox, event, &shutdown).await {
                                return;
                            }
                        }
                        // Another version's event: what it meant is unknown.
                        Err(e) => {
                            tracing::warn!(error = %e, payload = n.payload(), "cluster: an event this version does not know; resyncing");
                            if !deliver(&inbox, Event::Resync, &shutdown).await {
                                return;
                            }
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break e.to_string(),
                None => break "the server closed the connection".to_string(),
            }
        };
        drop(client);
        tracing::warn!(error = %why, "cluster: lost the event connection (LISTEN); reconnecting");
        let mut backoff = Backoff::new();
        let mut tries = 0u32;
        (client, conn) = loop {
            if !pause(backoff.next(), &shutdown).await {
                return;
            }
            match subscribe(&config, Some(&scope)).await {
                Ok((client, conn, _)) => break (client, conn),
                Err(e) => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "cluster: reconnect the event connection");
                }
            }
        };
        tracing::info!(
            tries = tries + 1,
            "cluster: event connection back; resyncing, as events may have been missed"
        );
        if !deliver(&inbox, Event::Resync, &shutdown).await {
            return;
        }
    }
}

/// False if the inbox is gone or `shutdown` came first.
async fn deliver(inbox: &mpsc::Sender<Event>, e: Event, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        r = inbox.send(e) => r.is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::Scope;

    #[test]
    fn the_public_schema_has_the_documented_channel_and_lock_and_others_their_own() {
        let public = Scope::of("public");
        assert_eq!(public.channel, "provisionerd");
        assert_eq!(public.lock_key, super::super::LOCK_KEY);
        let (a, b) = (Scope::of("team_a"), Scope::of("team_b"));
        assert!(a.channel.starts_with("provisionerd_") && a.channel.len() == 25);
        assert_ne!(a.channel, b.channel);
        assert_ne!(a.lock_key, b.lock_key);
        assert_ne!(a.lock_key, public.lock_key);
    }
}
