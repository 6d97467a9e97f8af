//! Collection functions: contains, lookup, coalesce, length, concat, merge.

use hcl::Value;
use hcl::eval::FuncArgs;

use super::{list, text};
use crate::template::value::kind;

/// `contains(list, value)`.
pub(super) fn contains(args: FuncArgs) -> Result<Value, String> {
    let items = list(&args, 0, "contains")?;
    Ok(Value::Bool(items.contains(&args[1])))
}

/// `lookup(map, key[, default])`: a missing key without a default is an
/// error, as in Terraform.
pub(super) fn lookup(args: FuncArgs) -> Result<Value, String> {
    if args.len() > 3 {
        return Err(format!(
            "lookup: expected 2 or 3 arguments, got {}",
            args.len()
        ));
    }
    let Value::Object(map) = &args[0] else {
        return Err(format!(
            "lookup: argument 1 must be a map, not a {}",
            kind(&args[0])
        ));
    };
    let key = text(&args, 1, "lookup")?;
    match (map.get(&key), args.get(2)) {
        (Some(value), _) => Ok(value.clone()),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(format!(
            "lookup: the map has no key {key:?} and no default was given"
        )),
    }
}

/// `coalesce(values...)`: the first that is neither null nor "".
pub(super) fn coalesce(args: FuncArgs) -> Result<Value, String> {
    args.iter()
        .find(|v| !matches!(v, Value::Null) && !matches!(v, Value::String(s) if s.is_empty()))
        .cloned()
        .ok_or_else(|| "coalesce: every argument is null or an empty string".to_string())
}

/// `length(value)`: characters of a string, elements of a list or map.
pub(super) fn length(args: FuncArgs) -> Result<Value, String> {
    let n = match &args[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        other => {
            return Err(format!(
                "length: cannot take the length of a {}",
                kind(other)
            ));
        }
    };
    Ok(Value::from(n))
}

/// `concat(lists...)`.
pub(super) fn concat(args: FuncArgs) -> Result<Value, String> {
    let mut all = Vec::new();
    for i in 0..args.len() {
        all.extend(list(&args, i, "concat")?.iter().cloned());
    }
    Ok(Value::Array(all))
}

/// `merge(maps...)`: later keys win; null arguments are skipped.
pub(super) fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut all = hcl::Map::new();
    for (i, arg) in args.iter().enumerate() {
        match arg {
            Value::Null => {}
            Value::Object(map) => all.extend(map.clone()),
            other => {
                return Err(format!(
                    "merge: argument {} must be a map, not a {}",
                    i + 1,
                    kind(other)
                ));
            }
        }
    }
    Ok(Value::Object(all))
}
