//! Where template metadata meets the job queue: reading a pushed version's
//! parameters, workspace tags and presets (no terraform needed), and, per
//! build, resolving its parameter values and evaluating the tags that route
//! it. The coordinator decides routing; the daemon never does.

use std::collections::BTreeMap;

use super::error::CoordError;
use super::store::{NewBuild, VersionRow, WorkspaceRow};
use crate::archive::Limits;
use crate::proto::Transition;
use crate::tags::Tags;
use crate::template::{self, BuildContext, TemplateMeta};

/// Reads a pushed archive. A template that does not parse, or whose
/// parameters, presets or schedules are invalid, is refused at push.
pub fn read(name: &str, archive: &[u8], limits: &Limits) -> Result<TemplateMeta, CoordError> {
    template::parse_archive(archive, limits)
        .map_err(|e| CoordError::Invalid(format!("push template {name:?}: {e}")))
}

/// The import job's tags: the template's workspace tags evaluated with
/// variable and parameter defaults, then the explicit `--provisioner-tag`s
/// (which win).
pub fn import_tags(
    name: &str,
    meta: &TemplateMeta,
    variables: &BTreeMap<String, String>,
    explicit: &Tags,
) -> Result<Tags, CoordError> {
    let mut tags = template::import_tags(meta, variables)
        .map_err(|e| CoordError::Invalid(format!("push template {name:?}: {e}")))?;
    tags.extend(explicit.clone());
    Ok(tags)
}

pub fn meta_json(meta: &TemplateMeta) -> Result<String, CoordError> {
    serde_json::to_string(meta)
        .map_err(|e| CoordError::Internal(format!("store template metadata: {e}")))
}

/// The metadata stored with a version; `None` for versions pushed before
/// metadata was read (they have no parameters, and route by version tags).
pub fn meta_of(version: &VersionRow) -> Result<Option<TemplateMeta>, CoordError> {
    version
        .meta_json
        .as_deref()
        .map(|s| {
            serde_json::from_str(s).map_err(|e| {
                CoordError::Internal(format!(
                    "read template version {} metadata: {e}",
                    version.id
                ))
            })
        })
        .transpose()
}

/// One build to plan.
pub struct Plan<'a> {
    pub action: &'a str,
    pub workspace_name: &'a str,
    pub workspace_id: &'a str,
    pub owner: &'a str,
    pub transition: Transition,
    pub version: &'a VersionRow,
    pub variables: &'a BTreeMap<String, String>,
    /// Values the caller set (only start builds may set any).
    pub given: &'a BTreeMap<String, String>,
    pub preset: Option<&'a str>,
    /// The workspace's current values (none for its first build).
    pub previous: Option<&'a BTreeMap<String, String>>,
}

/// Resolves the build's parameters and evaluates its tags: the version's
/// static tags (`--provisioner-tag` at push) plus the workspace tags
/// evaluated for this build, owner and parameters.
pub fn plan(p: &Plan<'_>) -> Result<NewBuild, CoordError> {
    let invalid = |e: template::TemplateError| CoordError::Invalid(format!("{}: {e}", p.action));
    if p.transition != Transition::Start && !p.given.is_empty() {
        return Err(CoordError::Invalid(format!(
            "{}: parameters can only change on a start build; stop and delete keep the workspace's values",
            p.action
        )));
    }
    let Some(meta) = meta_of(p.version)? else {
        if !p.given.is_empty() || p.preset.is_some() {
            return Err(CoordError::Invalid(format!(
                "{}: template version {} declares no parameters or presets",
                p.action, p.version.id
            )));
        }
        // A version from before metadata was read: keep whatever values
        // the workspace has (nothing can check or change them).
        return Ok(NewBuild {
            parameters: p.previous.cloned().unwrap_or_default(),
            tags: p.version.tags.clone(),
            preset: None,
        });
    };
    let parameters = if p.transition == Transition::Start {
        template::resolve_parameters(&meta, p.preset, p.given, p.previous).map_err(invalid)?
    } else {
        p.previous.cloned().unwrap_or_default()
    };
    let ctx = BuildContext {
        owner_name: p.owner.to_string(),
        workspace_name: p.workspace_name.to_string(),
        workspace_id: p.workspace_id.to_string(),
        transition: transition_word(p.transition).to_string(),
        template_name: p.version.template.clone(),
        variables: p.variables.clone(),
        parameters: parameters.clone(),
    };
    let mut tags = template::build_tags(&meta, &ctx).map_err(invalid)?;
    // Tags given at push are the operator's word: they win.
    tags.extend(p.version.tags.clone());
    Ok(NewBuild {
        parameters,
        tags,
        preset: p.preset.map(str::to_string),
    })
}

