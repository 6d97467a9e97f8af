//! Template versions as operators manage them: names, listing, promotion
//! (rollback is promoting an older one), archiving, and a workspace's
//! automatic-updates setting.
//!
//! Which version is active is decided in two places only: here
//! (`promote_version`) and when an import succeeds (`finished.rs`). An
//! import activates its version only if the push asked for it and the
//! active version has not changed since the push, so a slow import never
//! undoes a newer push or a rollback. `templates.activated_through` marks
//! each change in push order (rowids; clocks of replicas differ): a
//! promote marks the newest version pushed so far, an import's activation
//! its own version, and an import activates only a version pushed after
//! the mark — so pushes still importing activate in push order.

use super::db::{Connection, OptionalExtension, params};

use super::Store;
use crate::coordinator::error::{CoordError, Result};

/// The indexes on the version columns (SQLite, at each open; PostgreSQL
/// has them from migration 3).
pub(super) const INDEXES: &str = "
CREATE UNIQUE INDEX IF NOT EXISTS template_versions_name ON template_versions(template, name);
CREATE INDEX IF NOT EXISTS template_versions_order ON template_versions(template, created_at);
CREATE INDEX IF NOT EXISTS workspaces_version ON workspaces(template_version_id) WHERE deleted = 0;
";

/// Fills in what versions pushed without names lack — before this
/// release, or by an older replica during a rolling upgrade: a name `vN`
/// (N its place in push order), or `vN-<id prefix>` when `vN` is taken by
/// then; its import job; and the template's activation mark (its active
/// version), so an import from before the upgrade still running cannot
/// undo a newer active version. A read when there is nothing to do.
pub(super) fn backfill(conn: &Connection) -> Result<()> {
    let todo: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM template_versions WHERE name IS NULL OR import_job_id IS NULL)
             OR EXISTS(SELECT 1 FROM templates
                       WHERE activated_through IS NULL AND active_version_id IS NOT NULL)",
        [],
        |r| r.get(0),
    )?;
    if !todo {
        return Ok(());
    }
    let tx = conn.begin(super::db::TxKind::Write)?;
    let unnamed: Vec<(String, String, i64)> = {
        let mut stmt = tx.prepare(
            "SELECT v.id, v.template,
                    (SELECT COUNT(*) FROM template_versions o WHERE o.template = v.template
                       AND (o.created_at < v.created_at
                            OR (o.created_at = v.created_at AND o.rowid <= v.rowid)))
             FROM template_versions v WHERE v.name IS NULL
             ORDER BY v.template, v.created_at, v.rowid",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (id, template, n) in unnamed {
        let plain = format!("v{n}");
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM template_versions WHERE template = ?1 AND name = ?2)",
            params![template, plain],
            |r| r.get(0),
        )?;
        let name = if taken {
            format!("{plain}-{}", &id[..id.len().min(8)])
        } else {
            plain
        };
        tx.execute(
            "UPDATE template_versions SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
    }
    tx.execute_batch(
        "UPDATE template_versions SET import_job_id = (
             SELECT j.id FROM jobs j
             WHERE j.template_version_id = template_versions.id AND j.type = 'template_import'
             ORDER BY j.created_at LIMIT 1)
           WHERE import_job_id IS NULL;
         UPDATE templates SET activated_through = (
             SELECT v.rowid FROM template_versions v WHERE v.id = templates.active_version_id)
           WHERE activated_through IS NULL AND active_version_id IS NOT NULL;",
    )?;
    tx.commit()?;
    Ok(())
}

/// What a push says about its version besides the files.
#[derive(Debug, Clone, Default)]
pub struct NewVersion {
    /// Unique in the template; `None`: the store names it `vN`.
    pub name: Option<String>,
    pub message: String,
    /// Import it, but leave the active version as it is.
    pub keep_inactive: bool,
}

/// A workspace's automatic-updates setting (Coder's names; also the CLI's
/// `--automatic-updates` values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AutomaticUpdates {
    /// A start keeps the workspace on its version.
    #[default]
    Never,
    /// A start moves the workspace to the template's active version.
    Always,
}

