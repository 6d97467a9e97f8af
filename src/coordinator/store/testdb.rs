//! For tests and benchmarks: the database a test's data dir maps to.
//!
//! With `PROVISIONERD_TEST_DATABASE_URL` set (a PostgreSQL server, as
//! `scripts/postgres.sh` prints), each data dir gets a schema of its own
//! in that database, named after the dir's path: the same dir (a
//! coordinator restarted on it) finds the same schema, and tests running
//! at once never share one. Unset: SQLite in the data dir, as always.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::Store;
use crate::coordinator::error::Result;

/// The env var naming the test server.
pub const SERVER_ENV: &str = "PROVISIONERD_TEST_DATABASE_URL";

/// The PostgreSQL URL for `dir`, its schema made if new; `None` when the
/// tests run on SQLite.
pub fn url_for(dir: &Path) -> Result<Option<String>> {
    match std::env::var(SERVER_ENV).ok().filter(|s| !s.is_empty()) {
        Some(server) => url_on(&server, dir).map(Some),
        None => Ok(None),
    }
}

/// The URL of `dir`'s schema on the server at `server`, made if new.
pub fn url_on(server: &str, dir: &Path) -> Result<String> {
    // As given (made absolute): the dir may not exist yet.
    let path = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let digest = hex::encode(Sha256::digest(path.to_string_lossy().as_bytes()));
    let schema = format!("t_{}", &digest[..20]);
    let pool = super::db::Pool::new(server, 1)?;
    let conn = pool.get()?;
    match conn.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")) {
        // Two processes making it at once: one wins, both may go on.
        Err(e) if !e.is_unique_violation() => return Err(e.into()),
        _ => {}
    }
    let sep = if server.contains('?') { '&' } else { '?' };
    Ok(format!("{server}{sep}options=-csearch_path%3D{schema}"))
}

/// A store for `dir` on the tests' engine (see the module doc).
pub fn open(dir: &Path) -> Result<Store> {
    match url_for(dir)? {
        Some(url) => {
            let store = Store::open_postgres(&url, 4)?;
            store.reset_on_start()?;
            Ok(store)
        }
        None => Store::open(dir),
    }
}
