//! The admin client: a gRPC channel with the admin token on every call.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::CliError;
use crate::config::AdminArgs;
use crate::grpc::{self, Credentials, Secret};
use crate::proto::admin_client::AdminClient;

pub type Client = AdminClient<InterceptedService<Channel, Credentials>>;

/// Connects to the coordinator named by `--url` with the admin token.
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
    grpc::check_url(&args.url).map_err(|e| CliError::Usage(format!("--url {e}")))?;
    let tls = args.tls.load(&args.url).map_err(CliError::Usage)?;
    grpc::tls::warn_if_plain(&args.url, "admin token");
    let endpoint = grpc::tls::endpoint(&args.url, &tls)
        .map_err(|e| CliError::Usage(e.to_string()))?
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| {
        let chain = grpc::error_chain(&e);
        let hint = grpc::tls::refusal_hint(&chain)
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
        CliError::Failed(format!(
            "connect to coordinator {}: {chain}{hint}",
            args.url
        ))
    })?;
    Ok(AdminClient::with_interceptor(channel, credentials)
        .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES))
}
