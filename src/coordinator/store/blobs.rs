//! The two blobs a job needs — its template archive and its workspace's
//! state — carry their size and sha256 in columns written with the blob,
//! so an offer announces them without reading (or hashing) megabytes on
//! the dispatch path. The blob itself is read once, when the daemon
//! fetches it (`GetJobInput`).

use super::db::{Connection, params};

use crate::chunk::sha256_hex;
use crate::coordinator::error::Result;

/// Sets a workspace's state with its size and hash, in the caller's
/// transaction. Every write of `workspaces.state` goes through here.
pub(super) fn set_state(conn: &Connection, workspace_id: &str, state: &[u8]) -> Result<()> {
    conn.execute(
        "UPDATE workspaces SET state = ?2, state_size = ?3, state_sha256 = ?4 WHERE id = ?1",
        params![workspace_id, state, state.len() as i64, sha256_hex(state)],
    )?;
    Ok(())
}

/// The size and hash columns for an archive being inserted.
pub(super) fn digest(bytes: &[u8]) -> (i64, String) {
    (bytes.len() as i64, sha256_hex(bytes))
}

/// Fills the columns for rows written before they existed: one pass at
/// open, reading each blob once.
pub(super) fn backfill(conn: &Connection) -> Result<()> {
    let versions = each_blob(
        conn,
        "SELECT id FROM template_versions WHERE archive_sha256 IS NULL",
        "SELECT archive FROM template_versions WHERE id = ?1",
        |id, archive| {
            let (size, sha) = digest(archive);
            conn.execute(
                "UPDATE template_versions SET archive_size = ?2, archive_sha256 = ?3 WHERE id = ?1",
                params![id, size, sha],
            )?;
            Ok(())
        },
    )?;
    let workspaces = each_blob(
        conn,
        "SELECT id FROM workspaces WHERE state IS NOT NULL AND state_sha256 IS NULL",
        "SELECT state FROM workspaces WHERE id = ?1",
        |id, state| set_state(conn, id, state),
    )?;
    if versions + workspaces > 0 {
        tracing::info!(
            versions,
            workspaces,
            "schema 2: stored the sizes and hashes of template archives and workspace states"
        );
    }
    Ok(())
}

/// Calls `f` with each row `ids` names and its blob, one blob in memory at
/// a time; returns how many.
fn each_blob(
    conn: &Connection,
    ids: &str,
    blob: &str,
    mut f: impl FnMut(&str, &[u8]) -> Result<()>,
) -> Result<usize> {
    let ids: Vec<String> = conn
        .prepare(ids)?
        .query_map([], |r| r.get(0))?
        .collect::<super::db::Result<_>>()?;
    for id in &ids {
        let bytes: Vec<u8> = conn.query_row(blob, [id], |r| r.get(0))?;
        f(id, &bytes)?;
    }
    Ok(ids.len())
}
