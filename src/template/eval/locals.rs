//! The locals a workspace tag uses, evaluated per job with the tag's own
//! inputs (a local built from a parameter follows the build's value, one
//! built from the owner is per build). A local that references something
//! only terraform knows fails the tag with a message naming the local,
//! where it is declared, and that reference.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;

use hcl::eval::{Context, Evaluate};
use hcl::{Expression, Value};

use super::refs::{self, Ref};
use super::{describe, try_call};
use crate::template::locals::{Budget, MAX_DEPTH, Roots, check_size, scope};
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
    let mut walk = Walk {
        decls: meta.locals.iter().map(|l| (l.name.as_str(), l)).collect(),
        meta,
        seen: HashSet::new(),
        order: Vec::new(),
    };
    let roots: Vec<String> = refs.iter().filter_map(local).collect();
    for name in roots {
        walk.visit(&name, 0, refs)?;
    }
    Ok(walk.order)
}

/// State of [`expand`]'s walk; lookups by name, as a tag may use many
/// locals.
struct Walk<'m> {
    meta: &'m TemplateMeta,
    decls: HashMap<&'m str, &'m LocalDecl>,
    seen: HashSet<&'m str>,
    order: Vec<Local<'m>>,
}

fn local(r: &Ref) -> Option<String> {
    match r {
        Ref::Local(name) => Some(name.clone()),
        _ => None,
    }
}

impl<'m> Walk<'m> {
    fn visit(&mut self, name: &str, depth: usize, refs: &mut BTreeSet<Ref>) -> Result<(), String> {
        if self.seen.contains(name) {
            return Ok(());
        }
        // The push refused cycles and longer chains; this keeps metadata
        // stored by anything else from recursing without end.
        let Some(&decl) = self.decls.get(name) else {
            return Err(format!(
                "references local.{name}, which the template does not declare"
            ));
        };
        // Depth 0 is the first local of a chain: as at push, a chain of
        // MAX_DEPTH locals passes and one more does not.
        if depth >= MAX_DEPTH {
            return Err(format!(
                "local.{name} ({}) is at the end of a chain of more than {MAX_DEPTH} locals",
                decl.at
            ));
        }
        // Nested as the chain goes: "uses local.a (…), which uses local.b (…),
        // which references …".
        let named = |p: String| format!("uses local.{name} ({}), which {p}", decl.at);
        let expr = Expression::from_str(&decl.expr)
            .map_err(|err| named(format!("does not parse: {err}")))?;
        let own = refs::collect(&expr, self.meta).map_err(named)?;
        let deps: Vec<String> = own.iter().filter_map(local).collect();
        for dep in &deps {
            self.visit(dep, depth + 1, refs).map_err(named)?;
        }
        refs.extend(own.into_iter().filter(|r| !matches!(r, Ref::Local(_))));
        self.seen.insert(decl.name.as_str());
        self.order.push(Local { decl, expr, deps });
        Ok(())
    }
}

/// Evaluates `order` in `ctx`, then declares `local` as the tag's own
/// expression sees it (the locals it names, `uses`). `done` holds the
/// locals this build evaluated already: a local's value is the same for
/// every tag of a build, so each is evaluated (and charged) once.
pub(super) fn declare(
    order: Vec<Local>,
    uses: &BTreeSet<Ref>,
    ctx: &mut Context,
    budget: &mut Budget,
    roots: &mut Roots,
    done: &mut HashMap<String, Value>,
) -> Result<(), String> {
    for mut local in order {
        if done.contains_key(&local.decl.name) {
            continue;
        }
        ctx.declare_var("local", scope(local.deps.iter().map(String::as_str), done));
        try_call::resolve(&mut local.expr, ctx);
        budget.allow(&local.expr, ctx, roots, || {
            format!("local.{} ({})", local.decl.name, local.decl.at)
        })?;
        let value = local.expr.evaluate(ctx).map_err(|err| {
            format!(
                "local.{} ({}): {}",
                local.decl.name,
                local.decl.at,
                describe(&err)
            )
        })?;
        check_size(local.decl, &value)?;
        budget.charge(&value, || {
            format!("local.{} ({})", local.decl.name, local.decl.at)
        })?;
        done.insert(local.decl.name.clone(), value);
    }
    let names: Vec<String> = uses.iter().filter_map(local).collect();
    ctx.declare_var("local", scope(names.iter().map(String::as_str), done));
    Ok(())
}
