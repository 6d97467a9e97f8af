//! The Terraform functions templates use in workspace tags and defaults,
//! for hcl-rs's evaluator. Arguments are converted the way Terraform
//! converts them (a number where a string is expected becomes its text),
//! so type errors are this module's, with the function's name.
//!
//! `try` cannot be an ordinary function (its arguments must be evaluated
//! lazily); see `eval::try_call`. The function registered under its name
//! only ever receives the message of a `try` whose arguments all failed.

use hcl::Value;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};

use super::value::{kind, primitive_text};

mod collections;
mod convert;
mod strings;

#[cfg(test)]
mod tests;

/// Declares every function in `ctx`.
pub(super) fn declare(ctx: &mut Context) {
    let fixed = |n: usize, func| FuncDef::new(func, vec![ParamType::Any; n]);
    let variadic = |n: usize, func| {
        FuncDef::builder()
            .params(vec![ParamType::Any; n])
            .variadic_param(ParamType::Any)
            .build(func)
    };
    ctx.declare_func("lower", fixed(1, strings::lower));
    ctx.declare_func("upper", fixed(1, strings::upper));
    ctx.declare_func("trimspace", fixed(1, strings::trimspace));
    ctx.declare_func("format", variadic(1, strings::format));
    ctx.declare_func("replace", fixed(3, strings::replace));
    ctx.declare_func("startswith", fixed(2, strings::startswith));
    ctx.declare_func("endswith", fixed(2, strings::endswith));
    ctx.declare_func("split", fixed(2, strings::split));
    ctx.declare_func("join", variadic(2, strings::join));
    ctx.declare_func("contains", fixed(2, collections::contains));
    ctx.declare_func("lookup", variadic(2, collections::lookup));
    ctx.declare_func("coalesce", variadic(1, collections::coalesce));
    ctx.declare_func("length", fixed(1, collections::length));
    ctx.declare_func("concat", variadic(1, collections::concat));
    ctx.declare_func("merge", variadic(0, collections::merge));
    ctx.declare_func("tostring", fixed(1, convert::tostring));
    ctx.declare_func("tonumber", fixed(1, convert::tonumber));
    ctx.declare_func("tobool", fixed(1, convert::tobool));
    ctx.declare_func("jsonencode", fixed(1, convert::jsonencode));
    ctx.declare_func("jsondecode", fixed(1, convert::jsondecode));
    ctx.declare_func("try", fixed(1, convert::try_failed));
}

/// Argument `i` as a string (primitives converted).
fn text(args: &FuncArgs, i: usize, func: &str) -> Result<String, String> {
    let value = &args[i];
    primitive_text(value).ok_or_else(|| {
        format!(
            "{func}: argument {} must be a string, not a {}",
            i + 1,
            kind(value)
        )
    })
}

/// Argument `i` as a list.
fn list<'a>(args: &'a FuncArgs, i: usize, func: &str) -> Result<&'a Vec<Value>, String> {
    match &args[i] {
        Value::Array(items) => Ok(items),
        other => Err(format!(
            "{func}: argument {} must be a list, not a {}",
            i + 1,
            kind(other)
        )),
    }
}
