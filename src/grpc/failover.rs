//! Several coordinator URLs behind one gRPC service (`--url A,B,C`): every
//! call goes to the current one, and a call that fails in the transport
//! (connection refused, reset, TLS) moves "current" on to the next URL, so
//! the caller's own retry reaches another replica. A load balancer or DNS
//! name in front of the replicas is just a list of one.
//!
//! The daemon's session pins each attempt to one URL ([`Failover::pinned`])
//! and makes the URL it is welcomed by the current one, so its unary calls
//! (job updates, finishes) follow the session.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{Service, http};
use tonic::transport::Channel;

/// Cheap to clone; clones share which URL is current.
#[derive(Clone)]
pub struct Failover {
    shared: Arc<Shared>,
    /// Calls through this handle go to that URL only.
    pin: Option<usize>,
}

struct Shared {
    urls: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
}

impl Failover {
    /// `channels[i]` is the channel to `urls[i]`; at least one.
    pub fn new(urls: Vec<String>, channels: Vec<Channel>) -> Failover {
        assert!(
            !urls.is_empty() && urls.len() == channels.len(),
            "one channel per URL, at least one"
        );
        Failover {
            shared: Arc::new(Shared {
                urls,
                channels,
                current: AtomicUsize::new(0),
            }),
            pin: None,
        }
    }

    pub fn len(&self) -> usize {
        self.shared.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.urls.is_empty()
    }

    pub fn url(&self, i: usize) -> &str {
        &self.shared.urls[i % self.len()]
    }

    /// The URL calls go to now (index into the list).
    pub fn current(&self) -> usize {
        self.shared.current.load(Ordering::Relaxed)
    }

    pub fn set_current(&self, i: usize) {
        self.shared.current.store(i % self.len(), Ordering::Relaxed);
    }

    /// Moves on from URL `i` to the next one, unless another caller has
    /// already moved on from it (several calls failing together move it
    /// once). Returns the current index.
    pub fn advance_from(&self, i: usize) -> usize {
        let next = (i + 1) % self.len();
        match self.shared.current.compare_exchange(
            i % self.len(),
            next,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => next,
            Err(now) => now,
        }
    }

    /// A handle whose calls go to URL `i` only (a transport failure still
    /// moves the shared current URL on from it).
    pub fn pinned(&self, i: usize) -> Failover {
        Failover {
            shared: self.shared.clone(),
            pin: Some(i % self.len()),
        }
    }
}

impl Service<http::Request<Body>> for Failover {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    // Readiness is checked on the chosen channel inside the call: which
    // channel that is is decided only then.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let i = self.pin.unwrap_or_else(|| self.current());
        let mut channel = self.shared.channels[i].clone();
        let this = self.clone();
        Box::pin(async move {
            let result = match std::future::poll_fn(|cx| channel.poll_ready(cx)).await {
                Ok(()) => channel.call(req).await,
                Err(e) => Err(e),
            };
            // Only a transport failure lands here (a gRPC error status is
            // a response): that URL is down or broke the connection.
            if result.is_err() {
                let now = this.advance_from(i);
                if now != i {
                    tracing::debug!(
                        from = this.url(i),
                        to = this.url(now),
                        "coordinator unreachable; next calls go to the next URL"
                    );
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failover(n: usize) -> Failover {
        let urls: Vec<String> = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", 1 + i))
            .collect();
        let channels = urls
            .iter()
            .map(|u| Channel::from_shared(u.clone()).unwrap().connect_lazy())
            .collect();
        Failover::new(urls, channels)
    }

    // A runtime: lazy channels spawn their worker on it.
    #[tokio::test]
    async fn several_failures_from_one_url_move_on_once() {
        let f = failover(3);
        assert_eq!(f.current(), 0);
        assert_eq!(f.advance_from(0), 1);
        // A second call that failed on URL 0 finds it already moved on.
        assert_eq!(f.advance_from(0), 1);
        assert_eq!(f.advance_from(1), 2);
        assert_eq!(f.advance_from(2), 0, "round robin wraps");
        f.set_current(4);
        assert_eq!(f.current(), 1);
        assert_eq!(f.pinned(5).url(5), "http://127.0.0.1:3");
    }

    /// A request to a port nothing listens on (port 1 and 2 on loopback).
    async fn call(f: &mut Failover) -> Result<http::Response<Body>, tonic::transport::Error> {
        let req = http::Request::builder()
            .uri("/provisionerd.v1.Admin/ListKeys")
            .body(Body::empty())
            .unwrap();
        f.call(req).await
    }

    #[tokio::test]
    async fn a_refused_connection_moves_the_next_call_to_the_next_url() {
        let mut f = failover(2);
        assert!(call(&mut f).await.is_err());
        assert_eq!(f.current(), 1, "moved on from the refused URL");
        // A pinned call that fails moves the shared current on as well.
        let mut pinned = f.pinned(1);
        assert!(call(&mut pinned).await.is_err());
        assert_eq!(f.current(), 0);
    }
}
