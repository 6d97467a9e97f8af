//! Coder-style templates read without terraform: template variables,
//! `coder_parameter`s, `coder_workspace_tags` and `coder_workspace_preset`s
//! (with their prebuilds), validated the way Coder validates them, plus the
//! two things the coordinator needs per job: the job's tags
//! ([`import_tags`], [`build_tags`]) and a build's parameter values
//! ([`resolve_parameters`]).
//!
//! Only the root module is read (every `*.tf` and `*.tf.json` file
//! directly in the template directory, and `README.md`), as terraform
//! does. Positions in messages are `file:line` (the JSON file's line for
//! `*.tf.json`).
//!
//! Values that identify things (names, types, options, cron specs) must be
//! literals; defaults, descriptions, preset values and prebuild counts may
//! also call functions and use variable defaults and locals built from
//! them. Workspace tag expressions, and the locals they use, are kept as
//! text and evaluated per job.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod blocks;
mod check;
mod cron;
mod error;
mod eval;
mod functions;
mod json;
mod locals;
mod parameter;
mod parse;
mod preset;
mod resolve;
mod source;
mod tfjson;
mod value;
mod variable;
mod workspace_tags;

#[cfg(test)]
mod tests;

pub use error::TemplateError;

/// Everything a template version declares that provisionerd uses before
/// terraform runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateMeta {
    pub parameters: Vec<Parameter>,
    pub workspace_tags: Vec<TagExpr>,
    pub presets: Vec<Preset>,
    pub readme: Option<String>,
    pub variables: Vec<VariableDecl>,
    /// The locals the workspace tags use (directly or through other
    /// locals), evaluated with them per job; other locals are not kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locals: Vec<LocalDecl>,
    /// False in metadata stored before locals were read: its tags' locals
    /// were not kept, so the version must be pushed again.
    #[serde(default)]
    pub locals_read: bool,
}

/// One entry of a `locals` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalDecl {
    pub name: String,
    /// The value expression's HCL text, as written.
    pub expr: String,
    pub at: String,
}

/// A `variable` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariableDecl {
    pub name: String,
    /// The `type` constraint as written (`list(string)`); empty when absent.
    pub type_expr: String,
    pub description: String,
    /// The default as JSON; `None` when there is no `default` attribute.
    pub default_json: Option<String>,
    pub sensitive: bool,
    /// No default: a value must be given.
    pub required: bool,
}

/// A `data "coder_parameter"` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    /// The block's label: templates read the value as
    /// `data.coder_parameter.<label>.value`.
    pub label: String,
    pub display_name: String,
    pub description: String,
    pub r#type: ParamType,
    /// The default as the string Coder passes to terraform (numbers and
    /// bools as text, `list(string)` as a JSON array).
    pub default: Option<String>,
    pub mutable: bool,
    pub ephemeral: bool,
    pub options: Vec<ParamOption>,
    pub validation: Option<Validation>,
    pub order: Option<i64>,
    /// No default: every build must get a value.
    pub required: bool,
    /// Where the block starts, `file:line`.
    pub at: String,
}

/// A parameter's type: Coder's `string`, `number`, `bool`, `list(string)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Number,
    Bool,
    #[serde(rename = "list(string)")]
    ListString,
}

impl ParamType {
    /// The name templates use.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Number => "number",
            ParamType::Bool => "bool",
            ParamType::ListString => "list(string)",
        }
    }

    fn from_name(name: &str) -> Option<ParamType> {
        [
            ParamType::String,
            ParamType::Number,
            ParamType::Bool,
            ParamType::ListString,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }
}

/// One `option {}` of a parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamOption {
    pub name: String,
    pub value: String,
    pub description: String,
}

/// A parameter's `validation {}` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub regex: Option<String>,
    /// Shown when the value is refused; `{min}`, `{max}` and `{value}` are
    /// replaced, as Coder does.
    pub error: Option<String>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    /// `increasing` or `decreasing`: compared with the previous build.
    pub monotonic: Option<String>,
}

/// One entry of a `coder_workspace_tags` block's `tags` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagExpr {
    pub key: String,
    /// The value expression's HCL text, as written.
    pub expr: String,
    /// The enclosing block's `count` expression, if it has one: when it
    /// evaluates to 0 the block's tags are left out (the seed docs' way of
    /// tagging only prebuilds).
    pub count: Option<String>,
    pub at: String,
}

/// A `data "coder_workspace_preset"` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub name: String,
    /// Parameter name → value, as strings.
    pub parameters: BTreeMap<String, String>,
    pub default: bool,
    pub prebuilds: Option<Prebuilds>,
    pub at: String,
}

