//! Terraform's JSON syntax (`*.tf.json`) read by writing the blocks the
//! reader uses — `variable`, `locals` and `data` — as HCL text, which is
//! then read like a `.tf` file. Each HCL line remembers the JSON line it
//! came from, so messages point into the JSON file.
//!
//! The mapping is terraform's: a block type's value is an object keyed by
//! its labels, level by level, and at any level an array of objects means
//! several in turn; in `locals` and `data` bodies a string is a template
//! (`"${var.x}"`, a lone interpolation keeping its value's type) and other
//! JSON values are literals; nested blocks (a parameter's `option`, a
//! preset's `prebuilds`) are known from the schema of the Coder blocks; a
//! `variable`'s `type` is a type expression in a string and its other
//! arguments are literals. Properties named `//` are comments. Blocks the
//! reader never looks at (resources, providers, other data sources'
//! bodies) are left out.

use std::collections::HashMap;

use super::json::{Json, Member, Node};

mod hcl_text;

use hcl_text::{Out, no_markers, quoted, template};

/// The HCL text and, per HCL line (from 0), the JSON line it came from.
pub(super) struct Converted {
    pub text: String,
    pub lines: Vec<usize>,
}

/// A problem and the JSON line it is on.
pub(super) type Problem = (usize, String);

pub(super) fn convert(root: &Node) -> Result<Converted, Problem> {
    let Json::Object(members) = &root.value else {
        return Err((
            root.line,
            "the top level must be an object of block types".into(),
        ));
    };
    let mut out = Out::default();
    for member in members {
        match member.key.as_str() {
            "variable" => {
                for (labels, body) in blocks(&member.value, 1, "variable")? {
                    out.open(body.line, "variable", &labels);
                    variable(&mut out, body)?;
                    out.close(body.line);
                }
            }
            "locals" => {
                for (_, body) in blocks(&member.value, 0, "locals")? {
                    out.open(body.line, "locals", &[]);
                    attributes(&mut out, body, &NONE)?;
                    out.close(body.line);
                }
            }
            "data" => {
                for (labels, body) in blocks(&member.value, 2, "data")? {
                    out.open(body.line, "data", &labels);
                    if let Some(schema) = data_schema(&labels[0]) {
                        attributes(&mut out, body, schema)?;
                    }
                    out.close(body.line);
                }
            }
            _ => {}
        }
    }
    Ok(Converted {
        text: out.text,
        lines: out.lines,
    })
}

/// Which attributes of a body are nested blocks, and their own schemas.
struct Schema {
    blocks: &'static [(&'static str, &'static Schema)],
}

const NONE: Schema = Schema { blocks: &[] };
const PARAMETER: Schema = Schema {
    blocks: &[("option", &NONE), ("validation", &NONE)],
};
const SCHEDULING: Schema = Schema {
    blocks: &[("schedule", &NONE)],
};
const PREBUILDS: Schema = Schema {
    blocks: &[("expiration_policy", &NONE), ("scheduling", &SCHEDULING)],
};
const PRESET: Schema = Schema {
    blocks: &[("prebuilds", &PREBUILDS)],
};

/// The data sources whose bodies the reader reads.
fn data_schema(kind: &str) -> Option<&'static Schema> {
    match kind {
        "coder_parameter" => Some(&PARAMETER),
        "coder_workspace_preset" => Some(&PRESET),
        "coder_workspace_tags" => Some(&NONE),
        _ => None,
    }
}

/// The blocks a block type's value holds: `labels` levels of objects keyed
/// by label, then the body; an array at any level holds several.
fn blocks<'a>(
    node: &'a Node,
    labels: usize,
    what: &str,
) -> Result<Vec<(Vec<String>, &'a Node)>, Problem> {
    let mut found = Vec::new();
    collect(node, labels, &mut Vec::new(), what, &mut found)?;
    Ok(found)
}

fn collect<'a>(
    node: &'a Node,
    left: usize,
    labels: &mut Vec<String>,
    what: &str,
    found: &mut Vec<(Vec<String>, &'a Node)>,
) -> Result<(), Problem> {
    match &node.value {
        Json::Array(items) => {
            for item in items {
                collect(item, left, labels, what, found)?;
            }
        }
        Json::Object(_) if left == 0 => found.push((labels.clone(), node)),
        Json::Object(members) => {
            for member in members.iter().filter(|m| m.key != "//") {
                // Terraform's labels here (names, types) are identifiers.
                labels.push(ident(&member.key, member.line)?.to_string());
                collect(&member.value, left - 1, labels, what, found)?;
                labels.pop();
            }
        }
        _ => {
            let level = if left == 0 {
                "its body".to_string()
            } else {
                format!("an object keyed by its labels ({left} more)")
            };
            return Err((node.line, format!("a {what} block must be {level}")));
        }
    }
    Ok(())
}

