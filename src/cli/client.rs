//! The admin client: a gRPC channel with the admin token on every call, to
//! the first of the `--url`s that connects.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::CliError;
use crate::config::AdminArgs;
use crate::grpc::failover::Failover;
use crate::grpc::{self, Credentials, Secret};
use crate::proto::admin_client::AdminClient;

pub type Client = AdminClient<InterceptedService<Failover, Credentials>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the coordinator with the admin token: the `--url`s are
/// tried in order and the first that connects serves the calls. The
/// others stay behind it (connecting when needed): a call that fails in
/// the transport moves the client on to the next URL, so a log follow
/// that loses its stream resumes on another replica.
pub async fn connect(args: &AdminArgs) -> Result<Client, CliError> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) if t.is_empty() => {
            return Err(CliError::Usage("--token: must not be empty".into()));
        }
        (Some(t), _) => t.clone(),
        (None, Some(path)) => Secret::from_file("--token-file", path).map_err(CliError::Usage)?,
        (None, None) => {
            return Err(CliError::Usage(
                "no admin token: pass --token, --token-file or set PROVISIONERD_TOKEN (the coordinator writes it to DATA_DIR/admin-token)".into(),
            ));
        }
    };
    let credentials = Credentials::bearer(token.expose())
        .map_err(|e| CliError::Usage(format!("admin token: {e}")))?;
    let urls = grpc::check_urls(&args.url).map_err(CliError::Usage)?;
    let tls = args.tls.load_for(&urls).map_err(CliError::Usage)?;
    let mut endpoints = Vec::with_capacity(urls.len());
    for url in &urls {
        grpc::tls::warn_if_plain(url, "admin token");
        let endpoint = grpc::tls::endpoint(url, &tls)
            .map_err(|e| CliError::Usage(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT);
        endpoints.push(endpoint);
    }
    let mut failures = Vec::new();
    let mut connected: Option<(usize, Channel)> = None;
    for (i, endpoint) in endpoints.iter().enumerate() {
        match endpoint.connect().await {
            Ok(channel) => {
                connected = Some((i, channel));
                break;
            }
            Err(e) => {
                let chain = grpc::error_chain(&e);
                let hint = grpc::tls::refusal_hint(&chain)
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                failures.push(format!("{}: {chain}{hint}", urls[i]));
            }
        }
    }
    let Some((first, channel)) = connected else {
        return Err(CliError::Failed(format!(
            "connect to coordinator {}",
            failures.join("; ")
        )));
    };
    if !failures.is_empty() {
        tracing::warn!(
            url = %urls[first],
            unreachable = %failures.join("; "),
            "some --url coordinators are unreachable; using a later one"
        );
    }
    let channels = endpoints
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            if i == first {
                channel.clone()
            } else {
                e.connect_lazy()
            }
        })
        .collect();
    let failover = Failover::new(urls, channels);
    failover.set_current(first);
    Ok(AdminClient::with_interceptor(failover, credentials)
        .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES))
}
