//! Templates, template versions and workspaces. Creating a version or a
//! build enqueues its job in the same transaction, so neither exists
//! without the other.

use std::collections::BTreeMap;

use super::db::{Connection, OptionalExtension, params};

use super::enqueue::{JobKind, NewJob, insert_job, set_build_parameters};
use super::versions::{AutomaticUpdates, NewVersion, name_for_push};
use super::{Store, new_id, not_found, now_ms, tags_to_json};
use crate::coordinator::error::{CoordError, Result};
use crate::tags::Tags;

#[derive(Debug, Clone)]
pub struct TemplateRow {
    pub name: String,
    pub active_version_id: Option<String>,
    pub active_version_name: Option<String>,
    pub created_at: i64,
    /// Variables declared by the active version.
    pub declared: Vec<DeclaredVar>,
}

#[derive(Debug, Clone)]
pub struct VersionRow {
    pub id: String,
    /// Unique in the template (see versions.rs).
    pub name: String,
    pub template: String,
    pub tags: Tags,
    pub var_values: BTreeMap<String, String>,
    /// Set once the version's import succeeded.
    pub declared: Option<Vec<DeclaredVar>>,
    /// `template::TemplateMeta` as JSON, read when the version was pushed.
    pub meta_json: Option<String>,
    pub archived: bool,
}

#[derive(Debug, Clone)]
pub struct WorkspaceRow {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub template: String,
    pub template_version_id: String,
    pub var_values: BTreeMap<String, String>,
    pub state: Option<Vec<u8>>,
    pub created_at: i64,
    /// The parameter values of its latest build.
    pub parameters: BTreeMap<String, String>,
    /// The preset it was created from, if any (prebuild pools are per
    /// preset).
    pub preset: Option<String>,
    pub template_version_name: String,
    /// Its template's active version, if it has one.
    pub active_version_id: Option<String>,
    pub automatic_updates: AutomaticUpdates,
}

/// What a pushed version's import is enqueued with: the metadata read from
/// its files, and the import job's tags (the version's own plus the
/// template's workspace tags at their defaults).
#[derive(Debug, Clone, Default)]
pub struct NewImport {
    pub meta_json: Option<String>,
    pub tags: Tags,
    pub version: NewVersion,
}

/// A pushed version: its id and name, and its import job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub version_id: String,
    pub version_name: String,
    pub job_id: String,
}

/// What a build is enqueued with: its parameter values and the tags that
/// route it (evaluated for this build by the caller).
#[derive(Debug, Clone, Default)]
pub struct NewBuild {
    pub parameters: BTreeMap<String, String>,
    pub tags: Tags,
    /// The preset a start build resolved from; a workspace's first build
    /// records it on the workspace (prebuild pools are per preset).
    pub preset: Option<String>,
}

/// A variable a template version declares, as its import reported it
/// (stored as JSON in `template_versions.declared`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeclaredVar {
    pub name: String,
    pub description: String,
    pub r#type: String,
    pub default_json: String,
    pub sensitive: bool,
    pub required: bool,
}

pub(crate) fn declared_to_json(vars: &[DeclaredVar]) -> Result<String> {
    Ok(serde_json::to_string(vars)?)
}

pub(super) fn declared_from_json(s: &str) -> Vec<DeclaredVar> {
    serde_json::from_str(s).unwrap_or_default()
}

/// A state's outputs as a small JSON document (NULL for no state or one
/// that is not JSON). A BLOB would be read as JSONB, hence the cast in;
/// the row reads `state` as a BLOB, hence the cast out.
/// A state's outputs as a small JSON document (NULL for no state or one
/// that is not JSON), per engine. SQLite: a BLOB would be read as JSONB,
/// hence the cast in; the row reads `state` as a BLOB, hence the cast out.
/// PostgreSQL: a function of the schema (`postgres.rs`).
fn outputs_only(engine: super::db::Engine) -> &'static str {
    match engine {
        super::db::Engine::Sqlite => {
            "CASE WHEN json_valid(CAST(state AS TEXT))
             THEN CAST(json_object('outputs', json(json_extract(CAST(state AS TEXT), '$.outputs'))) AS BLOB)
             END"
        }
        super::db::Engine::Postgres => "provisionerd_outputs(state)",
    }
}

/// A template with its active version's declared variables and name.
const TEMPLATE_SELECT: &str = "SELECT t.name, t.active_version_id, t.created_at, v.declared, v.name
     FROM templates t LEFT JOIN template_versions v ON v.id = t.active_version_id";

