//! The references an expression makes, checked before evaluation so that a
//! tag that depends on something only terraform knows (a resource, another
//! data source, a local built from one) fails with a message naming it,
//! instead of evaluating to something wrong.

use std::collections::BTreeSet;

use hcl::expr::{Expression, ObjectKey, Operation, TraversalOperator};
use hcl::template::{Directive, Element, Template};

use crate::template::TemplateMeta;

/// A reference that evaluation provides.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Ref {
    Var(String),
    /// By block label.
    Param(String),
    Workspace(String),
    Owner(String),
    /// A local, evaluated first with the same inputs.
    Local(String),
}

/// One reference as written: its root name (`var`, `data`, `local`, a
/// resource type) and the attribute names that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::template) struct Raw {
    pub root: String,
    pub path: Vec<String>,
}

impl Raw {
    /// `root.a.b`, as far as `parts` names go (the address a message shows).
    pub fn address(&self, parts: usize) -> String {
        std::iter::once(self.root.as_str())
            .chain(self.path.iter().take(parts).map(String::as_str))
            .collect::<Vec<_>>()
            .join(".")
    }
}

pub(in crate::template) const ALLOWED: &str = "workspace tags may use var.*, data.coder_parameter.*, data.coder_workspace.*, data.coder_workspace_owner.* and locals built from them";

pub(super) fn collect(expr: &Expression, meta: &TemplateMeta) -> Result<BTreeSet<Ref>, String> {
    raw(expr)?.iter().map(|r| classify(r, meta)).collect()
}

/// Every reference of `expr`, in the order written; names bound by `for`
/// are not references.
pub(in crate::template) fn raw(expr: &Expression) -> Result<Vec<Raw>, String> {
    let mut walker = Walker {
        scope: Vec::new(),
        refs: Vec::new(),
    };
    walker.expr(expr)?;
    Ok(walker.refs)
}

struct Walker {
    /// Names bound by enclosing `for` expressions and directives.
    scope: Vec<String>,
    refs: Vec<Raw>,
}

impl Walker {
    fn expr(&mut self, expr: &Expression) -> Result<(), String> {
        match expr {
            Expression::Variable(v) => self.reference(v.as_str(), &[]),
            Expression::Traversal(t) => {
                for op in &t.operators {
                    if let TraversalOperator::Index(index) = op {
                        self.expr(index)?;
                    }
                }
                match &t.expr {
                    Expression::Variable(v) => self.reference(v.as_str(), &path(&t.operators)),
                    other => self.expr(other),
                }
            }
            Expression::Array(items) => items.iter().try_for_each(|e| self.expr(e)),
            Expression::Object(object) => object.iter().try_for_each(|(k, v)| {
                if let ObjectKey::Expression(k) = k {
                    self.expr(k)?;
                }
                self.expr(v)
            }),
            Expression::TemplateExpr(t) => {
                let template = Template::from_expr(t).map_err(|err| err.to_string())?;
                self.template(&template)
            }
            Expression::FuncCall(call) => call.args.iter().try_for_each(|e| self.expr(e)),
            Expression::Parenthesis(inner) => self.expr(inner),
            Expression::Conditional(c) => {
                self.expr(&c.cond_expr)?;
                self.expr(&c.true_expr)?;
                self.expr(&c.false_expr)
            }
            Expression::Operation(op) => match &**op {
                Operation::Unary(u) => self.expr(&u.expr),
                Operation::Binary(b) => {
                    self.expr(&b.lhs_expr)?;
                    self.expr(&b.rhs_expr)
                }
            },
            Expression::ForExpr(f) => {
                self.expr(&f.collection_expr)?;
                let bound = f.key_var.iter().chain([&f.value_var]);
                let depth = self.scope.len();
                self.scope.extend(bound.map(|v| v.to_string()));
                let body = [
                    Some(&f.value_expr),
                    f.key_expr.as_ref(),
                    f.cond_expr.as_ref(),
                ];
                let result = body.into_iter().flatten().try_for_each(|e| self.expr(e));
                self.scope.truncate(depth);
                result
            }
            _ => Ok(()),
        }
    }

