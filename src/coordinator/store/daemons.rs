//! Provisioner keys and daemon records.

use rusqlite::{OptionalExtension, params};

use super::{Store, new_id, not_found, now_ms, tags_from_json, tags_to_json};
use crate::coordinator::error::{CoordError, Result};
use crate::tags::Tags;

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub name: String,
    pub tags: Tags,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct DaemonRow {
    pub id: String,
    pub name: String,
    pub key_name: String,
    pub tags: Tags,
    pub version: String,
    pub connected: bool,
    pub last_seen_at: i64,
    /// The job it runs now (running or canceling), if any.
    pub current_job_id: Option<String>,
}

impl Store {
    pub fn create_key(&self, name: &str, secret_hash: &str, tags: &Tags) -> Result<KeyRow> {
        let created_at = now_ms();
        let res = self.conn().execute(
            "INSERT INTO keys(name, secret_hash, tags, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, secret_hash, tags_to_json(tags)?, created_at],
        );
        match res {
            Ok(_) => Ok(KeyRow {
                name: name.to_string(),
                tags: tags.clone(),
                created_at,
            }),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(CoordError::AlreadyExists(format!(
                    "create key {name:?}: a key with that name exists"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn list_keys(&self) -> Result<Vec<KeyRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, tags, created_at FROM keys ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(KeyRow {
                name: r.get(0)?,
                tags: tags_from_json(&r.get::<_, String>(1)?),
                created_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn delete_key(&self, name: &str) -> Result<()> {
        let n = self
            .conn()
            .execute("DELETE FROM keys WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(not_found("key", name));
        }
        Ok(())
    }

    /// The key whose secret hashes to `hash`.
    pub fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRow>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, tags, created_at FROM keys WHERE secret_hash = ?1",
                [hash],
                |r| {
                    Ok(KeyRow {
                        name: r.get(0)?,
                        tags: tags_from_json(&r.get::<_, String>(1)?),
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Records a daemon as connected. Names are unique among connected
    /// daemons; a daemon reconnecting under its name keeps its id.
    pub fn connect_daemon(&self, name: &str, key: &KeyRow, version: &str) -> Result<DaemonRow> {
        let conn = self.conn();
        let existing: Option<(String, bool)> = conn
            .query_row(
                "SELECT id, connected FROM daemons WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let now = now_ms();
        let tags = tags_to_json(&key.tags)?;
        let id = match existing {
            Some((_, true)) => {
                return Err(CoordError::AlreadyExists(format!(
                    "register daemon {name:?}: a daemon with that name is already connected"
                )));
            }
            Some((id, false)) => {
                conn.execute(
                    "UPDATE daemons SET key_name = ?2, tags = ?3, version = ?4,
                     connected = 1, last_seen_at = ?5 WHERE id = ?1",
                    params![id, key.name, tags, version, now],
                )?;
                id
            }
            None => {
                let id = new_id();
                conn.execute(
                    "INSERT INTO daemons(id, name, key_name, tags, version, connected, last_seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
                    params![id, name, key.name, tags, version, now],
                )?;
                id
            }
        };
        Ok(DaemonRow {
            id,
            name: name.to_string(),
            key_name: key.name.clone(),
            tags: key.tags.clone(),
            version: version.to_string(),
            connected: true,
            last_seen_at: now,
            current_job_id: None,
        })
    }

    /// The daemon's session ended: it is offline, and any job offered to it
    /// but not acknowledged goes back to the queue.
    pub fn disconnect_daemon(&self, daemon_id: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "UPDATE daemons SET connected = 0, last_seen_at = ?2 WHERE id = ?1",
            params![daemon_id, now_ms()],
        )?;
        conn.execute(
            "UPDATE jobs SET offered_to = NULL WHERE offered_to = ?1 AND status = 'pending'",
            [daemon_id],
        )?;
        Ok(())
    }

    pub fn touch_daemon(&self, daemon_id: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE daemons SET last_seen_at = ?2 WHERE id = ?1",
            params![daemon_id, now_ms()],
        )?;
        Ok(())
    }

    pub fn list_daemons(&self) -> Result<Vec<DaemonRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT d.id, d.name, d.key_name, d.tags, d.version, d.connected, d.last_seen_at,
                    (SELECT j.id FROM jobs j WHERE j.daemon_id = d.id
                       AND j.status IN ('running', 'canceling') LIMIT 1)
             FROM daemons d ORDER BY d.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DaemonRow {
                id: r.get(0)?,
                name: r.get(1)?,
                key_name: r.get(2)?,
                tags: tags_from_json(&r.get::<_, String>(3)?),
                version: r.get(4)?,
                connected: r.get(5)?,
                last_seen_at: r.get(6)?,
                current_job_id: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
