//! `locals` blocks: read from every file and checked as terraform checks
//! them (each name declared once, no reference to an undeclared local, no
//! cycle), then used two ways. Workspace tags keep the locals they use in
//! the metadata and evaluate them per job (`eval::locals`). Values needed
//! at push — a parameter's default, a preset's values — are evaluated here
//! ([`Consts`]): they may use a local built from variables, functions and
//! other such locals, never one known only per build or only when
//! terraform runs. Locals nothing evaluates are never evaluated, so the
//! usual ones built from resources cost nothing.

use std::collections::{BTreeSet, HashMap};

use hcl::edit::Span;
use hcl::edit::structure::Body;
use hcl::eval::Context;
use hcl::{Expression, Map, Value};

use super::eval::refs::{self, Raw};
use super::parse::declared_once;

mod bound;
mod budget;
pub(super) use bound::Roots;
pub(super) use budget::{Budget, approx_size};
mod consts;

use super::source::SourceFile;
use super::{LocalDecl, TagExpr, TemplateError};
pub(super) use consts::Consts;

/// How long a chain of locals may be: evaluation recurses along it.
pub(super) const MAX_DEPTH: usize = 64;

/// How big a local's value may grow (values and string bytes): a chain of
/// `[local.a, local.a]` doubles at every step.
const MAX_VALUE_SIZE: usize = 1 << 20;

/// How many locals a template may declare: each is checked at every push.
pub(super) const MAX_LOCALS: usize = 10_000;

pub(super) struct Local {
    decl: LocalDecl,
    expr: Expression,
    refs: Vec<Raw>,
    /// The locals it uses, each once: the scope clones each one's value.
    deps: Vec<String>,
}

impl Local {
    pub fn deps(&self) -> impl Iterator<Item = &str> {
        self.deps.iter().map(String::as_str)
    }
}

/// `local.<name>`'s name.
pub(super) fn local_name(r: &Raw) -> Option<&str> {
    (r.root == "local").then(|| r.path.first().map(String::as_str))?
}

pub(super) struct Locals {
    list: Vec<Local>,
    /// Name → position in `list`: every reference is looked up.
    index: HashMap<String, usize>,
}

impl Locals {
    /// Every `locals` block of every file, checked. `seen` holds the
    /// addresses declared so far (for the "declared twice" message).
    pub fn read(
        bodies: &[(&SourceFile, Body)],
        seen: &mut HashMap<String, String>,
    ) -> Result<Locals, TemplateError> {
        let mut list = Vec::new();
        for (src, body) in bodies {
            for block in body.get_blocks("locals") {
                let fail = |at: String, problem: String| TemplateError::Invalid {
                    at,
                    subject: "locals block".into(),
                    problem,
                };
                if !block.labels.is_empty() {
                    return Err(fail(src.at(block.span()), "takes no labels".into()));
                }
                if let Some(nested) = block.body.blocks().next() {
                    return Err(fail(
                        src.at(nested.span()),
                        format!(
                            "holds only attributes, not a {} block",
                            nested.ident.as_str()
                        ),
                    ));
                }
                for attr in block.body.attributes() {
                    let name = attr.key.as_str().to_string();
                    let at = src.at(attr.span());
                    if list.len() == MAX_LOCALS {
                        return Err(invalid(
                            &at,
                            &name,
                            format!(
                                "is one local too many: a template may declare at most {MAX_LOCALS}"
                            ),
                        ));
                    }
                    declared_once(seen, format!("local.{name}"), &at)?;
                    let expr = Expression::from(attr.value.clone());
                    let refs = refs::raw(&expr).map_err(|p| invalid(&at, &name, p))?;
                    let text = src.slice(attr.value.span()).unwrap_or_default().to_string();
                    let deps: BTreeSet<String> = refs
                        .iter()
                        .filter_map(local_name)
                        .map(str::to_string)
                        .collect();
                    list.push(Local {
                        deps: deps.into_iter().collect(),
                        decl: LocalDecl {
                            name,
                            expr: text,
                            at,
                        },
                        expr,
                        refs,
                    });
                }
            }
        }
        let index = list
            .iter()
            .enumerate()
            .map(|(i, l)| (l.decl.name.clone(), i))
            .collect();
        let locals = Locals { list, index };
        locals.check()?;
        Ok(locals)
    }

    pub fn get(&self, name: &str) -> Option<&Local> {
        self.index.get(name).map(|&i| &self.list[i])
    }

    /// Terraform refuses a reference to an undeclared local and a cycle
    /// even in locals nothing uses. A chain longer than [`MAX_DEPTH`] is
    /// refused too, however the locals are ordered: every walk over the
    /// locals (here, at push, per build) recurses along it.
    fn check(&self) -> Result<(), TemplateError> {
        for local in &self.list {
            if let Some(name) = local.deps().find(|d| self.get(d).is_none()) {
                return Err(invalid(
                    &local.decl.at,
                    &local.decl.name,
                    format!("references local.{name}, which the template does not declare"),
                ));
            }
        }
        let mut heights = HashMap::new();
        for local in &self.list {
            self.acyclic(local, &mut Vec::new(), &mut heights)?;
        }
        Ok(())
    }

