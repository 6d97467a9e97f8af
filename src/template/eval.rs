//! Workspace tag evaluation: each tag's expression is parsed again from
//! its text, its references checked against what is known before
//! terraform runs, and evaluated by hcl-rs with the Terraform functions.
//!
//! Empty values: Coder merges tag maps ignoring empty values
//! (`provisionersdk.MutateTags`), so a tag that evaluates to "" is left out
//! of the job's tags rather than required as an empty value. That makes
//! `is_prebuild = owner == "prebuilds" ? "true" : ""` tag only prebuilds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use hcl::eval::{Context, ErrorKind, Evaluate};
use hcl::{Expression, Map, Value};

use super::locals::{Budget, Roots};
use super::value::{kind, primitive_text, whole_number};
use super::{BuildContext, Parameter, TemplateError, TemplateMeta, functions, variable};
use crate::tags::Tags;

mod locals;
pub(super) mod refs;
pub(super) mod try_call;

#[cfg(test)]
mod tests;

use refs::Ref;

/// What the expressions can see.
pub(super) struct Inputs<'a> {
    variables: &'a BTreeMap<String, String>,
    /// Parameter values; `None` at import, where only defaults exist.
    parameters: Option<&'a BTreeMap<String, String>>,
    /// The workspace and owner; `None` at import, where they read as empty.
    build: Option<&'a BuildContext>,
}

