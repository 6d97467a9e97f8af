//! The walk over a template's files: variables first (their defaults may
//! be used by the other blocks), then locals, then the Coder data sources,
//! then the checks that span blocks and files.

use std::collections::HashMap;

use hcl::Value;
use hcl::edit::Span;
use hcl::edit::structure::{Block, Body};
use hcl::eval::Context;

use super::blocks::Reader;
use super::locals::{Consts, Locals};
use super::source::SourceFile;
use super::{
    Parameter, TagExpr, TemplateError, TemplateMeta, functions, parameter, preset, variable,
    workspace_tags,
};

pub(super) fn parse(
    files: &[SourceFile],
    readme: Option<String>,
) -> Result<TemplateMeta, TemplateError> {
    let bodies = files
        .iter()
        .map(|src| Ok((src, src.parse()?)))
        .collect::<Result<Vec<(&SourceFile, Body)>, TemplateError>>()?;

    let mut variables = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (src, body) in &bodies {
        for block in body.get_blocks("variable") {
            let [label] = &block.labels[..] else {
                return Err(unlabeled(src, block, "variable", "one label (its name)"));
            };
            let name = label.as_str();
            let reader = Reader::new(src, block, format!("variable {name:?}"));
            declared_once(&mut seen, format!("variable {name:?}"), &reader.at)?;
            variables.push(variable::read(&reader, name.to_string())?);
        }
    }
    let locals = Locals::read(&bodies, &mut seen)?;
    let consts = locals.consts(constants(&variables));

    let mut parameters: Vec<Parameter> = Vec::new();
    let mut workspace_tags: Vec<TagExpr> = Vec::new();
    let mut presets = Vec::new();
    for (src, body) in &bodies {
        for (block, kind, label) in data_blocks(src, body)? {
            let subject = format!("{kind} {label:?}");
            let reader = Reader::new(src, block, subject);
            declared_once(&mut seen, format!("data {kind:?} {label:?}"), &reader.at)?;
            match kind {
                "coder_parameter" => {
                    let p = parameter::read(&reader, label, &consts)?;
                    if let Some(first) = parameters.iter().find(|q| q.name == p.name) {
                        return Err(reader.fail(
                            &reader.at,
                            format!("parameter name {:?} is also used at {}", p.name, first.at),
                        ));
                    }
                    parameters.push(p);
                }
                "coder_workspace_tags" => {
                    for tag in workspace_tags::read(&reader)? {
                        // Blocks without `count` always apply, so the same
                        // key in two of them is a conflict (Coder refuses it
                        // too); with `count` it is checked per job.
                        let clash = workspace_tags
                            .iter()
                            .find(|t| t.key == tag.key && t.count.is_none() && tag.count.is_none());
                        if let Some(first) = clash {
                            return Err(reader.fail(
                                &tag.at,
                                format!("tag {:?} is also defined at {}", tag.key, first.at),
                            ));
                        }
                        workspace_tags.push(tag);
                    }
                }
                _ => {}
            }
        }
    }
    // Presets come last: real templates key their parameters by
    // `(data.coder_parameter.<label>.name)`, so those must be known.
    let consts = with_parameters(consts, &parameters);
    for (src, body) in &bodies {
        for (block, kind, label) in data_blocks(src, body)? {
            if kind == "coder_workspace_preset" {
                let subject = format!("{kind} {label:?}");
                let reader = Reader::new(src, block, subject.clone());
                presets.push(preset::read(&reader, subject, &consts)?);
            }
        }
    }
    preset::check_all(&presets, &parameters)?;
    Ok(TemplateMeta {
        locals: locals.used_by(&workspace_tags),
        locals_read: true,
        parameters,
        workspace_tags,
        presets: presets.into_iter().map(|p| p.preset).collect(),
        readme,
        variables,
    })
}

/// Every `data "type" "label"` block of a file.
fn data_blocks<'a>(
    src: &SourceFile,
    body: &'a Body,
) -> Result<Vec<(&'a Block, &'a str, &'a str)>, TemplateError> {
    body.get_blocks("data")
        .map(|block| match &block.labels[..] {
            [kind, label] => Ok((block, kind.as_str(), label.as_str())),
            _ => Err(unlabeled(src, block, "data", "two labels (type and name)")),
        })
        .collect()
}

fn unlabeled(src: &SourceFile, block: &Block, what: &str, needs: &str) -> TemplateError {
    TemplateError::Invalid {
        at: src.at(block.span()),
        subject: format!("{what} block"),
        problem: format!("needs exactly {needs}"),
    }
}

/// Terraform refuses a second block with the same address.
pub(super) fn declared_once(
    seen: &mut HashMap<String, String>,
    address: String,
    at: &str,
) -> Result<(), TemplateError> {
    match seen.get(&address) {
        Some(first) => Err(TemplateError::Invalid {
            at: at.to_string(),
            subject: address,
            problem: format!("declared twice (first at {first})"),
        }),
        None => {
            seen.insert(address, at.to_string());
            Ok(())
        }
    }
}

/// The scope for values computed at parse time: the Terraform functions
/// and `var.<name>` for every variable with a default.
fn constants(variables: &[super::VariableDecl]) -> Context<'static> {
    let mut ctx = Context::new();
    functions::declare(&mut ctx);
    let defaults: hcl::Map<String, Value> = variables
        .iter()
        .filter_map(|v| Some((v.name.clone(), variable::value_of(v, None).ok()?)))
        .collect();
    ctx.declare_var("var", Value::Object(defaults));
    ctx
}

/// `consts` plus `data.coder_parameter.<label>` without `value`.
fn with_parameters<'a>(mut consts: Consts<'a>, parameters: &[Parameter]) -> Consts<'a> {
    let by_label: hcl::Map<String, Value> = parameters
        .iter()
        .map(|p| (p.label.clone(), parameter::attributes(p, None)))
        .collect();
    let data = hcl::Map::from_iter([("coder_parameter".to_string(), Value::Object(by_label))]);
    consts.ctx.declare_var("data", Value::Object(data));
    consts
}
