//! Provisioner keys and daemon records.

use super::db::{OptionalExtension, params};

use super::{Store, new_id, not_found, now_ms, tags_from_json, tags_to_json};
use crate::coordinator::error::{CoordError, Result};
use crate::proto::DaemonState;
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
    /// The job the store has it running (running or canceling), if any.
    pub current_job_id: Option<String>,
    /// What the daemon last said it is doing.
    pub report: Report,
    /// A job offered to it that it has not acknowledged (yet).
    pub offered_job_id: Option<String>,
}

/// What a daemon says it is doing: in its Hello, then in each StateUpdate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// `None`: unreported (an older daemon, or a state this version does not
    /// know); the status is then derived from the jobs it runs.
    pub state: Option<DaemonState>,
    pub job_id: Option<String>,
}

impl Report {
    /// From the wire: `state` is a `DaemonState`, `job_id` empty for none.
    pub fn new(state: i32, job_id: &str) -> Report {
        Report {
            state: DaemonState::try_from(state)
                .ok()
                .filter(|s| *s != DaemonState::Unspecified),
            // Stored and listed: a job id can never be longer, so a longer
            // one (a StateUpdate is not refused) is cut, not kept whole.
            job_id: (!job_id.is_empty()).then(|| {
                crate::grpc::limits::truncate(job_id.to_string(), crate::grpc::limits::MAX_ID_BYTES)
            }),
        }
    }

    /// A draining or canceling daemon is never offered a job.
    pub fn takes_jobs(&self) -> bool {
        !matches!(
            self.state,
            Some(DaemonState::Draining | DaemonState::Canceling)
        )
    }
}

fn state_to_db(state: Option<DaemonState>) -> Option<&'static str> {
    Some(match state? {
        DaemonState::Idle => "idle",
        DaemonState::Busy => "busy",
        DaemonState::Draining => "draining",
        DaemonState::Canceling => "canceling",
        DaemonState::NotReady => "not-ready",
        DaemonState::Unspecified => return None,
    })
}

fn state_from_db(s: Option<&str>) -> Option<DaemonState> {
    Some(match s? {
        "idle" => DaemonState::Idle,
        "busy" => DaemonState::Busy,
        "draining" => DaemonState::Draining,
        "canceling" => DaemonState::Canceling,
        "not-ready" => DaemonState::NotReady,
        _ => return None,
    })
}

impl DaemonRow {
    /// Idle (by its report, or by the store when unreported) with an offer
    /// it has not acknowledged.
    fn holds_offer(&self) -> bool {
        self.offered_job_id.is_some()
            && match self.report.state {
                Some(s) => s == DaemonState::Idle,
                None => self.current_job_id.is_none(),
            }
    }

    /// `offline`, else the state the daemon reported; a daemon that reports
    /// nothing is `busy` while the store has it running a job, else `idle`.
    /// An idle daemon holding an unacknowledged offer is `offered`: it is
    /// not free, and the job is not running yet.
    pub fn status(&self) -> &'static str {
        if !self.connected {
            return "offline";
        }
        if self.holds_offer() {
            return "offered";
        }
        match (self.report.state, &self.current_job_id) {
            (Some(s), _) => state_to_db(Some(s)).unwrap_or("idle"),
            (None, Some(_)) => "busy",
            (None, None) => "idle",
        }
    }

    /// The job the daemon reports running while connected and reporting;
    /// otherwise the one the store has it running.
    pub fn current_job(&self) -> Option<&str> {
        if self.connected && self.holds_offer() {
            return self.offered_job_id.as_deref();
        }
        if self.connected && self.report.state.is_some() {
            self.report.job_id.as_deref()
        } else {
            self.current_job_id.as_deref()
        }
    }
}