fn template_from_row(r: &super::db::Row<'_>) -> super::db::Result<TemplateRow> {
    Ok(TemplateRow {
        name: r.get(0)?,
        active_version_id: r.get(1)?,
        created_at: r.get(2)?,
        declared: r
            .get::<_, Option<String>>(3)?
            .map(|s| declared_from_json(&s))
            .unwrap_or_default(),
        active_version_name: r.get(4)?,
    })
}

impl Store {
    /// Stores a new template version (creating the template on first push)
    /// and enqueues its import job. `tags` are the version's own (given at
    /// push; every build of it carries them).
    /// Returns (version id, job id).
    pub fn push_template(
        &self,
        name: &str,
        archive: &[u8],
        tags: &Tags,
        var_values: &BTreeMap<String, String>,
        initiator: &str,
        import: &NewImport,
    ) -> Result<(String, String)> {
        let p = self.push_version(name, archive, tags, var_values, initiator, import)?;
        Ok((p.version_id, p.job_id))
    }

    /// [`Self::push_template`], with the version's name.
    pub fn push_version(
        &self,
        name: &str,
        archive: &[u8],
        tags: &Tags,
        var_values: &BTreeMap<String, String>,
        initiator: &str,
        import: &NewImport,
    ) -> Result<Pushed> {
        let conn = self.conn()?;
        let tx = conn.begin(super::db::TxKind::Write)?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO templates(name, active_version_id, created_at)
             VALUES (?1, NULL, ?2) ON CONFLICT DO NOTHING",
            params![name, now],
        )?;
        let version_id = new_id();
        let version_name = name_for_push(&tx, name, import.version.name.as_deref())?;
        let (archive_size, archive_sha256) = super::blobs::digest(archive);
        tx.execute(
            "INSERT INTO template_versions(id, template, archive, tags, var_values, declared,
                                           created_at, meta, archive_size, archive_sha256,
                                           name, message, created_by, activate)
             VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                version_id,
                name,
                archive,
                tags_to_json(tags)?,
                serde_json::to_string(var_values)?,
                now,
                import.meta_json,
                archive_size,
                archive_sha256,
                version_name,
                import.version.message,
                initiator,
                !import.version.keep_inactive as i64
            ],
        )?;
        let job_id = insert_job(
            &tx,
            &NewJob {
                kind: JobKind::TemplateImport,
                initiator: initiator.to_string(),
                tags: import.tags.clone(),
                template_version_id: version_id.clone(),
                workspace_id: None,
            },
        )?;
        tx.execute(
            "UPDATE template_versions SET import_job_id = ?2 WHERE id = ?1",
            params![version_id, job_id],
        )?;
        tx.commit()?;
        Ok(Pushed {
            version_id,
            version_name,
            job_id,
        })
    }

    pub fn list_templates(&self) -> Result<Vec<TemplateRow>> {
        self.templates_after("", -1)
    }

    /// Templates named after `after`, by name; at most `limit` (-1: all).
    pub fn templates_after(&self, after: &str, limit: i64) -> Result<Vec<TemplateRow>> {
        let limit = super::all_if_negative(limit);
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "{TEMPLATE_SELECT} WHERE t.name > ?1 ORDER BY t.name LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![after, limit], template_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One template by name: one indexed row (creates, builds and claims
    /// read it; listing every template for it grew with their number).
    pub fn template(&self, name: &str) -> Result<TemplateRow> {
        self.read(|c| {
            c.query_row(
                &format!("{TEMPLATE_SELECT} WHERE t.name = ?1"),
                [name],
                template_from_row,
            )
            .optional()?
            .ok_or_else(|| not_found("template", name))
        })
    }

    /// The newest version pushed for a template (whatever its import did).
    pub fn latest_version(&self, template: &str) -> Result<VersionRow> {
        self.read(|c| {
            let id: String = c
                .query_row(
                    "SELECT id FROM template_versions WHERE template = ?1
                     ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    [template],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| not_found("template", template))?;
            version_in(c, &id)
        })
    }

    pub fn version(&self, id: &str) -> Result<VersionRow> {
        self.read(|c| version_in(c, id))
    }

    pub fn version_archive(&self, id: &str) -> Result<Vec<u8>> {
        self.read(|c| version_archive_in(c, id))
    }

    /// Creates workspace `id` and enqueues its first build (transition
    /// start), initiated by its owner; `reconciled`: the prebuild
    /// reconciler creates it (and may destroy it). Returns (workspace id,
    /// job id).
    #[allow(clippy::too_many_arguments)]
    pub fn create_workspace(
        &self,
        id: &str,
        name: &str,
        owner: &str,
        version: &VersionRow,
        var_values: &BTreeMap<String, String>,
        build: &NewBuild,
        reconciled: bool,
        automatic_updates: AutomaticUpdates,
    ) -> Result<(String, String)> {
        let conn = self.conn()?;
        let tx = conn.begin(super::db::TxKind::Write)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM workspaces WHERE name = ?1 AND deleted = 0)",
            [name],
            |r| r.get(0),
        )?;
        if exists {
            return Err(CoordError::AlreadyExists(format!(
                "create workspace {name:?}: a workspace with that name exists"
            )));
        }
        tx.execute(
            "INSERT INTO workspaces(id, name, owner, template, template_version_id, var_values, state, deleted, created_at, parameters, preset, reconciled, automatic_updates)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 0, ?7, ?8, ?9, ?10, ?11)",
            params![
                id,
                name,
                owner,
                version.template,
                version.id,
                serde_json::to_string(var_values)?,
                now_ms(),
                serde_json::to_string(&build.parameters)?,
                build.preset,
                reconciled,
                automatic_updates.as_str()
            ],
        )?;
        let job_id = insert_job(
            &tx,
            &NewJob {
                kind: JobKind::WorkspaceBuild(crate::proto::Transition::Start),
                initiator: owner.to_string(),
                tags: build.tags.clone(),
                template_version_id: version.id.clone(),
                workspace_id: Some(id.to_string()),
            },
        )?;
        set_build_parameters(&tx, &job_id, &build.parameters, &BTreeMap::new())?;
        tx.commit()?;
        Ok((id.to_string(), job_id))
    }

    /// Enqueues a build of an existing workspace. `version` is the version
    /// to build with (the caller decides: see `coordinator::workspaces`).
    pub fn enqueue_build(
        &self,
        ws: &WorkspaceRow,
        version: &VersionRow,
        transition: crate::proto::Transition,
        initiator: &str,
        build: &NewBuild,
    ) -> Result<String> {
        let conn = self.conn()?;
        let tx = conn.begin(super::db::TxKind::Write)?;
        let busy: Option<String> = tx
            .query_row(
                "SELECT id FROM jobs WHERE workspace_id = ?1
                 AND status IN ('pending', 'running', 'canceling') LIMIT 1",
                [&ws.id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(job) = busy {
            return Err(CoordError::FailedPrecondition(format!(
                "build workspace {:?}: build job {job} has not finished yet",
                ws.name
            )));
        }
        tx.execute(
            "UPDATE workspaces SET template_version_id = ?2, parameters = ?3 WHERE id = ?1",
            params![ws.id, version.id, serde_json::to_string(&build.parameters)?],
        )?;
        let job_id = insert_job(
            &tx,
            &NewJob {
                kind: JobKind::WorkspaceBuild(transition),
                initiator: initiator.to_string(),
                tags: build.tags.clone(),
                template_version_id: version.id.clone(),
                workspace_id: Some(ws.id.clone()),
            },
        )?;
        set_build_parameters(&tx, &job_id, &build.parameters, &ws.parameters)?;
        tx.commit()?;
        Ok(job_id)
    }

    pub(super) fn workspace_where(&self, cond: &str, arg: &str) -> Result<Vec<WorkspaceRow>> {
        self.workspaces_matching(cond, arg, true)
    }

    /// Workspaces where `cond` (with `arg` as `?1`) holds, by name; without
    /// their state (`state: None`) unless `with_state`, as a state can be
    /// hundreds of MiB.
    pub(super) fn workspaces_matching(
        &self,
        cond: &str,
        arg: &str,
        with_state: bool,
    ) -> Result<Vec<WorkspaceRow>> {
        let state = if with_state { "state" } else { "NULL" };
        self.workspaces_limited(cond, &[&arg], state, -1)
    }

    /// [`Self::workspaces_matching`], at most `limit` of them (-1: all).
    fn workspaces_limited(
        &self,
        cond: &str,
        args: &[&dyn super::db::ToSql],
        state: &str,
        limit: i64,
    ) -> Result<Vec<WorkspaceRow>> {
        self.read(|c| workspaces_in(c, cond, args, state, limit))
    }

    /// A live (not deleted) workspace by name.
    pub fn workspace(&self, name: &str) -> Result<WorkspaceRow> {
        self.workspace_where("name = ?1 AND deleted = 0", name)?
            .pop()
            .ok_or_else(|| not_found("workspace", name))
    }

    /// Any workspace, deleted or not, by id (jobs refer to ids).
    pub fn workspace_by_id(&self, id: &str) -> Result<WorkspaceRow> {
        self.workspace_where("id = ?1", id)?
            .pop()
            .ok_or_else(|| not_found("workspace", id))
    }

    pub fn list_workspaces(&self) -> Result<Vec<WorkspaceRow>> {
        self.workspace_where("deleted = 0 AND ?1 = ?1", "")
    }

    /// Live workspaces named after `after`, by name; at most `limit`; only
    /// `owner`'s / `template`'s when not empty. Their `state` holds only the
    /// state's outputs (`{"outputs": …}`, what a list shows), cut out by
    /// SQLite: a page of up to a thousand states of hundreds of MiB each is
    /// never held in memory at once.
    pub fn workspaces_after(
        &self,
        after: &str,
        owner: &str,
        template: &str,
        limit: u32,
    ) -> Result<Vec<WorkspaceRow>> {
        self.workspaces_limited(
            "deleted = 0 AND name > ?1 AND (?2 = '' OR owner = ?2) AND (?3 = '' OR template = ?3)",
            &[&after, &owner, &template],
            outputs_only(self.engine()),
            i64::from(limit),
        )
    }
}

/// Workspaces where `cond` (with `args`) holds, by name, at most `limit`
/// (-1: all); `state` is the column expression read as their state.
pub(super) fn workspaces_in(
    conn: &Connection,
    cond: &str,
    args: &[&dyn super::db::ToSql],
    state: &str,
    limit: i64,
) -> Result<Vec<WorkspaceRow>> {
    let limit = super::all_if_negative(limit);
    let sql = format!(
        "SELECT id, name, owner, template, template_version_id, var_values, {state},
                created_at, parameters, preset,
                (SELECT v.name FROM template_versions v
                 WHERE v.id = workspaces.template_version_id) AS version_name,
                (SELECT t.active_version_id FROM templates t
                 WHERE t.name = workspaces.template) AS active_version_id,
                automatic_updates
         FROM workspaces WHERE {cond} ORDER BY name LIMIT {limit}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok(WorkspaceRow {
            id: r.get(0)?,
            name: r.get(1)?,
            owner: r.get(2)?,
            template: r.get(3)?,
            template_version_id: r.get(4)?,
            var_values: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
            state: r.get(6)?,
            created_at: r.get(7)?,
            parameters: r
                .get::<_, Option<String>>(8)?
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default(),
            preset: r.get(9)?,
            template_version_name: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
            active_version_id: r.get(11)?,
            automatic_updates: AutomaticUpdates::from_db(r.get(12)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn version_in(conn: &Connection, id: &str) -> Result<VersionRow> {
    conn.query_row(
        "SELECT id, template, tags, var_values, declared, meta, name, archived
         FROM template_versions WHERE id = ?1",
        [id],
        |r| {
            Ok(VersionRow {
                id: r.get(0)?,
                template: r.get(1)?,
                tags: super::tags_from_json(&r.get::<_, String>(2)?),
                var_values: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                declared: r
                    .get::<_, Option<String>>(4)?
                    .map(|s| declared_from_json(&s)),
                meta_json: r.get(5)?,
                name: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                archived: r.get::<_, i64>(7)? != 0,
            })
        },
    )
    .optional()?
    .ok_or_else(|| not_found("template version", id))
}

pub(super) fn version_archive_in(conn: &Connection, id: &str) -> Result<Vec<u8>> {
    Ok(conn.query_row(
        "SELECT archive FROM template_versions WHERE id = ?1",
        [id],
        |r| r.get(0),
    )?)
}

/// A workspace's state (empty: none yet), deleted or not.
pub(super) fn workspace_state_in(conn: &Connection, id: &str) -> Result<Vec<u8>> {
    let state: Option<Vec<u8>> = conn
        .query_row("SELECT state FROM workspaces WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or_else(|| not_found("workspace", id))?;
    Ok(state.unwrap_or_default())
}