impl AutomaticUpdates {
    pub fn as_str(self) -> &'static str {
        match self {
            AutomaticUpdates::Never => "never",
            AutomaticUpdates::Always => "always",
        }
    }

    /// `""` is `never` (what older clients send).
    pub fn parse(s: &str) -> Result<AutomaticUpdates> {
        match s {
            "" | "never" => Ok(AutomaticUpdates::Never),
            "always" => Ok(AutomaticUpdates::Always),
            other => Err(CoordError::Invalid(format!(
                "automatic updates {other:?}: expected never or always"
            ))),
        }
    }

    /// As stored; anything unknown reads as the default.
    pub(super) fn from_db(s: Option<String>) -> AutomaticUpdates {
        match s.as_deref() {
            Some("always") => AutomaticUpdates::Always,
            _ => AutomaticUpdates::Never,
        }
    }
}

/// One version as `templates versions list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub id: String,
    pub name: String,
    pub template: String,
    pub message: String,
    pub created_by: String,
    pub created_at: i64,
    pub import_job_id: String,
    /// The import job's status (`unknown` if that job is gone).
    pub status: String,
    pub error: String,
    pub active: bool,
    pub archived: bool,
    pub activate: bool,
    /// Its import succeeded: it may become active and be built from.
    pub imported: bool,
    /// Live workspaces on it.
    pub workspaces: u64,
}

const INFO_COLUMNS: &str = "v.id, v.name, v.template, v.message, v.created_by, v.created_at,
    COALESCE(v.import_job_id, ''), COALESCE(j.status, 'unknown'), COALESCE(j.error, ''),
    CASE WHEN t.active_version_id = v.id THEN 1 ELSE 0 END, v.archived, v.activate,
    CASE WHEN v.declared IS NULL THEN 0 ELSE 1 END,
    (SELECT COUNT(*) FROM workspaces w WHERE w.template_version_id = v.id AND w.deleted = 0)
  FROM template_versions v JOIN templates t ON t.name = v.template
  LEFT JOIN jobs j ON j.id = v.import_job_id";

fn info_from_row(r: &super::db::Row<'_>) -> super::db::Result<VersionInfo> {
    Ok(VersionInfo {
        id: r.get(0)?,
        name: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        template: r.get(2)?,
        message: r.get(3)?,
        created_by: r.get(4)?,
        created_at: r.get(5)?,
        import_job_id: r.get(6)?,
        status: r.get(7)?,
        error: r.get(8)?,
        active: r.get::<_, i64>(9)? != 0,
        archived: r.get::<_, i64>(10)? != 0,
        activate: r.get::<_, i64>(11)? != 0,
        imported: r.get::<_, i64>(12)? != 0,
        workspaces: r.get::<_, i64>(13)? as u64,
    })
}

/// A version name: what a person types, never mistaken for an id.
pub fn check_version_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(CoordError::Invalid(format!(
            "template version name {name:?}: {why}"
        )))
    };
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("must start with a letter or digit");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(&format!(
            "{c:?} is not allowed (letters, digits, '.', '_', '-')"
        ));
    }
    if uuid::Uuid::parse_str(name).is_ok() {
        return bad("looks like a version id; pick a name that does not");
    }
    Ok(())
}

/// The name a push gets: `name` if given and free, else the first free
/// `vN` from the template's version count on.
pub(super) fn name_for_push(tx: &Connection, template: &str, name: Option<&str>) -> Result<String> {
    let taken = |n: &str| -> Result<bool> {
        Ok(tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM template_versions WHERE template = ?1 AND name = ?2)",
            params![template, n],
            |r| r.get(0),
        )?)
    };
    if let Some(name) = name {
        check_version_name(name)?;
        if taken(name)? {
            return Err(CoordError::AlreadyExists(format!(
                "push template {template:?}: version name {name:?} is taken; pick another --name"
            )));
        }
        return Ok(name.to_string());
    }
    let count: i64 = tx.query_row(
        "SELECT COUNT(*) FROM template_versions WHERE template = ?1",
        [template],
        |r| r.get(0),
    )?;
    let mut n = count + 1;
    while taken(&format!("v{n}"))? {
        n += 1;
    }
    Ok(format!("v{n}"))
}

