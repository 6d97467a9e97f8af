//! Coder's rules for parameters: the definition (at import) and each value
//! (defaults, preset values, build values). Messages are the problem only;
//! callers add where and which parameter.

use regex::Regex;

use super::{ParamType, Parameter, Validation};

/// The definition checks terraform-provider-coder makes at template import.
pub(super) fn definition(p: &Parameter) -> Result<(), String> {
    if p.ephemeral && !p.mutable {
        return Err("an ephemeral parameter must be mutable (set mutable = true)".into());
    }
    if p.ephemeral && p.default.is_none() {
        return Err("an ephemeral parameter needs a default".into());
    }
    if let Some(v) = &p.validation {
        validation(p.r#type, v)?;
    }
    options(p)?;
    if let Some(default) = &p.default {
        value(p, default).map_err(|problem| format!("default: {problem}"))?;
    }
    Ok(())
}

fn validation(typ: ParamType, v: &Validation) -> Result<(), String> {
    let number_only = [
        ("min", v.min.is_some()),
        ("max", v.max.is_some()),
        ("monotonic", v.monotonic.is_some()),
    ];
    if let Some((what, _)) = number_only
        .into_iter()
        .find(|(_, set)| *set && typ != ParamType::Number)
    {
        return Err(format!(
            "validation {what} applies only to number parameters, not {}",
            typ.as_str()
        ));
    }
    if let Some(re) = &v.regex {
        if typ != ParamType::String {
            return Err(format!(
                "validation regex applies only to string parameters, not {}",
                typ.as_str()
            ));
        }
        compile(re)?;
        if v.error.as_deref().unwrap_or("").is_empty() {
            return Err("validation regex needs an error message (validation.error)".into());
        }
    }
    if let (Some(min), Some(max)) = (v.min, v.max)
        && min > max
    {
        return Err(format!("validation min {min} is greater than max {max}"));
    }
    if let Some(m) = &v.monotonic
        && m != "increasing"
        && m != "decreasing"
    {
        return Err(format!(
            "validation monotonic must be \"increasing\" or \"decreasing\", not {m:?}"
        ));
    }
    Ok(())
}

fn options(p: &Parameter) -> Result<(), String> {
    for (i, option) in p.options.iter().enumerate() {
        let earlier = &p.options[..i];
        if earlier.iter().any(|o| o.name == option.name) {
            return Err(format!("two options are named {:?}", option.name));
        }
        if earlier.iter().any(|o| o.value == option.value) {
            return Err(format!("two options have the value {:?}", option.value));
        }
        // A list(string) parameter's options are its possible elements.
        let element_type = match p.r#type {
            ParamType::ListString => ParamType::String,
            other => other,
        };
        of_type(element_type, &option.value)
            .and_then(|()| match (&p.validation, element_type == p.r#type) {
                (Some(v), true) => validated(p.r#type, v, &option.value),
                _ => Ok(()),
            })
            .map_err(|problem| format!("option {:?}: {problem}", option.name))?;
    }
    Ok(())
}

/// Checks one value: its type, the options, the validation block.
pub(super) fn value(p: &Parameter, value: &str) -> Result<(), String> {
    of_type(p.r#type, value)?;
    if !p.options.is_empty() {
        let allowed = |v: &str| p.options.iter().any(|o| o.value == v);
        let outside: Vec<String> = match p.r#type {
            ParamType::ListString => list_of_strings(value)?
                .into_iter()
                .filter(|v| !allowed(v))
                .collect(),
            _ if allowed(value) => Vec::new(),
            _ => vec![value.to_string()],
        };
        if let Some(first) = outside.first() {
            let options: Vec<String> = p.options.iter().map(|o| format!("{:?}", o.value)).collect();
            return Err(format!(
                "value {first:?} is not one of the options ({})",
                options.join(", ")
            ));
        }
    }
    match &p.validation {
        Some(v) => validated(p.r#type, v, value),
        None => Ok(()),
    }
}

fn of_type(typ: ParamType, value: &str) -> Result<(), String> {
    match typ {
        ParamType::String => Ok(()),
        ParamType::Number => match value.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(()),
            _ => Err(format!("value {value:?} is not a number")),
        },
        ParamType::Bool if value == "true" || value == "false" => Ok(()),
        ParamType::Bool => Err(format!("value {value:?} is not true or false")),
        ParamType::ListString => list_of_strings(value).map(drop),
    }
}

fn list_of_strings(value: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(value)
        .map_err(|_| format!("value {value:?} is not a JSON list of strings"))
}

/// The validation block's rules; a failing value gets the template's own
/// message when it has one (with `{min}`, `{max}`, `{value}` filled in).
fn validated(typ: ParamType, v: &Validation, value: &str) -> Result<(), String> {
    let custom = || {
        v.error.as_deref().filter(|e| !e.is_empty()).map(|e| {
            e.replace("{min}", &v.min.unwrap_or(0).to_string())
                .replace("{max}", &v.max.unwrap_or(0).to_string())
                .replace("{value}", value)
        })
    };
    match typ {
        ParamType::String => match &v.regex {
            Some(re) if !compile(re)?.is_match(value) => Err(format!(
                "{} (value {value:?} does not match {re:?})",
                custom().unwrap_or_else(|| "invalid value".into())
            )),
            _ => Ok(()),
        },
        // Coder's number validation works on whole numbers only.
        ParamType::Number => {
            let Ok(n) = value.trim().parse::<i64>() else {
                return Err(
                    custom().unwrap_or_else(|| format!("value {value:?} is not a whole number"))
                );
            };
            if let Some(min) = v.min.filter(|min| n < *min) {
                return Err(
                    custom().unwrap_or_else(|| format!("value {n} is less than the minimum {min}"))
                );
            }
            if let Some(max) = v.max.filter(|max| n > *max) {
                return Err(
                    custom().unwrap_or_else(|| format!("value {n} is more than the maximum {max}"))
                );
            }
            Ok(())
        }
        ParamType::Bool | ParamType::ListString => Ok(()),
    }
}

fn compile(re: &str) -> Result<Regex, String> {
    Regex::new(re).map_err(|err| format!("validation regex {re:?} does not compile: {err}"))
}

/// A `monotonic` parameter may only move one way from the previous build.
pub(super) fn monotonic(p: &Parameter, previous: &str, value: &str) -> Result<(), String> {
    let Some(direction) = p.validation.as_ref().and_then(|v| v.monotonic.as_deref()) else {
        return Ok(());
    };
    let (Ok(prev), Ok(new)) = (previous.trim().parse::<f64>(), value.trim().parse::<f64>()) else {
        return Ok(());
    };
    match direction {
        "increasing" if new < prev => Err(format!(
            "value {value} is less than the previous value {previous}; it may only increase"
        )),
        "decreasing" if new > prev => Err(format!(
            "value {value} is more than the previous value {previous}; it may only decrease"
        )),
        _ => Ok(()),
    }
}
