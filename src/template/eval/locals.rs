//! The locals a workspace tag uses, evaluated per job with the tag's own
//! inputs (a local built from a parameter follows the build's value, one
//! built from the owner is per build). A local that references something
//! only terraform knows fails the tag with a message naming the local,
//! where it is declared, and that reference.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use hcl::eval::{Context, Evaluate};
use hcl::{Expression, Value};

use super::refs::{self, Ref};
use super::{describe, try_call};
use crate::template::locals::{MAX_DEPTH, check_size, scope};
use crate::template::{LocalDecl, TemplateMeta};

pub(super) struct Local<'a> {
    decl: &'a LocalDecl,
    expr: Expression,
    deps: Vec<String>,
}

/// The locals `refs` names, directly or through other locals, in the order
/// they must be evaluated; their own references are added to `refs`.
pub(super) fn expand<'m>(
    meta: &'m TemplateMeta,
    refs: &mut BTreeSet<Ref>,
) -> Result<Vec<Local<'m>>, String> {
    let mut order = Vec::new();
    let roots: Vec<String> = refs.iter().filter_map(local).collect();
    for name in roots {
        visit(meta, &name, 0, refs, &mut order)?;
    }
    Ok(order)
}

fn local(r: &Ref) -> Option<String> {
    match r {
        Ref::Local(name) => Some(name.clone()),
        _ => None,
    }
}

fn visit<'m>(
    meta: &'m TemplateMeta,
    name: &str,
    depth: usize,
    refs: &mut BTreeSet<Ref>,
    order: &mut Vec<Local<'m>>,
) -> Result<(), String> {
    if order.iter().any(|l| l.decl.name == name) {
        return Ok(());
    }
    // The push refused cycles and longer chains; this keeps metadata
    // stored by anything else from recursing without end.
    let Some(decl) = meta.locals.iter().find(|l| l.name == name) else {
        return Err(format!(
            "references local.{name}, which the template does not declare"
        ));
    };
    if depth > MAX_DEPTH {
        return Err(format!(
            "local.{name} ({}) is at the end of a chain of more than {MAX_DEPTH} locals",
            decl.at
        ));
    }
    // Nested as the chain goes: "uses local.a (…), which uses local.b (…),
    // which references …".
    let named = |p: String| format!("uses local.{name} ({}), which {p}", decl.at);
    let expr =
        Expression::from_str(&decl.expr).map_err(|err| named(format!("does not parse: {err}")))?;
    let own = refs::collect(&expr, meta).map_err(named)?;
    let deps: Vec<String> = own.iter().filter_map(local).collect();
    for dep in &deps {
        visit(meta, dep, depth + 1, refs, order).map_err(named)?;
    }
    refs.extend(own.into_iter().filter(|r| !matches!(r, Ref::Local(_))));
    order.push(Local { decl, expr, deps });
    Ok(())
}

/// Evaluates `order` in `ctx`, then declares `local` as the tag's own
/// expression sees it (the locals it names, `uses`).
pub(super) fn declare(
    order: Vec<Local>,
    uses: &BTreeSet<Ref>,
    ctx: &mut Context,
) -> Result<(), String> {
    let mut values: HashMap<&str, Value> = HashMap::new();
    for mut local in order {
        ctx.declare_var(
            "local",
            scope(local.deps.iter().map(String::as_str), &values),
        );
        try_call::resolve(&mut local.expr, ctx);
        let value = local.expr.evaluate(ctx).map_err(|err| {
            format!(
                "local.{} ({}): {}",
                local.decl.name,
                local.decl.at,
                describe(&err)
            )
        })?;
        check_size(local.decl, &value)?;
        values.insert(&local.decl.name, value);
    }
    let names: Vec<String> = uses.iter().filter_map(local).collect();
    ctx.declare_var("local", scope(names.iter().map(String::as_str), &values));
    Ok(())
}