fn template_exists(conn: &Connection, template: &str) -> Result<()> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM templates WHERE name = ?1)",
        [template],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(super::not_found("template", template));
    }
    Ok(())
}

/// Version `version` (its name or id) of `template`.
fn find_in(conn: &Connection, template: &str, version: &str) -> Result<VersionInfo> {
    template_exists(conn, template)?;
    conn.query_row(
        &format!("SELECT {INFO_COLUMNS} WHERE v.template = ?1 AND (v.name = ?2 OR v.id = ?2)"),
        params![template, version],
        info_from_row,
    )
    .optional()?
    .ok_or_else(|| {
        CoordError::NotFound(format!(
            "template {template:?} has no version {version:?} (see `provisionerd templates versions list {template}`)"
        ))
    })
}

/// Why `v` cannot be built from or made active, if it cannot.
pub fn unusable(v: &VersionInfo) -> Option<String> {
    if v.archived {
        return Some(format!(
            "version {:?} is archived (unarchive it with `provisionerd templates versions unarchive {} {}`)",
            v.name, v.template, v.name
        ));
    }
    if !v.imported && matches!(v.status.as_str(), "pending" | "running") {
        return Some(format!(
            "version {:?} is still importing (import job {} is {}; follow it with `provisionerd jobs logs {} --follow`)",
            v.name, v.import_job_id, v.status, v.import_job_id
        ));
    }
    if !v.imported {
        let error = if v.error.is_empty() {
            String::new()
        } else {
            format!(": {}", v.error)
        };
        return Some(format!(
            "version {:?} was not imported (import job {} {}{error}); only a version whose import succeeded can be used",
            v.name, v.import_job_id, v.status
        ));
    }
    None
}

impl Store {
    /// Version `version` (name or id) of `template`.
    pub fn find_version(&self, template: &str, version: &str) -> Result<VersionInfo> {
        self.read(|c| find_in(c, template, version))
    }

    /// `template`'s versions newest first, after version id `after` (the
    /// previous page's last), at most `limit`; archived ones only if asked.
    pub fn versions_page(
        &self,
        template: &str,
        include_archived: bool,
        after: &str,
        limit: u32,
    ) -> Result<Vec<VersionInfo>> {
        self.read(|c| {
            template_exists(c, template)?;
            if !after.is_empty() {
                let ours: bool = c.query_row(
                    "SELECT EXISTS(SELECT 1 FROM template_versions WHERE id = ?1 AND template = ?2)",
                    params![after, template],
                    |r| r.get(0),
                )?;
                if !ours {
                    return Err(CoordError::Invalid(format!(
                        "list versions of template {template:?}: cursor {after:?} is not one of its versions' ids (pass the next_cursor a previous page gave)"
                    )));
                }
            }
            let mut stmt = c.prepare(&format!(
                "SELECT {INFO_COLUMNS}
                 WHERE v.template = ?1 AND (?2 = 1 OR v.archived = 0)
                   AND (?3 = '' OR (v.created_at, v.rowid) <
                        (SELECT created_at, rowid FROM template_versions WHERE id = ?3))
                 ORDER BY v.created_at DESC, v.rowid DESC LIMIT ?4"
            ))?;
            let rows = stmt.query_map(
                params![template, include_archived as i64, after, i64::from(limit)],
                info_from_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Makes an imported, unarchived version the template's active one.
    /// Imports of versions pushed before this no longer activate theirs
    /// (a rollback stays); promoting the active version changes nothing,
    /// so it does not pass over imports still running either.
    pub fn promote_version(&self, template: &str, version: &str) -> Result<VersionInfo> {
        self.write(|tx| {
            let v = find_in(tx, template, version)?;
            if v.active {
                return Ok(v);
            }
            if let Some(why) = unusable(&v) {
                return Err(CoordError::FailedPrecondition(format!(
                    "promote template {template:?} {why}"
                )));
            }
            tx.execute(
                "UPDATE templates SET active_version_id = ?2,
                        activated_through = (SELECT MAX(rowid) FROM template_versions
                                             WHERE template = ?1)
                 WHERE name = ?1",
                params![template, v.id],
            )?;
            find_in(tx, template, &v.id)
        })
    }

    /// Archives (or unarchives) a version; the active one stays.
    pub fn archive_version(
        &self,
        template: &str,
        version: &str,
        archived: bool,
    ) -> Result<VersionInfo> {
        self.write(|tx| {
            let v = find_in(tx, template, version)?;
            if archived && v.active {
                return Err(CoordError::FailedPrecondition(format!(
                    "archive template {template:?} version {:?}: it is the active version; promote another version first",
                    v.name
                )));
            }
            tx.execute(
                "UPDATE template_versions SET archived = ?2 WHERE id = ?1",
                params![v.id, archived as i64],
            )?;
            find_in(tx, template, &v.id)
        })
    }

    /// Sets a live workspace's automatic-updates setting.
    pub fn set_automatic_updates(&self, workspace: &str, mode: AutomaticUpdates) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE workspaces SET automatic_updates = ?2 WHERE name = ?1 AND deleted = 0",
                params![workspace, mode.as_str()],
            )?;
            if n == 0 {
                return Err(super::not_found("workspace", workspace));
            }
            Ok(())
        })
    }
}

