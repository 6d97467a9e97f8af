//! An upper bound of what evaluating one expression builds, checked
//! before hcl-rs evaluates it: an evaluation cannot be stopped midway, and
//! one expression can multiply its inputs (`[for x in local.l : local.s]`,
//! `[local.a, local.a, …]`, `replace(local.s, ",", local.s)`). Measured
//! in the budget's approximate bytes; a reference costs the whole value
//! of its root (`local`, `var`, `data`), measured once.

use std::collections::HashMap;

use hcl::eval::{Context, Evaluate};
use hcl::expr::{Expression, ObjectKey, TemplateExpr, TraversalOperator, Variable};
use hcl::template::{Directive, Element, Template};

use super::approx_size;

const UNIT: usize = std::mem::size_of::<hcl::Value>();

/// The sizes of the roots measured so far, but `local`: `var` and `data`
/// stay the same through one evaluation, `local` changes for each local.
pub(in crate::template) type Roots = HashMap<String, usize>;

/// At most how much evaluating `expr` in `ctx` builds.
pub(in crate::template) fn bound(expr: &Expression, ctx: &Context, roots: &mut Roots) -> usize {
    Bound {
        ctx,
        roots,
        local: None,
        iter: Vec::new(),
    }
    .expr(expr)
}

struct Bound<'c, 'a> {
    ctx: &'c Context<'a>,
    roots: &'c mut Roots,
    local: Option<usize>,
    /// `for` variables in scope: each at most its collection.
    iter: Vec<(String, usize)>,
}

impl Bound<'_, '_> {
    fn root(&mut self, name: &str) -> usize {
        if let Some((_, size)) = self.iter.iter().rev().find(|(n, _)| n == name) {
            return *size;
        }
        let known = if name == "local" {
            self.local
        } else {
            self.roots.get(name).copied()
        };
        if let Some(size) = known {
            return size;
        }
        // Measured on a clone (hcl-rs lends no reference): once per root.
        let size = Expression::Variable(Variable::unchecked(name))
            .evaluate(self.ctx)
            .map_or(UNIT, |v| approx_size(&v));
        if name == "local" {
            self.local = Some(size);
        } else {
            self.roots.insert(name.to_string(), size);
        }
        size
    }

    fn exprs<'e>(&mut self, list: impl IntoIterator<Item = &'e Expression>) -> usize {
        list.into_iter()
            .fold(0, |sum, e| sum.saturating_add(self.expr(e)))
    }

    /// `n` copies of what `body` builds with `vars` bound to `each`.
    fn repeat(
        &mut self,
        collection: usize,
        vars: &[&str],
        body: impl FnOnce(&mut Self) -> usize,
    ) -> usize {
        let depth = self.iter.len();
        self.iter
            .extend(vars.iter().map(|v| (v.to_string(), collection)));
        let one = body(self);
        self.iter.truncate(depth);
        let n = collection / UNIT + 1;
        collection.saturating_add(n.saturating_mul(one))
    }

    fn expr(&mut self, expr: &Expression) -> usize {
        match expr {
            Expression::String(s) => UNIT + s.len(),
            Expression::Array(items) => UNIT.saturating_add(self.exprs(items)),
            Expression::Object(map) => map.iter().fold(UNIT, |sum, (k, v)| {
                let key = match k {
                    ObjectKey::Identifier(id) => UNIT + id.len(),
                    ObjectKey::Expression(e) => self.expr(e),
                    other => UNIT + other.to_string().len(),
                };
                sum.saturating_add(key).saturating_add(self.expr(v))
            }),
            Expression::TemplateExpr(t) => self.template_expr(t),
            Expression::Variable(v) => self.root(v.as_str()),
            Expression::Traversal(t) => {
                let mut sum = self.expr(&t.expr);
                for op in &t.operators {
                    if let TraversalOperator::Index(i) = op {
                        sum = sum.saturating_add(self.expr(i));
                    }
                }
                sum
            }
            Expression::FuncCall(call) => {
                let args: Vec<usize> = call.args.iter().map(|a| self.expr(a)).collect();
                let all = args.iter().fold(0usize, |s, a| s.saturating_add(*a));
                let arg = |i: usize| args.get(i).copied().unwrap_or(0);
                let made = match call.name.name.as_str() {
                    // Each match of `old` may become `new`.
                    "replace" => arg(0).saturating_mul(arg(2) / UNIT + 1),
                    // The separator between every two elements.
                    "join" => arg(0).saturating_mul(all / UNIT + 1),
                    // A value per byte.
                    "split" | "jsondecode" => arg(1).max(arg(0)).saturating_mul(UNIT + 1),
                    // Escapes: at most 6 bytes a byte.
                    "jsonencode" | "format" => all.saturating_mul(6),
                    _ => all,
                };
                all.saturating_add(made)
            }
            Expression::Parenthesis(e) => self.expr(e),
            Expression::Conditional(c) => {
                let cond = self.expr(&c.cond_expr);
                let branch = self.expr(&c.true_expr).max(self.expr(&c.false_expr));
                cond.saturating_add(branch)
            }
            Expression::Operation(op) => match &**op {
                hcl::expr::Operation::Unary(u) => self.expr(&u.expr),
                hcl::expr::Operation::Binary(b) => {
                    UNIT.saturating_add(self.exprs([&b.lhs_expr, &b.rhs_expr]))
                }
            },
            Expression::ForExpr(f) => {
                let collection = self.expr(&f.collection_expr);
                let mut vars = vec![f.value_var.as_str()];
                vars.extend(f.key_var.as_ref().map(|k| k.as_str()));
                self.repeat(collection, &vars, |b| {
                    let key = f.key_expr.as_ref().map_or(0, |k| b.expr(k));
                    let cond = f.cond_expr.as_ref().map_or(0, |c| b.expr(c));
                    UNIT.saturating_add(key)
                        .saturating_add(cond)
                        .saturating_add(b.expr(&f.value_expr))
                })
            }
            _ => UNIT,
        }
    }

    fn template_expr(&mut self, t: &TemplateExpr) -> usize {
        match Template::from_expr(t) {
            Ok(template) => self.template(&template),
            // Evaluation refuses it too; its text bounds what it holds.
            Err(_) => UNIT + t.to_string().len(),
        }
    }

    fn template(&mut self, template: &Template) -> usize {
        template.elements().iter().fold(UNIT, |sum, element| {
            let part = match element {
                Element::Literal(s) => s.len(),
                Element::Interpolation(i) => self.expr(&i.expr),
                Element::Directive(d) => match &**d {
                    Directive::If(d) => {
                        let t = self.template(&d.true_template);
                        let f = d.false_template.as_ref().map_or(0, |f| self.template(f));
                        self.expr(&d.cond_expr).saturating_add(t.max(f))
                    }
                    Directive::For(d) => {
                        let collection = self.expr(&d.collection_expr);
                        let mut vars = vec![d.value_var.as_str()];
                        vars.extend(d.key_var.as_ref().map(|k| k.as_str()));
                        self.repeat(collection, &vars, |b| b.template(&d.template))
                    }
                },
            };
            sum.saturating_add(part)
        })
    }
}
