//! The coordinator's accept loop: every connection the gRPC server serves
//! comes from here (tonic's own `TcpIncoming` neither bounds nor times out
//! connections, and spins when accept fails at the open-file limit).
//!
//! - Every accepted socket gets `TCP_NODELAY` (a small gRPC message must
//!   not wait for a delayed ACK).
//! - A connection is *unproven* until a request on it passes
//!   authentication (`coordinator::auth` calls [`prove`]). An unproven
//!   connection is closed when `--handshake-timeout` passes (TLS, HTTP/2
//!   and the first authenticated request all fit inside it).
//! - At most `--max-unauthenticated-connections` are unproven at once (and
//!   never more than the open-file limit leaves room for): a new
//!   connection beyond it closes the *oldest* unproven one, so a flood of
//!   idle connections cannot lock daemons and operators out — the newest
//!   connection, theirs, is the last to go.
//! - Accept errors (EMFILE, ENFILE, ECONNABORTED, ...) are retried after a
//!   growing delay (5 ms doubling to 1 s), logged once per episode.
//!
//! State ownership: the accept task owns the queue of unproven connections;
//! each connection shares with it only an atomic state and the count.

mod backoff;
mod conn;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

pub use backoff::raise_open_file_limit;
use backoff::{Backoff, open_file_limit};
use conn::Shared;
pub use conn::{Conn, ConnInfo};

/// `--handshake-timeout` and `--max-unauthenticated-connections`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// An unproven connection is closed this long after it was accepted;
    /// also the longest a session may wait for its Hello.
    pub handshake_timeout: Duration,
    /// Most unproven connections at once.
    pub max_unauthenticated: usize,
}

pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Twice the 1,000 daemons a large deployment reconnects at once.
pub const DEFAULT_MAX_UNAUTHENTICATED: usize = 2048;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_unauthenticated: DEFAULT_MAX_UNAUTHENTICATED,
        }
    }
}

/// Marks the connection a request came on as authenticated.
pub fn prove<T>(req: &tonic::Request<T>) {
    if let Some(info) = req.extensions().get::<ConnInfo>() {
        info.prove();
    }
}

/// The client certificates of a TLS connection accepted here (tonic's
/// `Request::peer_certs` knows only its own connection type).
pub fn peer_certs<T>(
    req: &tonic::Request<T>,
) -> Option<Arc<Vec<rustls_pki_types::CertificateDer<'static>>>> {
    req.extensions()
        .get::<tonic::transport::server::TlsConnectInfo<ConnInfo>>()
        .and_then(|i| i.peer_certs())
}

/// Starts accepting on `listener`; the stream is for tonic's
/// `serve_with_incoming`. Stops when `shutdown` is cancelled.
pub fn incoming(
    tasks: &tokio_util::task::TaskTracker,
    listener: TcpListener,
    limits: Limits,
    shutdown: CancellationToken,
) -> ReceiverStream<io::Result<Conn>> {
    let cap = effective_cap(limits.max_unauthenticated, open_file_limit());
    tracing::info!(
        handshake_timeout = %humantime::format_duration(limits.handshake_timeout),
        max_unauthenticated = cap,
        "connection limits"
    );
    // Small: tonic takes each connection at once; when it does not, the
    // kernel's backlog holds the rest.
    let (tx, rx) = mpsc::channel(16);
    tasks.spawn(accept_loop(
        listener,
        limits.handshake_timeout,
        cap,
        tx,
        shutdown,
    ));
    ReceiverStream::new(rx)
}

/// Room kept for everything but unproven connections (proven ones, the
/// store, the operations endpoint): a quarter of the limit, at least 64.
fn effective_cap(wanted: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return wanted;
    };
    let room = limit.saturating_sub((limit / 4).max(64)).max(1);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if wanted > room {
        tracing::warn!(
            max_unauthenticated_connections = wanted,
            open_file_limit = limit,
            capped_at = room,
            "--max-unauthenticated-connections is more than the open-file limit leaves room \
             for; raise the limit (ulimit -n, LimitNOFILE=) to allow more"
        );
    }
    wanted.min(room)
}

async fn accept_loop(
    listener: TcpListener,
    timeout: Duration,
    cap: usize,
    tx: mpsc::Sender<io::Result<Conn>>,
    shutdown: CancellationToken,
) {
    let mut unproven = Unproven::new(cap);
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                backoff.succeeded();
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%remote, error = %e, "set TCP_NODELAY");
                }
                let shared = unproven.admit();
                let conn = Conn::new(stream, remote, shared, timeout);
                if tx.send(Ok(conn)).await.is_err() {
                    return; // the server stopped
                }
            }
            Err(e) => {
                // Nothing is closed to make room: the cap already keeps
                // unproven connections within their share of the limit,
                // so the files are held by authenticated ones.
                let delay = backoff.failed(&e);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Unproven connections, oldest first (entries proven or closed since are
/// skipped, and swept out when they pile up).
struct Unproven {
    queue: VecDeque<Arc<Shared>>,
    count: Arc<AtomicUsize>,
    cap: usize,
    evicted: u64,
    warned: Option<Instant>,
}

/// The cap warning's rate limit.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Unproven {
    fn new(cap: usize) -> Unproven {
        Unproven {
            queue: VecDeque::new(),
            count: Arc::new(AtomicUsize::new(0)),
            cap: cap.max(1),
            evicted: 0,
            warned: None,
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// A new connection; the oldest unproven ones make room for it.
    fn admit(&mut self) -> Arc<Shared> {
        while self.count() >= self.cap && self.evict_oldest() {}
        if self.queue.len() >= 2 * self.cap {
            self.queue.retain(|s| s.is_unproven());
        }
        let shared = Shared::new(self.count.clone());
        self.queue.push_back(shared.clone());
        shared
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some(s) = self.queue.pop_front() {
            if s.evict() {
                self.evicted += 1;
                self.warn();
                return true;
            }
        }
        false
    }

    fn warn(&mut self) {
        if self.warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        self.warned = Some(Instant::now());
        tracing::warn!(
            unauthenticated = self.count(),
            cap = self.cap,
            closed_so_far = self.evicted,
            "too many unauthenticated connections: closing the oldest \
             (a connection flood? see --max-unauthenticated-connections)"
        );
    }
}
