//! The operations endpoint both `serve` and `start` offer on
//! `--metrics-address`: `/metrics` (Prometheus/OpenMetrics text from a
//! `prometheus-client` registry), `/healthz` (the process answers),
//! `/readyz` (ready to do work; the body says why not) and, for daemons,
//! `POST /drain` (what a preStop hook or a human calls instead of a
//! signal). Plain HTTP/1: scrapers and kubelets speak nothing else.
//!
//! The owner decides what "ready" means and what a drain does; this module
//! only serves them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Whether the process can do its work now; `Err` lists why not.
pub type ReadyFn = dyn Fn() -> Result<(), Vec<String>> + Send + Sync;
/// Starts a drain; returns what to tell the caller.
pub type DrainFn = dyn Fn() -> String + Send + Sync;

/// Run before each scrape is encoded: brings what the registry shows up
/// to date (bounded by the hook itself).
pub type FreshenFn =
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync;

/// What the endpoint serves.
#[derive(Clone)]
pub struct Endpoint {
    pub registry: Arc<Registry>,
    /// `None`: the registry is always current (the daemon's).
    pub freshen: Option<Arc<FreshenFn>>,
    pub ready: Arc<ReadyFn>,
    /// `None`: no `/drain` route (the coordinator).
    pub drain: Option<Arc<DrainFn>>,
}

#[derive(Debug, thiserror::Error)]
#[error("listen on --metrics-address {addr}: {source}")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds the listener up front, so a taken port is a startup error.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, endpoint: Endpoint, shutdown: CancellationToken) {
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    if endpoint.drain.is_some() {
        app = app.route("/drain", post(drain));
    }
    let app = app.with_state(endpoint);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "operations endpoint stopped");
    }
}

async fn metrics(State(ep): State<Endpoint>) -> Response {
    if let Some(freshen) = &ep.freshen {
        freshen().await;
    }
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &ep.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encode metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(ep): State<Endpoint>) -> Response {
    match (ep.ready)() {
        Ok(()) => "ready\n".into_response(),
        Err(reasons) => {
            let mut body = String::from("not ready:\n");
            for r in reasons {
                body.push_str(&format!("- {r}\n"));
            }
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
    }
}

/// Only from the same host: the metrics address is often reachable by the
/// whole cluster, and a drain takes a daemon out of its pool.
/// Nor from a web page: a browser on the host could be made to POST here
/// by any site it visits, and it always says where from (`Origin`); curl,
/// scripts and preStop hooks do not.
async fn drain(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    State(ep): State<Endpoint>,
) -> Response {
    if headers.contains_key(header::ORIGIN) {
        return (
            StatusCode::FORBIDDEN,
            "drain: not from a web page (the request has an Origin header)\n",
        )
            .into_response();
    }
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            format!("drain: only from this host (loopback), not {}\n", peer.ip()),
        )
            .into_response();
    }
    match &ep.drain {
        Some(start) => (StatusCode::ACCEPTED, format!("{}\n", start())).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests;