impl<'a> Inputs<'a> {
    pub fn import(variables: &'a BTreeMap<String, String>) -> Inputs<'a> {
        Inputs {
            variables,
            parameters: None,
            build: None,
        }
    }

    pub fn build(ctx: &'a BuildContext) -> Inputs<'a> {
        Inputs {
            variables: &ctx.variables,
            parameters: Some(&ctx.parameters),
            build: Some(ctx),
        }
    }
}

pub(super) fn tags(meta: &TemplateMeta, inputs: &Inputs) -> Result<Tags, TemplateError> {
    let mut tags = Tags::new();
    let mut set_at: HashMap<&str, &str> = HashMap::new();
    // One budget for all the tags: each may use the same big locals.
    let mut budget = Budget::new();
    // The locals' values, evaluated once per build and shared by its tags.
    let mut done: HashMap<String, Value> = HashMap::new();
    for tag in &meta.workspace_tags {
        let fail = |problem: String| TemplateError::Tag {
            at: tag.at.clone(),
            key: tag.key.clone(),
            problem,
        };
        if let Some(count) = &tag.count {
            let value = evaluate(meta, inputs, count, &mut budget, &mut done)
                .map_err(|p| fail(format!("count: {p}")))?;
            match whole_number(&value).filter(|_| matches!(value, Value::Number(_))) {
                Some(0) => continue,
                Some(n) if n > 0 => {}
                _ => {
                    return Err(fail(format!(
                        "count must be a whole number >= 0, not {value}"
                    )));
                }
            }
        }
        let value = evaluate(meta, inputs, &tag.expr, &mut budget, &mut done).map_err(fail)?;
        let text = match &value {
            Value::Null => {
                return Err(fail(format!(
                    "`{}` evaluates to null; use \"\" to leave the tag out",
                    tag.expr
                )));
            }
            other => primitive_text(other).ok_or_else(|| {
                fail(format!(
                    "`{}` evaluates to a {}; a tag value must be a string",
                    tag.expr,
                    kind(other)
                ))
            })?,
        };
        if text.is_empty() {
            continue;
        }
        if let Some(first) = set_at.insert(&tag.key, &tag.at) {
            return Err(fail(format!("also set by the tags at {first}")));
        }
        tags.insert(tag.key.clone(), text);
    }
    crate::tags::validate(&tags).map_err(TemplateError::Tags)?;
    Ok(tags)
}

/// One expression's value; the error is the problem only.
fn evaluate(
    meta: &TemplateMeta,
    inputs: &Inputs,
    text: &str,
    budget: &mut Budget,
    done: &mut HashMap<String, Value>,
) -> Result<Value, String> {
    let mut expr =
        Expression::from_str(text).map_err(|err| format!("`{text}` does not parse: {err}"))?;
    let uses = refs::collect(&expr, meta)?;
    let mut refs = uses.clone();
    let order = locals::expand(meta, &mut refs)?;
    let mut ctx = context(meta, inputs, &refs)?;
    crate::template::value::no_panic(|| {
        // `var` and `data` stay the same through this evaluation.
        let mut roots = Roots::new();
        locals::declare(order, &uses, &mut ctx, budget, &mut roots, done)?;
        try_call::resolve(&mut expr, &ctx);
        budget.allow(&expr, &ctx, &mut roots, || "the result".to_string())?;
        let value = expr.evaluate(&ctx).map_err(|err| describe(&err))?;
        budget.charge(&value, || "the result".to_string())?;
        Ok(value)
    })?
}

/// hcl-rs's message, without its wrapper around function errors (ours
/// start with the function's name already). A failed `try` says it all
/// itself; its expression is the stand-in call.
fn describe(err: &hcl::eval::Error) -> String {
    match (err.kind(), err.expr()) {
        (ErrorKind::FuncCall(name, msg), _) if name.name.as_str() == "try" => msg.clone(),
        (ErrorKind::FuncCall(_, msg), Some(expr)) => format!("{msg}, in `{expr}`"),
        (ErrorKind::FuncCall(_, msg), None) => msg.clone(),
        _ => err.to_string(),
    }
}

/// Only what the expression references is computed, so a variable without
/// a value matters only when a tag uses it.
fn context(
    meta: &TemplateMeta,
    inputs: &Inputs,
    refs: &BTreeSet<Ref>,
) -> Result<Context<'static>, String> {
    let mut ctx = Context::new();
    functions::declare(&mut ctx);
    let mut vars = Map::new();
    let mut data: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for r in refs {
        match r {
            Ref::Var(name) => {
                let Some(decl) = meta.variables.iter().find(|v| &v.name == name) else {
                    continue;
                };
                let given = inputs.variables.get(name).map(String::as_str);
                let value = match variable::value_of(decl, given) {
                    Ok(value) => value,
                    // At import a variable without a value reads as "" (as
                    // Coder's parser does): the tag is left out, the push
                    // is not refused.
                    Err(_) if inputs.build.is_none() && given.is_none() => {
                        Value::String(String::new())
                    }
                    Err(why) => return Err(format!("var.{name} has no value: {why}")),
                };
                vars.insert(name.clone(), value);
            }
            Ref::Param(label) => {
                let Some(p) = meta.parameters.iter().find(|p| &p.label == label) else {
                    continue;
                };
                data.entry("coder_parameter")
                    .or_default()
                    .insert(label.clone(), parameter(p, inputs)?);
            }
            Ref::Workspace(label) => {
                data.entry("coder_workspace")
                    .or_default()
                    .insert(label.clone(), workspace(inputs.build));
            }
            Ref::Owner(label) => {
                data.entry("coder_workspace_owner")
                    .or_default()
                    .insert(label.clone(), owner(inputs.build));
            }
            // Evaluated in this context, then declared (`locals::declare`).
            Ref::Local(_) => {}
        }
    }
    ctx.declare_var("var", Value::Object(vars));
    let data: Map<String, Value> = data
        .into_iter()
        .map(|(kind, blocks)| (kind.to_string(), Value::Object(blocks)))
        .collect();
    ctx.declare_var("data", Value::Object(data));
    Ok(ctx)
}

/// The provider's attributes for a build or an import.
fn parameter(p: &Parameter, inputs: &Inputs) -> Result<Value, String> {
    let given = inputs.parameters.and_then(|values| values.get(&p.name));
    // At import a required parameter reads as "" (Coder's parser does the
    // same), so a template with one can still be pushed.
    let at_import = String::new();
    let fallback = inputs.build.is_none().then_some(&at_import);
    let value = given.or(p.default.as_ref()).or(fallback).ok_or_else(|| {
        format!(
            "data.coder_parameter.{}.value: parameter {:?} has no default and no value was given",
            p.label, p.name
        )
    })?;
    Ok(super::parameter::attributes(p, Some(value)))
}

/// `data.coder_workspace.<any>`: what the provider reads from the build's
/// environment. At import everything is empty and nothing is a prebuild.
fn workspace(build: Option<&BuildContext>) -> Value {
    let none = BuildContext::default();
    let b = build.unwrap_or(&none);
    let is_prebuild = b.owner_name == PREBUILDS_OWNER;
    Value::Object(Map::from_iter([
        ("name".to_string(), Value::String(b.workspace_name.clone())),
        ("id".to_string(), Value::String(b.workspace_id.clone())),
        (
            "transition".to_string(),
            Value::String(b.transition.clone()),
        ),
        (
            "template_name".to_string(),
            Value::String(b.template_name.clone()),
        ),
        (
            "start_count".to_string(),
            Value::from(u8::from(b.transition == "start")),
        ),
        ("is_prebuild".to_string(), Value::Bool(is_prebuild)),
        (
            "prebuild_count".to_string(),
            Value::from(u8::from(is_prebuild)),
        ),
    ]))
}

/// Coder's system user that owns prebuilt workspaces until they are claimed.
pub(super) const PREBUILDS_OWNER: &str = "prebuilds";

fn owner(build: Option<&BuildContext>) -> Value {
    let name = build.map(|b| b.owner_name.clone()).unwrap_or_default();
    Value::Object(Map::from_iter([("name".to_string(), Value::String(name))]))
}