/// Live workspaces of one template version (`/metrics`); `active`: it is
/// its template's active version. Every active version is listed, with
/// or without workspaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCount {
    pub template: String,
    pub version_id: String,
    pub version_name: String,
    pub active: bool,
    pub workspaces: u64,
}

impl Store {
    /// Per template version: live workspaces, and which are active. One
    /// grouped scan of the live workspaces, so a scrape costs the same
    /// however many versions were ever pushed.
    pub fn version_counts(&self) -> Result<Vec<VersionCount>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT v.template, v.id, COALESCE(v.name, ''),
                        CASE WHEN t.active_version_id = v.id THEN 1 ELSE 0 END,
                        COALESCE(n.live, 0)
                 FROM template_versions v
                 JOIN templates t ON t.name = v.template
                 LEFT JOIN (SELECT template_version_id, COUNT(*) AS live FROM workspaces
                            WHERE deleted = 0 GROUP BY template_version_id) n
                   ON n.template_version_id = v.id
                 WHERE t.active_version_id = v.id OR n.live > 0
                 ORDER BY v.template, v.created_at",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(VersionCount {
                    template: r.get(0)?,
                    version_id: r.get(1)?,
                    version_name: r.get(2)?,
                    active: r.get::<_, i64>(3)? != 0,
                    workspaces: r.get::<_, i64>(4)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

/// What a job is shown with: its template's, version's and workspace's
/// names (empty where gone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobNames {
    pub template: String,
    pub version: String,
    pub workspace: String,
}

impl Store {
    /// The names a job is listed with, in one indexed read (no metadata,
    /// no state).
    pub fn job_names(&self, version_id: &str, workspace_id: Option<&str>) -> Result<JobNames> {
        self.read(|c| {
            let names = c
                .query_row(
                    "SELECT v.template, COALESCE(v.name, ''),
                            COALESCE((SELECT w.name FROM workspaces w WHERE w.id = ?2), '')
                     FROM template_versions v WHERE v.id = ?1",
                    params![version_id, workspace_id.unwrap_or_default()],
                    |r| {
                        Ok(JobNames {
                            template: r.get(0)?,
                            version: r.get(1)?,
                            workspace: r.get(2)?,
                        })
                    },
                )
                .optional()?;
            Ok(names.unwrap_or_default())
        })
    }
}