    /// `local`'s height: 1 + the highest of the locals it uses. Memoized
    /// in `heights`, so the height, not the path, bounds the chain: a chain
    /// declared dependencies first never makes the path longer than one.
    fn acyclic<'a>(
        &'a self,
        local: &'a Local,
        path: &mut Vec<&'a str>,
        heights: &mut HashMap<&'a str, usize>,
    ) -> Result<usize, TemplateError> {
        let name = local.decl.name.as_str();
        if let Some(&height) = heights.get(name) {
            return Ok(height);
        }
        if let Some(start) = path.iter().position(|n| *n == name) {
            let cycle: Vec<String> = path[start..]
                .iter()
                .chain([&name])
                .map(|n| format!("local.{n}"))
                .collect();
            let first = self.get(path[start]).map_or(&local.decl, |l| &l.decl);
            return Err(invalid(
                &first.at,
                &first.name,
                format!("depends on itself: {}", cycle.join(" → ")),
            ));
        }
        if path.len() >= MAX_DEPTH {
            return Err(invalid(
                &local.decl.at,
                &local.decl.name,
                format!("is at the end of a chain of more than {MAX_DEPTH} locals"),
            ));
        }
        path.push(name);
        let mut height = 1;
        for dep in local.deps() {
            if let Some(dep) = self.get(dep) {
                height = height.max(1 + self.acyclic(dep, path, heights)?);
            }
        }
        path.pop();
        if height > MAX_DEPTH {
            return Err(invalid(
                &local.decl.at,
                &local.decl.name,
                format!("is at the end of a chain of more than {MAX_DEPTH} locals"),
            ));
        }
        heights.insert(name, height);
        Ok(height)
    }

    /// The locals the workspace tags use, directly or through others, in
    /// declaration order: what must be kept to evaluate the tags per job.
    pub fn used_by(&self, tags: &[TagExpr]) -> Vec<LocalDecl> {
        let mut wanted: Vec<String> = Vec::new();
        for text in tags.iter().flat_map(|t| [Some(&t.expr), t.count.as_ref()]) {
            let Some(refs) = text
                .and_then(|t| t.parse::<Expression>().ok())
                .and_then(|e| refs::raw(&e).ok())
            else {
                continue;
            };
            wanted.extend(refs.iter().filter_map(local_name).map(str::to_string));
        }
        let mut keep: BTreeSet<String> = BTreeSet::new();
        while let Some(name) = wanted.pop() {
            if let Some(local) = self.get(&name)
                && keep.insert(name)
            {
                wanted.extend(local.deps().map(str::to_string));
            }
        }
        self.list
            .iter()
            .filter(|l| keep.contains(&l.decl.name))
            .map(|l| l.decl.clone())
            .collect()
    }

    /// The scope for values computed at push: `ctx` plus these locals.
    pub fn consts(&self, ctx: Context<'static>) -> Consts<'_> {
        Consts::new(ctx, self)
    }
}

fn invalid(at: &str, name: &str, problem: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        at: at.to_string(),
        subject: format!("local.{name}"),
        problem: problem.into(),
    }
}

/// The `local` object an expression sees: the locals it names, evaluated.
pub(super) fn scope<'a, K>(
    names: impl Iterator<Item = &'a str>,
    values: &HashMap<K, Value>,
) -> Value
where
    K: std::borrow::Borrow<str> + std::hash::Hash + Eq,
{
    let map: Map<String, Value> = names
        .filter_map(|n| Some((n.to_string(), values.get(n)?.clone())))
        .collect();
    Value::Object(map)
}

/// Refuses a value over [`MAX_VALUE_SIZE`] before anything copies it.
pub(super) fn check_size(local: &LocalDecl, value: &Value) -> Result<(), String> {
    fn size(value: &Value, left: &mut usize) -> bool {
        let own = match value {
            Value::String(s) => s.len() + 1,
            _ => 1,
        };
        *left = match left.checked_sub(own) {
            Some(n) => n,
            None => return false,
        };
        match value {
            Value::Array(items) => items.iter().all(|v| size(v, left)),
            Value::Object(map) => map.iter().all(|(k, v)| {
                *left = left.saturating_sub(k.len());
                size(v, left)
            }),
            _ => true,
        }
    }
    let mut left = MAX_VALUE_SIZE;
    if size(value, &mut left) {
        Ok(())
    } else {
        Err(format!(
            "local.{} ({}) evaluates to a value larger than {MAX_VALUE_SIZE} bytes",
            local.name, local.at
        ))
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
