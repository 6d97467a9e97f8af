//! TLS for every gRPC connection (rustls with the ring provider): the
//! coordinator's certificate and, for mTLS, the CA its clients' certificates
//! must chain to; the clients' (daemon, admin CLI) trust roots — `--tls-ca`,
//! else the system's — and optional client certificate.
//!
//! Files are read, parsed and tried out when the config is validated, so a
//! missing file, bad PEM or a key that does not match its certificate fails
//! before anything starts (exit 64), never at the first connection.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A flag's file: unreadable or not the PEM it should be.
    #[error("{flag} {}: {message}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        message: String,
    },
    /// Flags that do not go together.
    #[error("{0}")]
    Usage(String),
    /// rustls refused the material (e.g. a key that is not the
    /// certificate's), or the URL cannot carry it.
    #[error("set up TLS for {subject}: {message}")]
    Setup { subject: String, message: String },
}

/// A PEM file's bytes, checked at load. `Debug` shows only the path: a
/// private key must never reach a log.
#[derive(Clone)]
struct Pem {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.path)
    }
}

impl Pem {
    fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
        std::fs::read(path).map_err(|e| TlsError::File {
            flag,
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })
    }

    /// One or more PEM certificates.
    fn certificates(flag: &'static str, path: &Path) -> Result<Pem, TlsError> {
        let bytes = Self::read(flag, path)?;
        let bad = |message: String| TlsError::File {
            flag,
            path: path.to_path_buf(),
            message,
        };
        let certs = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate (BEGIN CERTIFICATE) in it".into()));
        }
        Ok(Pem {
            path: path.to_path_buf(),
            bytes,
        })
    }

    /// A PEM private key (PKCS#8, PKCS#1 or SEC1).
    fn private_key(flag: &'static str, path: &Path) -> Result<Pem, TlsError> {
        let bytes = Self::read(flag, path)?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::File {
            flag,
            path: path.to_path_buf(),
            message: format!("not a PEM private key: {e}"),
        })?;
        Ok(Pem {
            path: path.to_path_buf(),
            bytes,
        })
    }
}

/// The coordinator's side: `--tls-cert`, `--tls-key`, `--tls-client-ca`.
#[derive(Clone, Debug)]
pub struct ServerTls {
    cert: Pem,
    key: Pem,
    client_ca: Option<Pem>,
}

impl ServerTls {
    /// `None` when no flag is given (plain HTTP/2).
    pub fn load(
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<ServerTls>, TlsError> {
        let (cert, key) = match (cert, key) {
            (None, None) if client_ca.is_some() => {
                return Err(TlsError::Usage(
                    "--tls-client-ca: needs --tls-cert and --tls-key (client certificates \
                     are checked only over TLS)"
                        .into(),
                ));
            }
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(TlsError::Usage("--tls-cert: needs --tls-key".into()));
            }
            (None, Some(_)) => {
                return Err(TlsError::Usage("--tls-key: needs --tls-cert".into()));
            }
            (Some(c), Some(k)) => (c, k),
        };
        let tls = ServerTls {
            cert: Pem::certificates("--tls-cert", cert)?,
            key: Pem::private_key("--tls-key", key)?,
            client_ca: client_ca
                .map(|p| Pem::certificates("--tls-client-ca", p))
                .transpose()?,
        };
        // Builds the rustls config now: a key that is not the
        // certificate's fails here.
        Server::builder()
            .tls_config(tls.config())
            .map_err(|e| TlsError::Setup {
                subject: format!("--tls-cert {}", cert.display()),
                message: super::error_chain(&e),
            })?;
        Ok(Some(tls))
    }

    /// Whether clients must present a certificate signed by the client CA.
    pub fn mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    pub fn config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new().identity(Identity::from_pem(
            self.cert.bytes.clone(),
            self.key.bytes.clone(),
        ));
        match &self.client_ca {
            // A certificate, if presented, must be signed by the client CA
            // (checked in the handshake). Its absence is refused after the
            // handshake, per request (`coordinator::auth::client_cert`):
            // with TLS 1.3 a handshake alert races the connection close and
            // clients often see only "connection closed"; a gRPC status
            // always arrives and says what to fix.
            Some(ca) => config
                .client_ca_root(Certificate::from_pem(ca.bytes.clone()))
                .client_auth_optional(true),
            None => config,
        }
    }
}

/// A client's side (daemon, admin CLI): trust roots and client certificate.
/// The default trusts the system's roots and presents no certificate.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    ca: Option<Pem>,
    identity: Option<(Pem, Pem)>,
}

