//! `data "coder_parameter"` blocks.

use hcl::{Map, Value};

use super::blocks::Reader;
use super::locals::Consts;
use super::value::{kind, primitive_text};
use super::{ParamOption, ParamType, Parameter, TemplateError, Validation, check};

/// Reads and checks one parameter block. `consts` evaluates defaults and
/// descriptions (functions and variable defaults).
pub(super) fn read(
    reader: &Reader,
    label: &str,
    consts: &Consts,
) -> Result<Parameter, TemplateError> {
    reader.refuse_repetition()?;
    let name = reader.required_string("name")?;
    if name.is_empty() {
        return Err(reader.fail(&reader.at, "name must not be empty"));
    }
    let r#type = match reader.literal_string("type")? {
        None => ParamType::String,
        Some(t) => ParamType::from_name(&t).ok_or_else(|| {
            let at = reader
                .attr("type")
                .map(|a| reader.attr_at(a))
                .unwrap_or_default();
            reader.fail(
                &at,
                format!(
                    "type {t:?} is not one of \"string\", \"number\", \"bool\", \"list(string)\""
                ),
            )
        })?,
    };
    let default = default(reader, consts)?;
    let parameter = Parameter {
        display_name: constant_string(reader, "display_name", consts)?.unwrap_or_default(),
        description: constant_string(reader, "description", consts)?.unwrap_or_default(),
        r#type,
        required: default.is_none(),
        default,
        mutable: reader.literal_bool("mutable")?.unwrap_or(false),
        ephemeral: reader.literal_bool("ephemeral")?.unwrap_or(false),
        options: options(reader)?,
        validation: validation(reader)?,
        order: reader.whole_number("order", None)?.map(|(n, _)| n),
        at: reader.at.clone(),
        label: label.to_string(),
        name,
    };
    check::definition(&parameter).map_err(|problem| reader.fail(&reader.at, problem))?;
    Ok(parameter)
}

/// `data.coder_parameter.<label>` as the provider exposes it. `value` is
/// always a string, as in Coder; without one (at parse time) it is absent,
/// so only terraform-independent attributes such as `name` can be used.
pub(super) fn attributes(p: &Parameter, value: Option<&str>) -> Value {
    let text = |s: &str| Value::String(s.to_string());
    let mut attrs = Map::from_iter([
        ("name".to_string(), text(&p.name)),
        ("display_name".to_string(), text(&p.display_name)),
        ("description".to_string(), text(&p.description)),
        ("type".to_string(), text(p.r#type.as_str())),
        (
            "default".to_string(),
            p.default.as_deref().map_or(Value::Null, text),
        ),
        ("mutable".to_string(), Value::Bool(p.mutable)),
        ("ephemeral".to_string(), Value::Bool(p.ephemeral)),
        ("optional".to_string(), Value::Bool(!p.required)),
        (
            "order".to_string(),
            p.order.map_or(Value::Null, Value::from),
        ),
    ]);
    if let Some(value) = value {
        attrs.insert("value".to_string(), text(value));
    }
    Value::Object(attrs)
}

fn constant_string(
    reader: &Reader,
    key: &str,
    consts: &Consts,
) -> Result<Option<String>, TemplateError> {
    let found = reader.constant(key, consts)?;
    reader.string_of(key, found)
}

/// The provider's `default` is a string: numbers and bools are converted,
/// and a `list(string)` default is written `jsonencode([...])`. A `null`
/// default is no default (the parameter is required), as in the provider.
fn default(reader: &Reader, consts: &Consts) -> Result<Option<String>, TemplateError> {
    match reader.constant("default", consts)? {
        None | Some((Value::Null, _)) => Ok(None),
        Some((value, at)) => primitive_text(&value).map(Some).ok_or_else(|| {
            reader.fail(
                &at,
                format!(
                    "default must be a string, not a {} (a list(string) default is written jsonencode([...]))",
                    kind(&value)
                ),
            )
        }),
    }
}

fn options(reader: &Reader) -> Result<Vec<ParamOption>, TemplateError> {
    let blocks = reader.blocks("option");
    if blocks.len() > 64 {
        return Err(reader.fail(&blocks[64].at, "at most 64 options are allowed"));
    }
    blocks
        .iter()
        .map(|option| {
            Ok(ParamOption {
                name: option.required_string("name")?,
                value: option.required_string("value")?,
                description: option.literal_string("description")?.unwrap_or_default(),
            })
        })
        .collect()
}

fn validation(reader: &Reader) -> Result<Option<Validation>, TemplateError> {
    let Some(v) = reader.at_most_one("validation")? else {
        return Ok(None);
    };
    Ok(Some(Validation {
        regex: v.literal_string("regex")?,
        error: v.literal_string("error")?,
        min: v.whole_number("min", None)?.map(|(n, _)| n),
        max: v.whole_number("max", None)?.map(|(n, _)| n),
        monotonic: v.literal_string("monotonic")?,
    }))
}

#[cfg(test)]
mod tests;