/// A `variable` body: `type` holds a type expression, everything else is
/// a literal (no templates); `validation` blocks are not read.
fn variable(out: &mut Out, body: &Node) -> Result<(), Problem> {
    for member in properties(body)? {
        match member.key.as_str() {
            "validation" => {}
            "type" => {
                let Json::String(text) = &member.value.value else {
                    return Err((
                        member.line,
                        "type must be a string such as \"list(string)\"".into(),
                    ));
                };
                // Written as is, so it must be one expression on one line.
                let valid =
                    !text.contains(['\n', '\r']) && hcl::edit::parser::parse_expr(text).is_ok();
                if !valid {
                    return Err((
                        member.line,
                        format!("type {text:?} is not a type expression"),
                    ));
                }
                out.write(member.line, &format!("type = {}", text.trim()));
                out.end();
            }
            key => {
                out.write(member.line, &format!("{} = ", ident(key, member.line)?));
                literal(out, &member.value);
                out.end();
            }
        }
    }
    Ok(())
}

/// A body whose properties are expressions, or nested blocks by `schema`.
fn attributes(out: &mut Out, body: &Node, schema: &Schema) -> Result<(), Problem> {
    for member in properties(body)? {
        let key = ident(&member.key, member.line)?;
        match schema.blocks.iter().find(|(name, _)| *name == key) {
            Some((_, nested)) => {
                for (_, inner) in blocks(&member.value, 0, key)? {
                    out.open(inner.line, key, &[]);
                    attributes(out, inner, nested)?;
                    out.close(inner.line);
                }
            }
            None => {
                out.write(member.line, &format!("{key} = "));
                expression(out, &member.value)?;
                out.end();
            }
        }
    }
    Ok(())
}

/// A body's properties without comments; an argument set twice is
/// refused, as terraform refuses it.
fn properties(body: &Node) -> Result<Vec<&Member>, Problem> {
    let Json::Object(members) = &body.value else {
        return Err((body.line, "a block body must be an object".into()));
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut found = Vec::new();
    for member in members.iter().filter(|m| m.key != "//") {
        let is_block = matches!(member.value.value, Json::Object(_) | Json::Array(_));
        if let Some(first) = seen.insert(&member.key, member.line)
            && !is_block
        {
            return Err((
                member.line,
                format!("{:?} is set twice (first on line {first})", member.key),
            ));
        }
        found.push(member);
    }
    Ok(found)
}

fn ident(key: &str, line: usize) -> Result<&str, Problem> {
    if hcl::Identifier::new(key).is_ok() {
        Ok(key)
    } else {
        Err((line, format!("{key:?} is not a valid name")))
    }
}

/// A JSON value as an HCL expression: strings are templates.
fn expression(out: &mut Out, node: &Node) -> Result<(), Problem> {
    match &node.value {
        Json::String(s) => {
            let text = template(s).map_err(|p| (node.line, p))?;
            out.write(node.line, &text);
        }
        Json::Array(items) => {
            out.write(node.line, "[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write(item.line, ", ");
                }
                expression(out, item)?;
            }
            out.write(node.line, "]");
        }
        Json::Object(members) => {
            out.write(node.line, "{");
            out.end();
            for member in members {
                // A key that is a lone interpolation is an expression key.
                let key = template(&member.key).map_err(|p| (member.line, p))?;
                let key = if key.starts_with('"') {
                    key
                } else {
                    format!("({key})")
                };
                out.write(member.line, &format!("{key} = "));
                expression(out, &member.value)?;
                out.end();
            }
            out.write(node.line, "}");
        }
        _ => literal(out, node),
    }
    Ok(())
}

/// A JSON value as an HCL literal: strings taken as they are.
fn literal(out: &mut Out, node: &Node) {
    match &node.value {
        Json::Null => out.write(node.line, "null"),
        Json::Bool(b) => out.write(node.line, &b.to_string()),
        Json::Number(n) => out.write(node.line, n),
        Json::String(s) => out.write(node.line, &quoted(&no_markers(s))),
        Json::Array(items) => {
            out.write(node.line, "[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.write(item.line, ", ");
                }
                literal(out, item);
            }
            out.write(node.line, "]");
        }
        Json::Object(members) => {
            out.write(node.line, "{");
            out.end();
            for member in members {
                out.write(
                    member.line,
                    &format!("{} = ", quoted(&no_markers(&member.key))),
                );
                literal(out, &member.value);
                out.end();
            }
            out.write(node.line, "}");
        }
    }
}

#[cfg(test)]
mod tests;