    fn template(&mut self, template: &Template) -> Result<(), String> {
        for element in template.elements() {
            match element {
                Element::Literal(_) => {}
                Element::Interpolation(i) => self.expr(&i.expr)?,
                Element::Directive(d) => match &**d {
                    Directive::If(d) => {
                        self.expr(&d.cond_expr)?;
                        self.template(&d.true_template)?;
                        if let Some(f) = &d.false_template {
                            self.template(f)?;
                        }
                    }
                    Directive::For(d) => {
                        self.expr(&d.collection_expr)?;
                        let depth = self.scope.len();
                        let bound = d.key_var.iter().chain([&d.value_var]);
                        self.scope.extend(bound.map(|v| v.to_string()));
                        let result = self.template(&d.template);
                        self.scope.truncate(depth);
                        result?;
                    }
                },
            }
        }
        Ok(())
    }

    fn reference(&mut self, root: &str, path: &[String]) -> Result<(), String> {
        if !self.scope.iter().any(|v| v == root) {
            self.refs.push(Raw {
                root: root.to_string(),
                path: path.to_vec(),
            });
        }
        Ok(())
    }
}

/// What a reference is for tag evaluation, or why it cannot be evaluated.
fn classify(raw: &Raw, meta: &TemplateMeta) -> Result<Ref, String> {
    let root = raw.root.as_str();
    let path = &raw.path;
    let first = path.first().map(String::as_str);
    Ok(match (root, first, path.get(1).map(String::as_str)) {
        ("var", Some(name), _) => {
            if !meta.variables.iter().any(|v| v.name == name) {
                return Err(format!(
                    "references var.{name}, which the template does not declare"
                ));
            }
            Ref::Var(name.to_string())
        }
        ("data", Some("coder_parameter"), Some(label)) => {
            if !meta.parameters.iter().any(|p| p.label == label) {
                return Err(format!(
                    "references data.coder_parameter.{label}, which the template does not declare"
                ));
            }
            Ref::Param(label.to_string())
        }
        ("data", Some("coder_workspace"), Some(label)) => Ref::Workspace(label.to_string()),
        ("data", Some("coder_workspace_owner"), Some(label)) => Ref::Owner(label.to_string()),
        ("data", Some(kind), Some(label)) => {
            return Err(format!(
                "references data.{kind}.{label}, a data source only terraform can read; {ALLOWED}"
            ));
        }
        ("local", Some(name), _) => {
            if !meta.locals_read {
                return Err(format!(
                    "references local.{name}, but this template version was stored before \
                     locals were read; push the template again"
                ));
            }
            if !meta.locals.iter().any(|l| l.name == name) {
                return Err(format!(
                    "references local.{name}, which the template does not declare"
                ));
            }
            Ref::Local(name.to_string())
        }
        ("count" | "each" | "path" | "terraform" | "self", Some(name), _) => {
            return Err(format!(
                "references {root}.{name}, which is not available here; {ALLOWED}"
            ));
        }
        (_, Some(name), _) => {
            return Err(format!(
                "references {root}.{name}, a resource whose attributes are only known after terraform runs; {ALLOWED}"
            ));
        }
        (_, None, _) => {
            return Err(format!(
                "references `{root}`, which is not defined; {ALLOWED}"
            ));
        }
    })
}

/// The leading attribute names of a traversal (`.a.b["c"]`), up to the
/// first operator that is not a name.
fn path(ops: &[TraversalOperator]) -> Vec<String> {
    ops.iter()
        .map_while(|op| match op {
            TraversalOperator::GetAttr(name) => Some(name.to_string()),
            TraversalOperator::Index(Expression::String(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}
