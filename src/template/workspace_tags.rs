//! `data "coder_workspace_tags"` blocks: each tag's key and value
//! expression, kept as source text and evaluated per job (Coder keeps the
//! text the same way).

use hcl::edit::Span;
use hcl::edit::expr::{Expression, ObjectKey};

use super::blocks::Reader;
use super::{TagExpr, TemplateError};

pub(super) fn read(reader: &Reader) -> Result<Vec<TagExpr>, TemplateError> {
    let src = reader.src();
    if let Some(attr) = reader.attr("for_each") {
        return Err(reader.fail(
            &reader.attr_at(attr),
            "for_each is not supported on coder_workspace_tags (count is)",
        ));
    }
    let count = reader
        .attr("count")
        .and_then(|attr| src.slice(attr.value.span()))
        .map(str::to_string);
    let attr = reader.attr("tags").ok_or_else(|| reader.missing("tags"))?;
    let Expression::Object(object) = &attr.value else {
        return Err(reader.fail(
            &reader.attr_at(attr),
            "tags must be written as an object: tags = { key = value, ... }",
        ));
    };
    let mut tags: Vec<TagExpr> = Vec::new();
    for (key, value) in object.iter() {
        let at = src.at(key.span());
        let key = match key {
            ObjectKey::Ident(ident) => ident.as_str().to_string(),
            ObjectKey::Expression(Expression::String(s)) => s.value().clone(),
            ObjectKey::Expression(other) => {
                return Err(reader.fail(
                    &at,
                    format!(
                        "tag keys must be literal names or strings, not `{}`",
                        src.slice(other.span()).unwrap_or("?")
                    ),
                ));
            }
        };
        if let Some(first) = tags.iter().find(|t| t.key == key) {
            return Err(reader.fail(
                &at,
                format!("tag {key:?} is defined twice (also {})", first.at),
            ));
        }
        let expr = src
            .slice(value.expr().span())
            .ok_or_else(|| reader.fail(&at, format!("tag {key:?}: its value has no source text")))?
            .to_string();
        tags.push(TagExpr {
            key,
            expr,
            count: count.clone(),
            at,
        });
    }
    Ok(tags)
}

#[cfg(test)]
mod tests;