impl ClientTls {
    /// Loads `--tls-ca`, `--tls-client-cert` and `--tls-client-key` for
    /// connections to `url`; they need an https:// URL.
    pub fn load(
        url: &str,
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<ClientTls, TlsError> {
        let given = [
            ("--tls-ca", ca),
            ("--tls-client-cert", cert),
            ("--tls-client-key", key),
        ];
        if !url.starts_with("https://")
            && let Some((flag, _)) = given.iter().find(|(_, p)| p.is_some())
        {
            return Err(TlsError::Usage(format!(
                "{flag}: given with the plain URL {url:?}; TLS needs an https:// URL"
            )));
        }
        let identity = match (cert, key) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsError::Usage(
                    "--tls-client-cert: needs --tls-client-key".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(TlsError::Usage(
                    "--tls-client-key: needs --tls-client-cert".into(),
                ));
            }
            (Some(c), Some(k)) => Some((
                Pem::certificates("--tls-client-cert", c)?,
                Pem::private_key("--tls-client-key", k)?,
            )),
        };
        let tls = ClientTls {
            ca: ca.map(|p| Pem::certificates("--tls-ca", p)).transpose()?,
            identity,
        };
        // Builds the rustls config now (system roots loaded, client key
        // checked), so a problem is a config error, not a retry loop.
        endpoint(url, &tls)?;
        Ok(tls)
    }

    fn config(&self) -> ClientTlsConfig {
        let config = match &self.ca {
            // Only the given CA: a private coordinator's certificate should
            // not also be accepted from any public CA.
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.bytes)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(&cert.bytes, &key.bytes)),
            None => config,
        }
    }
}

/// The endpoint for `url`: TLS with `tls` for https://, plain for http://.
pub fn endpoint(url: &str, tls: &ClientTls) -> Result<Endpoint, TlsError> {
    let setup = |message: String| TlsError::Setup {
        subject: url.to_string(),
        message,
    };
    // TCP_NODELAY (tonic's default, said here so it stays): a small
    // request must not wait for the coordinator's delayed ACK.
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| setup(e.to_string()))?
        .tcp_nodelay(true);
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    endpoint.tls_config(tls.config()).map_err(|e| {
        let chain = super::error_chain(&e);
        if chain.contains("no native certs") {
            setup(format!(
                "{chain}: the system has no root certificates; pass --tls-ca"
            ))
        } else {
            setup(chain)
        }
    })
}

/// Logs that a plain http:// connection to another host carries its
/// credential unencrypted. Loopback stays quiet: that traffic never
/// leaves the machine (the tests, the demo, a sidecar).
pub fn warn_if_plain(url: &str, credential: &str) {
    if let Some(rest) = url.strip_prefix("http://")
        && !is_loopback_host(rest)
    {
        tracing::warn!(
            %url,
            "plain http:// without TLS: traffic, including the {credential}, is unencrypted; \
             use an https:// URL"
        );
    }
}

/// Whether the authority at the start of `rest` ("host:port/...") is
/// loopback.
fn is_loopback_host(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What a TLS failure means, when `error_text` (an error and its causes)
/// shows one that retrying cannot fix; `None` for anything else. Matched on
/// rustls' messages because h2 keeps only the text of the I/O error that
/// carried the alert, not the rustls error itself.
pub fn refusal_hint(error_text: &str) -> Option<&'static str> {
    if error_text.contains("invalid peer certificate") {
        Some(
            "the coordinator's certificate is not trusted: pass --tls-ca with the CA \
             that signed it (without it the system's roots are used)",
        )
    } else if [
        "CertificateRequired",
        "BadCertificate",
        "UnknownCA",
        "CertificateUnknown",
        "CertificateExpired",
        "AccessDenied",
    ]
    .iter()
    .any(|alert| error_text.contains(&format!("received fatal alert: {alert}")))
    {
        Some(
            "the coordinator refused this client's certificate (it requires one its \
             client CA signed): pass --tls-client-cert and --tls-client-key",
        )
    } else if error_text.contains("corrupt message") {
        Some("the coordinator did not answer with TLS: is it serving plain http://?")
    } else {
        None
    }
}

/// For a retried failure: an https:// connection closed without a reason
/// may be a coordinator requiring client certificates whose alert was lost
/// in the race with the close (TLS 1.3 checks the client's certificate
/// after the client considers the handshake done). Empty otherwise.
pub fn closed_hint(url: &str, error_text: &str) -> &'static str {
    if url.starts_with("https://") && error_text.contains("connection closed") {
        "if the coordinator requires client certificates (mTLS), check \
         --tls-client-cert and --tls-client-key"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests;
