//! The admin client: a gRPC channel with the admin token on every call.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::CliError;
use crate::config::AdminArgs;
use crate::grpc::{self, Credentials};
use crate::proto::admin_client::AdminClient;

pub type Client = AdminClient<InterceptedService<Channel, Credentials>>;

/// Connects to the coordinator named by `--url` with the admin token.
pub async fn connect(args: &AdminArgs) -> Result<Client, CliError> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("read token file {}: {e}", path.display())))?
            .trim()
            .to_string(),
        (None, None) => {
            return Err(CliError::Usage(
                "no admin token: pass --token, --token-file or set PROVISIONERD_TOKEN (the coordinator writes it to DATA_DIR/admin-token)".into(),
            ));
        }
    };
    let credentials =
        Credentials::bearer(&token).map_err(|e| CliError::Usage(format!("admin token: {e}")))?;
    grpc::check_url(&args.url).map_err(|e| CliError::Usage(format!("--url {e}")))?;
    let endpoint = Endpoint::from_shared(args.url.clone())
        .map_err(|e| CliError::Usage(format!("--url {:?}: {e}", args.url)))?
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| {
        CliError::Failed(format!(
            "connect to coordinator {}: {}",
            args.url,
            grpc::error_chain(&e)
        ))
    })?;
    Ok(AdminClient::with_interceptor(channel, credentials)
        .max_decoding_message_size(grpc::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(grpc::MAX_MESSAGE_BYTES))
}
