//! Conversions: tostring, tonumber, tobool, jsonencode, jsondecode, and
//! the stand-in for a `try` whose arguments all failed.

use hcl::Value;
use hcl::eval::FuncArgs;

use crate::template::value::{kind, number_from_f64, primitive_text};

/// `tostring(value)`: null stays null; lists and maps have no string form.
pub(super) fn tostring(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        other => primitive_text(other)
            .map(Value::String)
            .ok_or_else(|| format!("tostring: cannot convert a {} to a string", kind(other))),
    }
}

pub(super) fn tonumber(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Number(n) => Ok(Value::Number(*n)),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(number_from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("tonumber: cannot convert {s:?} to a number")),
        other => Err(format!(
            "tonumber: cannot convert a {} to a number",
            kind(other)
        )),
    }
}

pub(super) fn tobool(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Bool(b) => Ok(Value::Bool(*b)),
        Value::String(s) if s == "true" => Ok(Value::Bool(true)),
        Value::String(s) if s == "false" => Ok(Value::Bool(false)),
        Value::String(s) => Err(format!("tobool: cannot convert {s:?} to a bool")),
        other => Err(format!(
            "tobool: cannot convert a {} to a bool",
            kind(other)
        )),
    }
}

pub(super) fn jsonencode(args: FuncArgs) -> Result<Value, String> {
    serde_json::to_string(&args[0])
        .map(Value::String)
        .map_err(|err| format!("jsonencode: {err}"))
}

pub(super) fn jsondecode(args: FuncArgs) -> Result<Value, String> {
    let Value::String(s) = &args[0] else {
        return Err(format!(
            "jsondecode: argument must be a string, not a {}",
            kind(&args[0])
        ));
    };
    serde_json::from_str(s).map_err(|err| format!("jsondecode: {s:?} is not JSON: {err}"))
}

/// Reached only through a `try` call that `eval::try_call` replaced: its
/// one argument is why no alternative could be evaluated.
pub(super) fn try_failed(args: FuncArgs) -> Result<Value, String> {
    Err(primitive_text(&args[0]).unwrap_or_else(|| "no argument could be evaluated".into()))
}
