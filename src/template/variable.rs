//! `variable` blocks, and a variable's value for evaluation: the given
//! string converted by the declared type (as terraform converts `-var`), or
//! the default.

use std::str::FromStr;

use hcl::Value;

use super::blocks::Reader;
use super::value::{literal, number_from_f64};
use super::{TemplateError, VariableDecl};

/// Reads `variable "name" {}`. Terraform allows only literal defaults (no
/// references, no functions), so anything else is refused here too.
pub(super) fn read(reader: &Reader, name: String) -> Result<VariableDecl, TemplateError> {
    let type_expr = reader
        .attr("type")
        .and_then(|attr| {
            reader
                .src()
                .slice(hcl::edit::Span::span(&attr.value))
                .map(str::to_string)
        })
        .unwrap_or_default();
    let default_json = match reader.literal("default")? {
        None => None,
        Some((value, at)) => Some(serde_json::to_string(&value).map_err(|err| {
            reader.fail(&at, format!("default cannot be written as JSON: {err}"))
        })?),
    };
    Ok(VariableDecl {
        name,
        type_expr,
        description: reader.literal_string("description")?.unwrap_or_default(),
        required: default_json.is_none(),
        default_json,
        sensitive: reader.literal_bool("sensitive")?.unwrap_or(false),
    })
}

/// The value `var.<name>` has: `given` converted by the declared type,
/// else the default. `Err` says why there is none.
pub(super) fn value_of(decl: &VariableDecl, given: Option<&str>) -> Result<Value, String> {
    if let Some(given) = given {
        return convert(decl, given);
    }
    match &decl.default_json {
        Some(json) => serde_json::from_str(json)
            .map_err(|err| format!("its default {json} cannot be read back: {err}")),
        None => Err("it has no default and no value was given".to_string()),
    }
}

/// Terraform takes `-var` values of primitive types as the string itself
/// and parses values of collection types as HCL.
fn convert(decl: &VariableDecl, given: &str) -> Result<Value, String> {
    match decl.type_expr.as_str() {
        "" | "any" | "string" => Ok(Value::String(given.to_string())),
        "number" => given
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(number_from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("value {given:?} is not a number")),
        "bool" => match given {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("value {given:?} is not true or false")),
        },
        other => hcl::Expression::from_str(given)
            .map_err(|err| err.to_string())
            .and_then(|expr| literal(&expr))
            .map_err(|err| format!("value {given:?} is not a literal {other}: {err}")),
    }
}
