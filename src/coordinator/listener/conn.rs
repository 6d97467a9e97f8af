//! One accepted connection as the gRPC server sees it: the TCP stream, and
//! until a request on it passes authentication, a deadline and an eviction
//! signal that make its reads and writes fail (hyper then drops it, closing
//! the socket).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::Connected;

const UNPROVEN: u8 = 0;
const PROVEN: u8 = 1;
const CLOSED: u8 = 2;

/// What the accept loop and the connection share. Whoever moves it out of
/// `UNPROVEN` (a passed auth check, an eviction, a timeout, the close)
/// takes it off the unauthenticated count, so the count is exact.
pub(super) struct Shared {
    state: AtomicU8,
    unproven: Arc<AtomicUsize>,
    evicted: CancellationToken,
}

impl Shared {
    /// A new unproven connection, counted in `unproven`.
    pub(super) fn new(unproven: Arc<AtomicUsize>) -> Arc<Shared> {
        unproven.fetch_add(1, Ordering::SeqCst);
        Arc::new(Shared {
            state: AtomicU8::new(UNPROVEN),
            unproven,
            evicted: CancellationToken::new(),
        })
    }

    fn leave(&self, to: u8) -> bool {
        let left = self
            .state
            .compare_exchange(UNPROVEN, to, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if left {
            self.unproven.fetch_sub(1, Ordering::SeqCst);
        }
        left
    }

    pub(super) fn is_unproven(&self) -> bool {
        self.state.load(Ordering::SeqCst) == UNPROVEN
    }

    /// Closes the connection if it is still unproven; false if it was
    /// proven (or closed) meanwhile.
    pub(super) fn evict(&self) -> bool {
        let evicted = self.leave(CLOSED);
        if evicted {
            // Wakes the connection's task, whose next read or write fails.
            self.evicted.cancel();
        }
        evicted
    }
}

/// The per-connection handle tonic puts in each request's extensions
/// (`Connected::ConnectInfo`); with TLS, also inside tonic's
/// `TlsConnectInfo`, next to the peer certificates.
#[derive(Clone)]
pub struct ConnInfo {
    remote: SocketAddr,
    shared: Arc<Shared>,
}

impl ConnInfo {
    #[cfg(test)]
    pub(super) fn for_test(shared: Arc<Shared>) -> ConnInfo {
        ConnInfo {
            remote: ([127, 0, 0, 1], 0).into(),
            shared,
        }
    }

    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// A request on this connection passed authentication: it no longer
    /// counts as unauthenticated and is never closed for it.
    pub fn prove(&self) {
        if self.shared.leave(PROVEN) {
            tracing::debug!(remote = %self.remote, "connection authenticated");
        }
    }
}

/// Why an unproven connection was closed.
#[derive(Clone, Copy, Debug)]
enum Fate {
    TimedOut(Duration),
    Evicted,
}

impl Fate {
    fn error(self) -> io::Error {
        match self {
            Fate::TimedOut(t) => io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connection closed: no authenticated request within the {} handshake timeout",
                    humantime::format_duration(t)
                ),
            ),
            Fate::Evicted => io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection closed: too many unauthenticated connections, the oldest are closed",
            ),
        }
    }
}

/// Armed until the connection is proven.
struct Guard {
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    evicted: Pin<Box<WaitForCancellationFutureOwned>>,
}

/// An accepted TCP connection with its guard.
pub struct Conn {
    stream: TcpStream,
    info: ConnInfo,
    guard: Option<Guard>,
    fate: Option<Fate>,
}

impl Conn {
    pub(super) fn new(
        stream: TcpStream,
        remote: SocketAddr,
        shared: Arc<Shared>,
        timeout: Duration,
    ) -> Conn {
        let guard = Guard {
            timeout,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            evicted: Box::pin(shared.evicted.clone().cancelled_owned()),
        };
        Conn {
            stream,
            info: ConnInfo { remote, shared },
            guard: Some(guard),
            fate: None,
        }
    }

    /// The error every I/O call returns once the connection is condemned;
    /// `None` while it may go on. Polling the guard registers the task's
    /// waker, so a connection that never sends a byte still wakes up at its
    /// deadline or eviction.
    fn condemned(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if let Some(fate) = self.fate {
            return Some(fate.error());
        }
        let guard = self.guard.as_mut()?;
        let shared = &self.info.shared;
        let fate = match shared.state.load(Ordering::SeqCst) {
            PROVEN => None,
            CLOSED => Some(Fate::Evicted),
            _ if guard.evicted.as_mut().poll(cx).is_ready() => Some(Fate::Evicted),
            _ if guard.deadline.as_mut().poll(cx).is_ready() => {
                // Proven just now, between the load and here: it lives.
                shared
                    .leave(CLOSED)
                    .then_some(Fate::TimedOut(guard.timeout))
            }
            _ => return None,
        };
        self.guard = None;
        if let Some(fate) = fate {
            tracing::debug!(remote = %self.info.remote, ?fate, "unauthenticated connection closed");
            self.fate = Some(fate);
        }
        fate.map(Fate::error)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.info.shared.leave(CLOSED);
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.condemned(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.condemned(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.condemned(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.condemned(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Always allowed: a condemned connection may still send its FIN.
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
