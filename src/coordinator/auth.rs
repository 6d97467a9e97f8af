//! Credentials: provisioner keys (daemons) and the admin token (CLI). Only
//! SHA-256 hashes are stored; secrets are compared in constant time.

use std::path::Path;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

use super::error::{CoordError, Result};
use super::store::{KeyRow, Store};

const ADMIN_HASH: &str = "admin_token_hash";

/// A fresh random secret with a recognisable prefix (`pdk_` for provisioner
/// keys, `pda_` for the admin token) so leaked ones are easy to grep for.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A job secret is `pdj_` and 64 hex digits; anything much longer cannot
/// be one, and is refused without hashing it.
const MAX_JOB_SECRET_BYTES: usize = 128;

/// A fresh secret for one offer (`pdj_`: a job's), and the hash the store
/// keeps. 32 random bytes: sha256 without a salt or stretching is enough,
/// since nobody can guess the input.
pub fn new_job_secret() -> (crate::grpc::Secret, String) {
    let secret = new_secret("pdj_");
    let hashed = hash(&secret);
    (crate::grpc::Secret::new(&secret), hashed)
}

/// Whether `given` is the job secret whose hash is `want`, compared in
/// constant time.
pub fn job_secret_matches(want: &str, given: &str) -> bool {
    if given.is_empty() || given.len() > MAX_JOB_SECRET_BYTES {
        return false;
    }
    bool::from(hash(given).as_bytes().ct_eq(want.as_bytes()))
}

/// The bearer credential of a request.
pub fn bearer(md: &MetadataMap) -> Result<&str> {
    md.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CoordError::Unauthenticated("missing bearer credential".into()))
}

/// What [`ensure_admin_token`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminToken {
    /// The database has one.
    Kept,
    /// A new token was written to this file (first start).
    Created(std::path::PathBuf),
    /// The database had none but this file held one, which the database now
    /// accepts (a data dir whose database was started anew).
    Adopted(std::path::PathBuf),
}

/// Makes the token in `file` the admin token (`--admin-token-file`): every
/// replica given the same file accepts the same token, and a changed file
/// replaces the old token at the next start.
pub fn provision_admin_token(store: &Store, file: &Path) -> Result<()> {
    let token = std::fs::read_to_string(file)
        .map_err(|e| CoordError::Invalid(format!("read admin token {}: {e}", file.display())))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(CoordError::Invalid(format!(
            "read admin token {}: the file is empty",
            file.display()
        )));
    }
    let hashed = hash(token);
    if store.setting(ADMIN_HASH)?.as_deref() != Some(hashed.as_str()) {
        store.set_setting(ADMIN_HASH, &hashed)?;
        tracing::info!(path = %file.display(), "admin token set from --admin-token-file");
    }
    Ok(())
}

/// Makes sure an admin token exists: on first start it is created and
/// written to `DIR/admin-token` (0600). An existing file is never
/// overwritten: operators' CLIs read it, so when the database has no token
/// the file's is taken.
pub fn ensure_admin_token(store: &Store, dir: &Path) -> Result<AdminToken> {
    let path = dir.join("admin-token");
    if store.setting(ADMIN_HASH)?.is_some() {
        return Ok(AdminToken::Kept);
    }
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => {
            store.set_setting(ADMIN_HASH, &hash(s.trim()))?;
            return Ok(AdminToken::Adopted(path));
        }
        // An empty file holds nothing to keep.
        Ok(_) => {
            tracing::warn!(path = %path.display(), "admin token file is empty: writing a new token")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(CoordError::Internal(format!(
                "read admin token {}: {e}",
                path.display()
            )));
        }
    }
    let secret = new_secret("pda_");
    write_private(&path, &secret)
        .map_err(|e| CoordError::Internal(format!("write admin token {}: {e}", path.display())))?;
    store.set_setting(ADMIN_HASH, &hash(&secret))?;
    Ok(AdminToken::Created(path))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{contents}")?;
    f.sync_all()
}

/// The admin token of `req`; on success its connection counts as
/// authenticated (`listener::prove`).
pub fn check_admin<T>(store: &Store, req: &tonic::Request<T>) -> Result<()> {
    let given = hash(bearer(req.metadata())?);
    let want = store
        .setting(ADMIN_HASH)?
        .ok_or_else(|| CoordError::Internal("admin token hash missing".into()))?;
    if bool::from(given.as_bytes().ct_eq(want.as_bytes())) {
        super::listener::prove(req);
        Ok(())
    } else {
        Err(CoordError::Unauthenticated("admin token refused".into()))
    }
}

/// The provisioner key a daemon presents; on success its connection
/// counts as authenticated (`listener::prove`).
pub fn check_key<T>(store: &Store, req: &tonic::Request<T>) -> Result<KeyRow> {
    // Lookup is by hash, so the secret itself is never compared byte-wise.
    let key = store
        .key_by_hash(&hash(bearer(req.metadata())?))?
        .ok_or_else(|| {
            CoordError::Unauthenticated("provisioner key refused: unknown or deleted key".into())
        })?;
    super::listener::prove(req);
    Ok(key)
}

/// With mutual TLS, every request must come with a client certificate (the
/// handshake has already checked that any certificate presented is signed
/// by the client CA). An interceptor on both services.
pub fn client_cert(
    req: tonic::Request<()>,
    required: bool,
) -> std::result::Result<tonic::Request<()>, tonic::Status> {
    if required && super::listener::peer_certs(&req).is_none_or(|certs| certs.is_empty()) {
        return Err(CoordError::Unauthenticated(
            "client certificate required: this coordinator takes only clients with a \
             certificate its client CA signed; pass --tls-client-cert and --tls-client-key"
                .into(),
        )
        .into());
    }
    Ok(req)
}
