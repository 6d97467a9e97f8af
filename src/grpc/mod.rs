//! gRPC pieces every side shares: the size limits (in [`limits`]), the URL rule, the
//! credentials interceptor and how transport errors are described; TLS in
//! [`tls`], secrets that never print in [`secret`].

pub mod failover;
pub mod limits;
pub mod secret;
pub mod tls;

pub use secret::Secret;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Status};

// The size limits live in `limits`; the three every side uses are here too.
pub use limits::{CHUNK_BYTES, MAX_LOG_LINE_BYTES, MAX_MESSAGE_BYTES};

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

/// The coordinator URLs of `--url` (comma-separated and/or repeated), each
/// checked by [`check_url`], without a trailing `/`; at least one.
pub fn check_urls(urls: &[String]) -> Result<Vec<String>, String> {
    if urls.is_empty() {
        return Err("--url: no coordinator URL given".into());
    }
    urls.iter()
        .map(|u| {
            let u = u.trim();
            check_url(u).map_err(|e| format!("--url {e}"))?;
            Ok(u.trim_end_matches('/').to_string())
        })
        .collect()
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
