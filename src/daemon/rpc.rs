//! The gRPC client the daemon uses, and how it judges RPC errors.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use super::{DaemonConfig, DaemonError};
use crate::proto::provisioner_daemon_client::ProvisionerDaemonClient;

pub(super) type Client = ProvisionerDaemonClient<InterceptedService<Channel, Auth>>;

/// Template archives and terraform states travel in one message.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// A unary RPC that has not answered by then is treated as lost and retried
/// (FinishJob may carry a large state, hence the generous bound).
pub(super) const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// The ack travels on the session stream, UpdateJob/FinishJob on their own
/// HTTP/2 streams, so the coordinator may see our first UpdateJob before
/// the AckJob and answer "not owned by this daemon". Such refusals are
/// retried for this long after the job started.
const ACK_GRACE: Duration = Duration::from_secs(5);

/// Adds `authorization: Bearer <key>` and the daemon's name to every
/// request; together they identify which jobs this daemon may touch.
#[derive(Clone)]
pub(super) struct Auth {
    bearer: MetadataValue<Ascii>,
    name: MetadataValue<Ascii>,
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert("authorization", self.bearer.clone());
        req.metadata_mut().insert(
            crate::coordinator::daemon_api::DAEMON_NAME_HEADER,
            self.name.clone(),
        );
        Ok(req)
    }
}

/// Builds the client. The channel connects lazily and reconnects by itself
/// after a broken connection, so one client serves the whole daemon life:
/// each session attempt and each unary retry rides a live connection.
pub(super) fn client(cfg: &DaemonConfig) -> Result<Client, DaemonError> {
    if !cfg.url.starts_with("http://") {
        return Err(DaemonError::Fatal(format!(
            "connect to coordinator {}: only http:// URLs are supported",
            cfg.url
        )));
    }
    let endpoint = Endpoint::from_shared(cfg.url.clone())
        .map_err(|e| DaemonError::Fatal(format!("parse coordinator URL {}: {e}", cfg.url)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let mut bearer: MetadataValue<Ascii> = format!("Bearer {}", cfg.key).parse().map_err(|_| {
        DaemonError::Fatal("read provisioner key: not a valid header value".to_string())
    })?;
    bearer.set_sensitive(true);
    let name: MetadataValue<Ascii> = cfg.name.parse().map_err(|_| {
        DaemonError::Fatal(format!(
            "daemon name {:?}: not a valid header value",
            cfg.name
        ))
    })?;
    Ok(
        ProvisionerDaemonClient::with_interceptor(endpoint.connect_lazy(), Auth { bearer, name })
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
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
    let mut text = format!("{:?}: {}", st.code(), st.message());
    let mut source = std::error::Error::source(st);
    while let Some(e) = source {
        let cause = e.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = e.source();
    }
    text
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

    #[test]
    fn only_https_is_refused_up_front() {
        let cfg = DaemonConfig {
            url: "https://coord:7800".into(),
            key: "k".into(),
            name: "d".into(),
            cache_dir: "/tmp/x".into(),
            terraform_path: "/bin/true".into(),
            cancel_grace: Duration::from_secs(1),
        };
        let err = client(&cfg).err().unwrap().to_string();
        assert!(err.contains("only http:// URLs"), "{err}");
        let bad_key = DaemonConfig {
            url: "http://coord:7800".into(),
            key: "a\nb".into(),
            ..cfg
        };
        assert!(client(&bad_key).is_err());
    }
}