/// A preset's `prebuilds {}` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prebuilds {
    /// How many to keep when no schedule is active.
    pub instances: u32,
    /// `expiration_policy { ttl }`; 0 means unclaimed prebuilds never expire.
    pub ttl_seconds: Option<u64>,
    pub scheduling: Option<Scheduling>,
}

impl Prebuilds {
    /// How many instances to keep at `now`: the count of the schedule
    /// covering that hour in the scheduling time zone (schedules never
    /// overlap), else the base `instances` — Coder's rule.
    pub fn desired_at(&self, now: chrono::DateTime<chrono::Utc>) -> u32 {
        use chrono::{Datelike, Timelike};
        let Some(scheduling) = &self.scheduling else {
            return self.instances;
        };
        // Both were checked when the template was pushed.
        let Ok(tz) = scheduling.timezone.parse::<chrono_tz::Tz>() else {
            return self.instances;
        };
        let local = now.with_timezone(&tz);
        let (hour, dom, month) = (local.hour(), local.day(), local.month());
        let dow = local.weekday().num_days_from_sunday();
        scheduling
            .schedules
            .iter()
            .find(|s| cron::parse(&s.cron).is_ok_and(|spec| spec.covers(hour, dom, month, dow)))
            .map_or(self.instances, |s| s.instances)
    }
}

/// `scheduling {}`: instance counts by time of week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scheduling {
    /// An IANA time zone name.
    pub timezone: String,
    pub schedules: Vec<Schedule>,
}

/// One `schedule {}`: `cron` is `* HOUR DOM MONTH DOW`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub cron: String,
    pub instances: u32,
}

/// Who and what a workspace build is for; the values templates read from
/// `data.coder_workspace` and `data.coder_workspace_owner`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildContext {
    pub owner_name: String,
    pub workspace_name: String,
    pub workspace_id: String,
    /// `start`, `stop` or `destroy` (Coder's transition, lowercased).
    pub transition: String,
    pub template_name: String,
    /// Template variable values (as given with `-var`).
    pub variables: BTreeMap<String, String>,
    /// Parameter name → value, typically from [`resolve_parameters`].
    pub parameters: BTreeMap<String, String>,
}

/// Reads the template in `dir`: every `*.tf` and `*.tf.json` file
/// directly in it, and `README.md`.
pub fn parse_dir(dir: &Path) -> Result<TemplateMeta, TemplateError> {
    let files = source::read_dir(dir)?;
    parse::parse(&files.tf, files.readme)
}

/// A `*.tf.json` file's `variable`, `locals` and `coder_*` data blocks as
/// HCL text (what this module reads of it), for the runner's own reading
/// of variable declarations. Malformed JSON is a `TemplateError::Syntax`.
pub fn tf_json_as_hcl(file: &str, text: &str) -> Result<String, TemplateError> {
    source::SourceFile::from_json(file.to_string(), text).map(|src| src.text)
}

/// [`parse_dir`] for a template archive (a tar, as pushed), extracted
/// within `limits`.
pub fn parse_archive(
    tar_bytes: &[u8],
    limits: &crate::archive::Limits,
) -> Result<TemplateMeta, TemplateError> {
    let dir = tempfile::tempdir().map_err(TemplateError::TempDir)?;
    crate::archive::extract(tar_bytes, dir.path(), limits).map_err(TemplateError::Extract)?;
    parse_dir(dir.path())
}

/// The tags of a template import job: the workspace tags evaluated with
/// variable defaults (overridden by `variables`) and parameter defaults.
///
/// There is no workspace or owner at import, so their attributes read as
/// empty (an owner-based condition takes its "not a prebuild" branch, as
/// Coder's import does for the importing user); any other data source or
/// resource is an error. Tags whose value is empty are left out.
pub fn import_tags(
    meta: &TemplateMeta,
    variables: &BTreeMap<String, String>,
) -> Result<crate::tags::Tags, TemplateError> {
    eval::tags(meta, &eval::Inputs::import(variables))
}

/// The tags of a workspace build: the workspace tags evaluated with the
/// build's variables, parameter values and workspace/owner context. Tags
/// whose value is empty are left out.
pub fn build_tags(
    meta: &TemplateMeta,
    ctx: &BuildContext,
) -> Result<crate::tags::Tags, TemplateError> {
    eval::tags(meta, &eval::Inputs::build(ctx))
}

/// A build's full parameter name → value map: defaults, then the previous
/// build's values (ephemeral parameters excepted), then the preset's
/// values, then `given`; each value checked against its parameter.
pub fn resolve_parameters(
    meta: &TemplateMeta,
    preset: Option<&str>,
    given: &BTreeMap<String, String>,
    previous: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, TemplateError> {
    resolve::resolve(meta, preset, given, previous)
}
