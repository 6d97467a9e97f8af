//! The admin client: a gRPC channel with the admin token on every call.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::CliError;
use crate::config::AdminArgs;
use crate::coordinator::MAX_MESSAGE_BYTES;
use crate::proto::admin_client::AdminClient;

#[derive(Clone)]
pub struct TokenInterceptor(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Client = AdminClient<InterceptedService<Channel, TokenInterceptor>>;

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
    let value: MetadataValue<_> = format!("Bearer {token}").parse().map_err(|_| {
        CliError::Usage("admin token: contains characters not allowed in a header".into())
    })?;
    if !args.url.starts_with("http://") {
        return Err(CliError::Usage(format!(
            "--url {:?}: must be an http:// URL (TLS is not supported yet)",
            args.url
        )));
    }
    let endpoint = Endpoint::from_shared(args.url.clone())
        .map_err(|e| CliError::Usage(format!("--url {:?}: {e}", args.url)))?
        .connect_timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| {
        CliError::Failed(format!(
            "connect to coordinator {}: {}",
            args.url,
            error_chain(&e)
        ))
    })?;
    Ok(
        AdminClient::with_interceptor(channel, TokenInterceptor(value))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// An error with its causes ("transport error: connection refused"): tonic's
/// top-level message alone rarely says what went wrong.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    text
}
