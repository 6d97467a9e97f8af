//! The gRPC client the daemon uses, and how it judges RPC errors.

use std::future::Future;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::{Code, Status};

use super::{DaemonConfig, DaemonError};
use crate::grpc::failover::Failover;
use crate::grpc::{self, Credentials};
use crate::proto::provisioner_daemon_client::ProvisionerDaemonClient;

pub(super) type Client = ProvisionerDaemonClient<InterceptedService<Failover, Credentials>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// A unary RPC that has not answered by then is treated as lost and retried.
/// Streamed transfers (job input, FinishJob) get more per byte
/// (`transfer`).
pub(super) const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// The ack travels on the session stream, UpdateJob/FinishJob on their own
/// HTTP/2 streams, so the coordinator may see our first UpdateJob before
/// the AckJob and answer "not owned by this daemon". Such refusals are
/// retried for this long after the job started.
const ACK_GRACE: Duration = Duration::from_secs(5);

/// The clients of the coordinator URLs (`--url A,B`).
#[derive(Clone)]
pub(super) struct Clients {
    /// Calls go to the current URL, the one the session last reached (a
    /// transport failure moves on to the next).
    pub(super) any: Client,
    /// `pinned[i]` calls URL `i` only: one session attempt.
    pub(super) pinned: Vec<Client>,
    pub(super) failover: Failover,
}

/// Builds the clients. Each channel connects lazily and reconnects by
/// itself after a broken connection, so they serve the whole daemon life:
/// each session attempt and each unary retry rides a live connection.
pub(super) fn client(cfg: &DaemonConfig) -> Result<Clients, DaemonError> {
    let urls = grpc::check_urls(&cfg.urls)
        .map_err(|e| DaemonError::Fatal(format!("connect to coordinator: {e}")))?;
    let credentials = Credentials::bearer(cfg.key.expose())
        .and_then(|c| c.with_daemon_name(&cfg.name))
        .map_err(|e| DaemonError::Fatal(format!("read provisioner key: {e}")))?;
    let mut channels = Vec::with_capacity(urls.len());
    for url in &urls {
        grpc::tls::warn_if_plain(url, "provisioner key");
        let endpoint = grpc::tls::endpoint(url, &cfg.tls)
            .map_err(|e| DaemonError::Fatal(format!("connect to coordinator: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        channels.push(endpoint.connect_lazy());
    }
    let failover = Failover::new(urls, channels);
    let with = |service: Failover| {
        ProvisionerDaemonClient::with_interceptor(service, credentials.clone())
            .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES)
    };
    Ok(Clients {
        any: with(failover.clone()),
        pinned: (0..failover.len())
            .map(|i| with(failover.pinned(i)))
            .collect(),
        failover,
    })
}

/// A client of one URL, connecting lazily, with key "k" (unit tests).
#[cfg(test)]
pub(super) fn test_client(url: &str) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect_lazy();
    let failover = Failover::new(vec![url.to_string()], vec![channel]);
    ProvisionerDaemonClient::with_interceptor(failover, Credentials::bearer("k").unwrap())
}

/// Whether the coordinator refused our credentials (never worth a retry).
pub(super) fn is_auth_refusal(st: &Status) -> bool {
    matches!(st.code(), Code::Unauthenticated | Code::PermissionDenied)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The coordinator or the path to it is in trouble: try again later.
    Retry,
    /// The coordinator answered no and will keep answering no.
    Refused,
}

/// Judges a failed UpdateJob/FinishJob made `since_start` after the job
/// started.
pub(super) fn classify(st: &Status, since_start: Duration) -> Verdict {
    match st.code() {
        Code::Unavailable
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Internal
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled => Verdict::Retry,
        Code::PermissionDenied | Code::NotFound if since_start < ACK_GRACE => Verdict::Retry,
        _ => Verdict::Refused,
    }
}

/// `Code: message: cause: cause`, without tonic's metadata dump; transport
/// errors keep their cause ("connection refused") in the source chain.
pub(super) fn describe(st: &Status) -> String {
    grpc::with_causes(
        format!("{:?}: {}", st.code(), st.message()),
        std::error::Error::source(st),
    )
}

/// Bounds a unary call so a wedged connection becomes a retryable error.
pub(super) async fn bounded<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no answer within {}s",
            RPC_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_refusals_are_retried_only_right_after_the_ack() {
        let denied = Status::permission_denied("job j is not owned by daemon \"d\"");
        assert_eq!(classify(&denied, Duration::from_secs(1)), Verdict::Retry);
        assert_eq!(classify(&denied, Duration::from_secs(60)), Verdict::Refused);
        let gap = Status::failed_precondition("log line 9 would leave a gap after 7");
        assert_eq!(classify(&gap, Duration::ZERO), Verdict::Refused);
        let down = Status::unavailable("transport error");
        assert_eq!(classify(&down, Duration::from_secs(3600)), Verdict::Retry);
    }

    // A runtime: the channel's connector lives on it.
    #[tokio::test]
    async fn only_bad_schemes_and_keys_are_refused_up_front() {
        let cfg = DaemonConfig {
            urls: vec!["ftp://coord:7800".into()],
            key: "k".into(),
            tls: Default::default(),
            name: "d".into(),
            name_conflict_timeout: Duration::from_secs(60),
            cache_dir: "/tmp/x".into(),
            terraform_path: "/bin/true".into(),
            cancel_grace: Duration::from_secs(1),
            drain_timeout: None,
            archive_limits: Default::default(),
            ops: Default::default(),
        };
        let err = client(&cfg).err().unwrap().to_string();
        assert!(err.contains("must start with https:// or http://"), "{err}");
        let https = DaemonConfig {
            urls: vec!["http://coord:7800".into(), "https://coord:7801".into()],
            ..cfg.clone()
        };
        assert!(client(&https).is_ok());
        let bad_key = DaemonConfig {
            urls: vec!["http://coord:7800".into()],
            key: "a\nb".into(),
            ..cfg
        };
        assert!(client(&bad_key).is_err());
    }
}
