//! HCL values the way Terraform and Coder see them: numbers printed without
//! a needless fraction, primitives converted to strings, and "literal"
//! evaluation (no variables, no functions).

use hcl::eval::{Context, Evaluate};
use hcl::{Expression, Number, Value};

/// Terraform prints whole numbers without a fraction (`3`, not `3.0`).
pub(super) fn number_text(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f.fract() == 0.0 && f.abs() < 1e15 {
        // In range, so the cast is exact.
        return format!("{}", f as i64);
    }
    format!("{f}")
}

/// A number from a float, kept an integer when it is one, so that it
/// prints and compares like one.
pub(super) fn number_from_f64(f: f64) -> Option<Number> {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Some(Number::from(f as i64))
    } else {
        Number::from_f64(f)
    }
}

/// A primitive as the string Terraform converts it to; `None` for null,
/// lists and objects, which have no string form.
pub(super) fn primitive_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(number_text(n)),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// The type name used in messages.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Runs an hcl-rs evaluation, turning a panic into an error. hcl-rs does
/// integer arithmetic unchecked (`1 % 0`, and in debug builds `/ 0` and
/// overflow, panic), and a template is user input: it must get a clear
/// refusal, never take a coordinator request down.
pub(crate) fn no_panic<T>(eval: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(eval)).map_err(|_| {
        "arithmetic that cannot be evaluated (division by zero or overflow)".to_string()
    })
}

/// Evaluates an expression that may not reference anything or call
/// functions: strings, numbers, bools, null, lists and objects of them,
/// negation, templates without interpolation.
pub(super) fn literal(expr: &Expression) -> Result<Value, String> {
    no_panic(|| expr.evaluate(&Context::new()))?.map_err(|err| err.to_string())
}

/// A whole number from a number or a numeric string (Terraform converts
/// strings to numbers where a number is expected).
pub(super) fn whole_number(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// A bool from a bool or the strings `true`/`false`, as Terraform converts.
pub(super) fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}