/// Plans a build of an existing workspace.
pub fn plan_existing(
    ws: &WorkspaceRow,
    version: &VersionRow,
    transition: Transition,
    given: &BTreeMap<String, String>,
) -> Result<NewBuild, CoordError> {
    let mut variables = version.var_values.clone();
    variables.extend(ws.var_values.clone());
    let action = format!("build workspace {:?}", ws.name);
    plan(&Plan {
        action: &action,
        workspace_name: &ws.name,
        workspace_id: &ws.id,
        owner: &ws.owner,
        transition,
        version,
        variables: &variables,
        given,
        preset: None,
        previous: Some(&ws.parameters),
    })
}

/// As terraform sees it in `data.coder_workspace.me.transition` (Coder's
/// transition enum, lowercased: the same word CODER_WORKSPACE_TRANSITION
/// carries).
fn transition_word(t: Transition) -> &'static str {
    match t {
        Transition::Stop => "stop",
        Transition::Destroy => "destroy",
        _ => "start",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(meta_json: Option<String>) -> VersionRow {
        VersionRow {
            id: "v1".into(),
            template: "t".into(),
            tags: crate::tags::parse_pairs(&["pool=a"]).unwrap(),
            var_values: BTreeMap::new(),
            declared: None,
            meta_json,
            name: "v1".into(),
            archived: false,
        }
    }

    fn plan_with(
        v: &VersionRow,
        owner: &str,
        given: &BTreeMap<String, String>,
        previous: Option<&BTreeMap<String, String>>,
    ) -> Result<NewBuild, CoordError> {
        plan(&Plan {
            action: "build workspace \"w\"",
            workspace_name: "w",
            workspace_id: "w-id",
            owner,
            transition: Transition::Start,
            version: v,
            variables: &BTreeMap::new(),
            given,
            preset: None,
            previous,
        })
    }

    #[test]
    fn a_version_without_metadata_keeps_the_workspaces_values_and_refuses_new_ones() {
        let old = version(None);
        let previous = BTreeMap::from([("region".to_string(), "eu".to_string())]);
        let b = plan_with(&old, "alice", &BTreeMap::new(), Some(&previous)).unwrap();
        assert_eq!(b.parameters, previous);
        assert_eq!(b.tags, old.tags);
        let err = plan_with(&old, "alice", &previous, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("declares no parameters or presets"),
            "{err}"
        );
    }

    #[test]
    fn workspace_tags_route_by_owner_and_push_tags_win() {
        let meta = template::parse_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/templates/coder-prebuilds"),
        )
        .unwrap();
        let v = version(Some(meta_json(&meta).unwrap()));
        let pre = plan_with(&v, "prebuilds", &BTreeMap::new(), None).unwrap();
        assert_eq!(crate::tags::display(&pre.tags), "is_prebuild=true,pool=a");
        assert_eq!(pre.parameters["region"], "eu-west", "defaults apply");
        let person = plan_with(&v, "alice", &BTreeMap::new(), None).unwrap();
        assert_eq!(crate::tags::display(&person.tags), "pool=a");
    }
}
