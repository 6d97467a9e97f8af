//! Values needed at push — a parameter's default, a preset's values,
//! prebuild counts — evaluated with the locals they use: those built from
//! variables, functions, the parameters' own attributes and other such
//! locals. A local known only per build or only to terraform is refused
//! with the chain of locals that leads to it.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};

use hcl::eval::{Context, Evaluate};
use hcl::{Expression, Value};

use super::{Budget, Local, Locals, MAX_DEPTH, Roots, check_size, local_name, scope};
use crate::template::eval::refs::{self, Raw};
use crate::template::eval::try_call;

/// The scope of values computed at push: the functions, variable defaults,
/// (once read) the parameters' own attributes, and the locals built from
/// them.
pub(in crate::template) struct Consts<'a> {
    pub ctx: Context<'static>,
    locals: &'a Locals,
    /// One budget for every value computed at this push.
    budget: RefCell<Budget>,
}

impl<'a> Consts<'a> {
    pub(super) fn new(ctx: Context<'static>, locals: &'a Locals) -> Consts<'a> {
        Consts {
            ctx,
            locals,
            budget: RefCell::new(Budget::new()),
        }
    }
}

/// What a local's reference means at push.
enum AtPush {
    Known,
    Local(String),
    /// Why the value cannot be known at push.
    Unknown(String),
}

fn at_push(r: &Raw) -> AtPush {
    let part = |i: usize| r.path.get(i).map(String::as_str);
    match (r.root.as_str(), part(0), part(2)) {
        ("var", _, _) => AtPush::Known,
        ("local", Some(name), _) => AtPush::Local(name.to_string()),
        ("data", Some("coder_parameter"), Some("value")) => AtPush::Unknown(format!(
            "references {}.value, which is known only per build",
            r.address(2)
        )),
        ("data", Some("coder_parameter"), _) => AtPush::Known,
        ("data", Some("coder_workspace" | "coder_workspace_owner"), _) => AtPush::Unknown(format!(
            "references {}, which is known only per build",
            r.address(2)
        )),
        (root, _, _) => AtPush::Unknown(format!(
            "references {}, which is only known when terraform runs",
            r.address(if root == "data" { 2 } else { 1 })
        )),
    }
}

impl Consts<'_> {
    /// `expr`'s value, or the problem (to follow the attribute's name).
    pub fn evaluate(&self, expr: &Expression) -> Result<Value, String> {
        let refs = refs::raw(expr)?;
        let uses: BTreeSet<&str> = refs.iter().filter_map(local_name).collect();
        let mut expr = expr.clone();
        let mut budget = self.budget.borrow_mut();
        let mut roots = Roots::new();
        let result = || "the result".to_string();
        if uses.is_empty() {
            try_call::resolve(&mut expr, &self.ctx);
            budget.allow(&expr, &self.ctx, &mut roots, result)?;
            let value = expr.evaluate(&self.ctx).map_err(|err| {
                format!("cannot be evaluated without terraform (only literals, functions and variable defaults can): {err}")
            })?;
            budget.charge(&value, result)?;
            return Ok(value);
        }
        let mut order = Vec::new();
        let mut done = HashSet::new();
        for name in &uses {
            self.visit(name, &mut Vec::new(), &mut order, &mut done)?;
        }
        let mut ctx = self.ctx.clone();
        let mut values: HashMap<&str, Value> = HashMap::new();
        for local in order {
            let named = || format!("local.{} ({})", local.decl.name, local.decl.at);
            ctx.declare_var("local", scope(local.deps(), &values));
            let mut local_expr = local.expr.clone();
            try_call::resolve(&mut local_expr, &ctx);
            budget.allow(&local_expr, &ctx, &mut roots, named)?;
            let value = local_expr.evaluate(&ctx).map_err(|err| {
                format!(
                    "uses {}, which cannot be evaluated without terraform: {err}",
                    named()
                )
            })?;
            check_size(&local.decl, &value)?;
            budget.charge(&value, named)?;
            values.insert(&local.decl.name, value);
        }
        ctx.declare_var("local", scope(uses.into_iter(), &values));
        try_call::resolve(&mut expr, &ctx);
        budget.allow(&expr, &ctx, &mut roots, result)?;
        let value = expr.evaluate(&ctx).map_err(|err| {
            format!("cannot be evaluated without terraform (only literals, functions, variable defaults and locals built from them can): {err}")
        })?;
        budget.charge(&value, result)?;
        Ok(value)
    }

    /// Puts `name` and the locals it needs, dependencies first, in `order`;
    /// `chain` is the path of locals that led here, for messages.
    fn visit<'a>(
        &'a self,
        name: &str,
        chain: &mut Vec<&'a Local>,
        order: &mut Vec<&'a Local>,
        done: &mut HashSet<&'a str>,
    ) -> Result<(), String> {
        let Some(local) = self.locals.get(name) else {
            return Err(format!(
                "references local.{name}, which the template does not declare"
            ));
        };
        if done.contains(name) {
            return Ok(());
        }
        // Read refused longer chains; this keeps the recursion bounded
        // should that ever change.
        if chain.len() >= MAX_DEPTH {
            return Err(format!(
                "uses local.{name} ({}), which is at the end of a chain of more than {MAX_DEPTH} locals",
                local.decl.at
            ));
        }
        chain.push(local);
        for r in &local.refs {
            match at_push(r) {
                AtPush::Known => {}
                // Read checked that every local exists and that there is no
                // cycle, so this ends.
                AtPush::Local(dep) => self.visit(&dep, chain, order, done)?,
                AtPush::Unknown(why) => {
                    let path: Vec<String> = chain
                        .iter()
                        .map(|l| format!("local.{} ({})", l.decl.name, l.decl.at))
                        .collect();
                    return Err(format!(
                        "uses {}, which {why}; only literals, functions, variable defaults and locals built from them can be used here",
                        path.join(", which uses ")
                    ));
                }
            }
        }
        chain.pop();
        done.insert(&local.decl.name);
        order.push(local);
        Ok(())
    }
}
