//! String functions: lower, upper, trimspace, format, replace, startswith,
//! endswith, split, join.

use hcl::Value;
use hcl::eval::FuncArgs;
use regex::Regex;

use super::{list, text};
use crate::template::value::{kind, primitive_text, whole_number};

pub(super) fn lower(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(text(&args, 0, "lower")?.to_lowercase()))
}

pub(super) fn upper(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(text(&args, 0, "upper")?.to_uppercase()))
}

pub(super) fn trimspace(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::String(
        text(&args, 0, "trimspace")?.trim().to_string(),
    ))
}

pub(super) fn startswith(args: FuncArgs) -> Result<Value, String> {
    let (s, prefix) = (text(&args, 0, "startswith")?, text(&args, 1, "startswith")?);
    Ok(Value::Bool(s.starts_with(&prefix)))
}

pub(super) fn endswith(args: FuncArgs) -> Result<Value, String> {
    let (s, suffix) = (text(&args, 0, "endswith")?, text(&args, 1, "endswith")?);
    Ok(Value::Bool(s.ends_with(&suffix)))
}

/// `replace(string, substring, replacement)`; a substring written
/// `/.../` is a regular expression, as in Terraform (`$1` in the
/// replacement refers to its groups).
pub(super) fn replace(args: FuncArgs) -> Result<Value, String> {
    let s = text(&args, 0, "replace")?;
    let from = text(&args, 1, "replace")?;
    let to = text(&args, 2, "replace")?;
    let pattern = from
        .strip_prefix('/')
        .and_then(|rest| rest.strip_suffix('/'))
        .filter(|_| from.len() >= 2);
    Ok(Value::String(match pattern {
        Some(pattern) => Regex::new(pattern)
            .map_err(|err| format!("replace: {from:?} is not a valid regular expression: {err}"))?
            .replace_all(&s, to.as_str())
            .into_owned(),
        None => s.replace(&from, &to),
    }))
}

/// `split(separator, string)`; an empty separator splits into characters.
pub(super) fn split(args: FuncArgs) -> Result<Value, String> {
    let sep = text(&args, 0, "split")?;
    let s = text(&args, 1, "split")?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(&sep)
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(parts))
}

/// `join(separator, list, ...)`.
pub(super) fn join(args: FuncArgs) -> Result<Value, String> {
    let sep = text(&args, 0, "join")?;
    let mut parts = Vec::new();
    for i in 1..args.len() {
        for item in list(&args, i, "join")? {
            parts.push(primitive_text(item).ok_or_else(|| {
                format!("join: list elements must be strings, not a {}", kind(item))
            })?);
        }
    }
    Ok(Value::String(parts.join(&sep)))
}

/// `format(spec, args...)` with the verbs templates use: `%s`, `%v`,
/// `%d`, `%q`, `%t`, `%f` and `%%`.
pub(super) fn format(args: FuncArgs) -> Result<Value, String> {
    let spec = text(&args, 0, "format")?;
    let mut out = String::new();
    let mut next = 1;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars
            .next()
            .ok_or("format: the format string ends with a lone %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .get(next)
            .ok_or_else(|| format!("format: not enough arguments for %{verb}"))?;
        next += 1;
        let bad = || format!("format: %{verb} cannot format a {} ({arg})", kind(arg));
        match verb {
            's' => out.push_str(&primitive_text(arg).ok_or_else(bad)?),
            'v' => out.push_str(&match primitive_text(arg) {
                Some(s) => s,
                None => serde_json::to_string(arg).map_err(|e| e.to_string())?,
            }),
            'd' => out.push_str(&whole_number(arg).ok_or_else(bad)?.to_string()),
            'q' => out.push_str(
                &serde_json::to_string(&primitive_text(arg).ok_or_else(bad)?)
                    .map_err(|e| e.to_string())?,
            ),
            't' => match arg {
                Value::Bool(b) => out.push_str(&b.to_string()),
                _ => return Err(bad()),
            },
            'f' => match arg {
                Value::Number(n) => out.push_str(&format!("{:.6}", n.as_f64().unwrap_or(0.0))),
                _ => return Err(bad()),
            },
            other => return Err(format!("format: unsupported verb %{other}")),
        }
    }
    if next < args.len() {
        return Err(format!(
            "format: too many arguments; the format string uses {}",
            next - 1
        ));
    }
    Ok(Value::String(out))
}
