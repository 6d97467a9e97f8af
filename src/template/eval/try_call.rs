//! Terraform's `try(a, b, ...)`: the first argument that evaluates without
//! an error. hcl-rs evaluates every argument before calling a function, so
//! `try` is done before evaluation instead: each call is replaced by the
//! value of its first argument that evaluates, or, when none does, by a
//! call of the registered `try` stand-in that fails with the reason — only
//! if that part of the expression is actually evaluated (an untaken
//! conditional branch stays harmless).
//!
//! Limitation: arguments are evaluated in the expression's outer scope, so
//! a `try` inside a `for` expression cannot use the loop's variables.

use hcl::eval::{Context, Evaluate};
use hcl::expr::{Expression, FuncCall, Operation, TemplateExpr, TraversalOperator};
use hcl::template::{Directive, Element, Template};

pub(in crate::template) fn resolve(expr: &mut Expression, ctx: &Context) {
    match expr {
        Expression::FuncCall(call) if is_try(call) => *expr = attempt(call, ctx),
        Expression::FuncCall(call) => call.args.iter_mut().for_each(|a| resolve(a, ctx)),
        Expression::Array(items) => items.iter_mut().for_each(|e| resolve(e, ctx)),
        Expression::Object(object) => object.values_mut().for_each(|e| resolve(e, ctx)),
        Expression::TemplateExpr(t) => {
            if let Some(done) = template(t, ctx) {
                *expr = done;
            }
        }
        Expression::Traversal(t) => {
            resolve(&mut t.expr, ctx);
            for op in &mut t.operators {
                if let TraversalOperator::Index(index) = op {
                    resolve(index, ctx);
                }
            }
        }
        Expression::Parenthesis(inner) => resolve(inner, ctx),
        Expression::Conditional(c) => {
            resolve(&mut c.cond_expr, ctx);
            resolve(&mut c.true_expr, ctx);
            resolve(&mut c.false_expr, ctx);
        }
        Expression::Operation(op) => match &mut **op {
            Operation::Unary(u) => resolve(&mut u.expr, ctx),
            Operation::Binary(b) => {
                resolve(&mut b.lhs_expr, ctx);
                resolve(&mut b.rhs_expr, ctx);
            }
        },
        Expression::ForExpr(f) => {
            resolve(&mut f.collection_expr, ctx);
            resolve(&mut f.value_expr, ctx);
            f.key_expr.iter_mut().for_each(|e| resolve(e, ctx));
            f.cond_expr.iter_mut().for_each(|e| resolve(e, ctx));
        }
        _ => {}
    }
}

fn is_try(call: &FuncCall) -> bool {
    call.name.namespace.is_empty() && call.name.name.as_str() == "try"
}

fn attempt(call: &FuncCall, ctx: &Context) -> Expression {
    let mut last = "try needs at least one argument".to_string();
    for arg in &call.args {
        let mut arg = arg.clone();
        resolve(&mut arg, ctx);
        match arg.evaluate(ctx) {
            Ok(value) => return value.into(),
            Err(err) => last = super::describe(&err),
        }
    }
    Expression::FuncCall(Box::new(
        FuncCall::builder("try")
            .arg(format!(
                "try: no argument could be evaluated; the last failed with: {last}"
            ))
            .build(),
    ))
}

/// A string template containing a `try` call is evaluated whole (its
/// calls resolved first); `None` leaves templates without one untouched.
fn template(t: &TemplateExpr, ctx: &Context) -> Option<Expression> {
    let raw = match t {
        TemplateExpr::QuotedString(s) => s.as_str(),
        TemplateExpr::Heredoc(h) => h.template.as_str(),
    };
    if !raw.contains("try") {
        return None;
    }
    let mut template = Template::from_expr(t).ok()?;
    resolve_template(&mut template, ctx);
    Some(match template.evaluate(ctx) {
        Ok(s) => Expression::String(s),
        Err(err) => Expression::FuncCall(Box::new(
            FuncCall::builder("try").arg(super::describe(&err)).build(),
        )),
    })
}

fn resolve_template(template: &mut Template, ctx: &Context) {
    for element in template.elements_mut() {
        match element {
            Element::Literal(_) => {}
            Element::Interpolation(i) => resolve(&mut i.expr, ctx),
            Element::Directive(d) => match &mut **d {
                Directive::If(d) => {
                    resolve(&mut d.cond_expr, ctx);
                    resolve_template(&mut d.true_template, ctx);
                    if let Some(f) = &mut d.false_template {
                        resolve_template(f, ctx);
                    }
                }
                Directive::For(d) => {
                    resolve(&mut d.collection_expr, ctx);
                    resolve_template(&mut d.template, ctx);
                }
            },
        }
    }
}