impl Store {
    pub fn create_key(&self, name: &str, secret_hash: &str, tags: &Tags) -> Result<KeyRow> {
        let created_at = now_ms();
        let res = self.conn()?.execute(
            "INSERT INTO keys(name, secret_hash, tags, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, secret_hash, tags_to_json(tags)?, created_at],
        );
        match res {
            Ok(_) => Ok(KeyRow {
                name: name.to_string(),
                tags: tags.clone(),
                created_at,
            }),
            Err(e) if e.is_unique_violation() => Err(CoordError::AlreadyExists(format!(
                "create key {name:?}: a key with that name exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub fn list_keys(&self) -> Result<Vec<KeyRow>> {
        self.keys_after("", -1)
    }

    /// Keys named after `after`, by name; at most `limit` (-1: all).
    pub fn keys_after(&self, after: &str, limit: i64) -> Result<Vec<KeyRow>> {
        let limit = super::all_if_negative(limit);
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT name, tags, created_at FROM keys WHERE name > ?1 ORDER BY name LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit], |r| {
            Ok(KeyRow {
                name: r.get(0)?,
                tags: tags_from_json(&r.get::<_, String>(1)?),
                created_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes the key. Its daemons stay listed (offline once their
    /// sessions end) but their names are free: see `connect_daemon`.
    pub fn delete_key(&self, name: &str) -> Result<()> {
        let n = self
            .conn()?
            .execute("DELETE FROM keys WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(not_found("key", name));
        }
        Ok(())
    }

    /// The key whose secret hashes to `hash`.
    pub fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRow>> {
        Ok(self
            .conn()?
            // Cached: every daemon call is authenticated with it.
            .prepare_cached("SELECT name, tags, created_at FROM keys WHERE secret_hash = ?1")?
            .query_row([hash], |r| {
                Ok(KeyRow {
                    name: r.get(0)?,
                    tags: tags_from_json(&r.get::<_, String>(1)?),
                    created_at: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// Records a daemon as connected, with the state its Hello reports.
    /// A name belongs to the key that first registered it until that key is
    /// deleted (the name is then taken afresh: a new daemon id, the old
    /// row's jobs keeping theirs): another key is refused for good
    /// (FailedPrecondition), the
    /// same key while a daemon of that name is connected gets AlreadyExists
    /// (the daemon retries: it may be its own previous session, not yet
    /// noticed gone). A daemon reconnecting under its name keeps its id.
    pub fn connect_daemon(
        &self,
        name: &str,
        key: &KeyRow,
        version: &str,
        report: &Report,
    ) -> Result<DaemonRow> {
        self.write(|tx| {
            let mut existing: Option<(String, String, bool)> = tx
                .query_row(
                    // A session on a dead replica is no session.
                    &format!(
                        "SELECT d.id, d.key_name, {} FROM daemons d WHERE d.name = ?1",
                        super::replicas::live_session("d", 2)
                    ),
                    params![name, super::replicas::cutoff()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let mut owner_deleted = false;
            if let Some((id, owner, connected)) = &existing {
                owner_deleted = !tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM keys WHERE name = ?1)",
                    [owner],
                    |r| r.get::<_, bool>(0),
                )?;
                // A deleted key's daemon still connected is being disconnected
                // (`Hub::disconnect_key`); until then its name stays taken.
                if owner_deleted && !connected {
                    tx.execute("DELETE FROM daemons WHERE id = ?1", [id])?;
                    existing = None;
                }
            }
            let now = now_ms();
            let tags = tags_to_json(&key.tags)?;
            let id = match existing {
                Some((_, owner, _)) if owner != key.name && !owner_deleted => {
                    // The owner is not named: a key holder learns nothing
                    // about other keys.
                    tracing::warn!(daemon = name, key = %key.name, owner, "daemon name of another key refused");
                    return Err(CoordError::FailedPrecondition(format!(
                        "register daemon {name:?}: the name belongs to another provisioner \
                         key; choose another --name (a name is freed when its key is deleted)"
                    )));
                }
                Some((_, _, true)) => {
                    return Err(CoordError::AlreadyExists(format!(
                        "register daemon {name:?}: a daemon with that name is already connected"
                    )));
                }
                Some((id, _, false)) => {
                    tx.execute(
                        "UPDATE daemons SET tags = ?2, version = ?3,
                         connected = 1, last_seen_at = ?4, state = ?5, current_job_id = ?6,
                         replica = ?7
                         WHERE id = ?1",
                        params![
                            id,
                            tags,
                            version,
                            now,
                            state_to_db(report.state),
                            report.job_id,
                            self.replica
                        ],
                    )?;
                    // A new session holds no offer: one made to its last
                    // session (on a replica since gone) goes back to the
                    // queue, where this daemon's first claim finds it.
                    tx.execute(
                        "UPDATE jobs SET offered_to = NULL, secret_hash = NULL
                         WHERE offered_to = ?1 AND status = 'pending'",
                        [&id],
                    )?;
                    id
                }
                None => {
                    let id = new_id();
                    tx.execute(
                        "INSERT INTO daemons(id, name, key_name, tags, version, connected,
                                             last_seen_at, state, current_job_id, replica)
                         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8, ?9)",
                        params![
                            id,
                            name,
                            key.name,
                            tags,
                            version,
                            now,
                            state_to_db(report.state),
                            report.job_id,
                            self.replica
                        ],
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
                report: report.clone(),
                offered_job_id: None,
            })
        })
    }

    /// Offers to a daemon it has not acknowledged go back to the queue (it
    /// said it is not ready: it will not take them).
    pub fn release_offers(&self, daemon_id: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE jobs SET offered_to = NULL, secret_hash = NULL WHERE offered_to = ?1 AND status = 'pending'",
            [daemon_id],
        )?;
        Ok(())
    }

    /// Stores a daemon's StateUpdate.
    pub fn report_daemon_state(&self, daemon_id: &str, report: &Report) -> Result<()> {
        self.conn()?.execute(
            "UPDATE daemons SET state = ?2, current_job_id = ?3, last_seen_at = ?4 WHERE id = ?1",
            params![
                daemon_id,
                state_to_db(report.state),
                report.job_id,
                now_ms()
            ],
        )?;
        Ok(())
    }

    /// The daemon's session ended: it is offline, and any job offered to it
    /// but not acknowledged goes back to the queue.
    pub fn disconnect_daemon(&self, daemon_id: &str) -> Result<()> {
        self.write(|tx| {
            // Only the session of this replica ends: after a failover the
            // daemon may already be registered on another one.
            let n = tx.execute(
                "UPDATE daemons SET connected = 0, last_seen_at = ?2
                 WHERE id = ?1 AND COALESCE(replica, '') = ?3",
                params![daemon_id, now_ms(), self.replica.as_deref().unwrap_or("")],
            )?;
            if n == 1 {
                tx.execute(
                    "UPDATE jobs SET offered_to = NULL, secret_hash = NULL
                     WHERE offered_to = ?1 AND status = 'pending'",
                    [daemon_id],
                )?;
            }
            Ok(())
        })
    }

    pub fn touch_daemon(&self, daemon_id: &str) -> Result<()> {
        self.conn()?
            .prepare_cached("UPDATE daemons SET last_seen_at = ?2 WHERE id = ?1")?
            .execute(params![daemon_id, now_ms()])?;
        Ok(())
    }

    pub fn list_daemons(&self) -> Result<Vec<DaemonRow>> {
        self.daemons_after("", -1)
    }

    /// Daemons named after `after`, by name; at most `limit` (-1: all).
    pub fn daemons_after(&self, after: &str, limit: i64) -> Result<Vec<DaemonRow>> {
        let limit = super::all_if_negative(limit);
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT d.id, d.name, d.key_name, d.tags, d.version, {}, d.last_seen_at,
                    (SELECT j.id FROM jobs j WHERE j.daemon_id = d.id
                       AND j.status IN ('running', 'canceling') LIMIT 1),
                    d.state, d.current_job_id,
                    (SELECT j.id FROM jobs j WHERE j.offered_to = d.id
                       AND j.status = 'pending' LIMIT 1)
             FROM daemons d WHERE d.name > ?1 ORDER BY d.name LIMIT ?2",
            super::replicas::live_session("d", 3)
        ))?;
        let rows = stmt.query_map(params![after, limit, super::replicas::cutoff()], |r| {
            Ok(DaemonRow {
                id: r.get(0)?,
                name: r.get(1)?,
                key_name: r.get(2)?,
                tags: tags_from_json(&r.get::<_, String>(3)?),
                version: r.get(4)?,
                connected: r.get(5)?,
                last_seen_at: r.get(6)?,
                current_job_id: r.get(7)?,
                report: Report {
                    state: state_from_db(r.get::<_, Option<String>>(8)?.as_deref()),
                    job_id: r.get(9)?,
                },
                offered_job_id: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
