//! gRPC pieces every side shares: the size limits, the URL rule, the
//! credentials interceptor and how transport errors are described; TLS in
//! [`tls`], secrets that never print in [`secret`].

pub mod secret;
pub mod tls;

pub use secret::Secret;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Status};

/// Largest gRPC message either side accepts (Coder's dRPC uses the same
/// 4 MiB). Anything that may be larger — template archives, terraform
/// states — travels in chunks (see [`crate::chunk`]), never in one message.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes per chunk of an archive or state: well under the message limit,
/// leaving room for the message's own fields.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Longest log line shipped in one `LogLine`: longer terraform output is
/// split into continuation lines, so a batch of lines always fits in a
/// message.
pub const MAX_LOG_LINE_BYTES: usize = 64 * 1024;

/// Metadata naming the daemon on its calls; together with the key it
/// identifies which jobs the caller may touch.
pub const DAEMON_NAME_HEADER: &str = "x-provisionerd-daemon";

/// Coordinator URLs are `https://` (TLS, see [`tls`]) or plain `http://`.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(format!("{url:?}: must start with https:// or http://"))
    }
}

/// Adds `authorization: Bearer <secret>` (a provisioner key or the admin
/// token) and, for daemons, their name to every request.
#[derive(Clone)]
pub struct Credentials {
    bearer: MetadataValue<Ascii>,
    daemon_name: Option<MetadataValue<Ascii>>,
}

impl Credentials {
    pub fn bearer(secret: &str) -> Result<Credentials, String> {
        let mut bearer: MetadataValue<Ascii> = format!("Bearer {}", secret.trim())
            .parse()
            .map_err(|_| "credential: contains characters not allowed in a header".to_string())?;
        // Kept out of tonic's debug output.
        bearer.set_sensitive(true);
        Ok(Credentials {
            bearer,
            daemon_name: None,
        })
    }

    pub fn with_daemon_name(mut self, name: &str) -> Result<Credentials, String> {
        let value = name
            .parse()
            .map_err(|_| format!("daemon name {name:?}: not a valid header value"))?;
        self.daemon_name = Some(value);
        Ok(self)
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert("authorization", self.bearer.clone());
        if let Some(name) = &self.daemon_name {
            req.metadata_mut().insert(DAEMON_NAME_HEADER, name.clone());
        }
        Ok(req)
    }
}

/// An error with its causes ("transport error: connection refused"):
/// tonic's top-level message alone rarely says what went wrong.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    with_causes(e.to_string(), e.source())
}

/// `head` followed by each cause of `source` not already in the text.
pub fn with_causes(
    mut text: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
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
