//! A build's parameter values, decided the way coderd's workspace builder
//! decides them: given values, else the preset's, else the previous
//! build's (ephemeral parameters never carry over), else the default.

use std::collections::BTreeMap;

use super::{TemplateError, TemplateMeta, check};

pub(super) fn resolve(
    meta: &TemplateMeta,
    preset: Option<&str>,
    given: &BTreeMap<String, String>,
    previous: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, TemplateError> {
    let unknown: Vec<String> = given
        .keys()
        .filter(|name| !meta.parameters.iter().any(|p| &p.name == *name))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(TemplateError::UnknownParameters { names: unknown });
    }
    let preset = match preset {
        None => None,
        Some(name) => Some(
            meta.presets
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| {
                    let known: Vec<String> = meta
                        .presets
                        .iter()
                        .map(|p| format!("{:?}", p.name))
                        .collect();
                    TemplateError::UnknownPreset {
                        name: name.to_string(),
                        known: if known.is_empty() {
                            "no presets".to_string()
                        } else {
                            known.join(", ")
                        },
                    }
                })?,
        ),
    };
    let preset_values = preset.map(|p| &p.parameters);
    if let Some(p) = preset {
        // Repeating the preset's own value is harmless; changing it would
        // make the workspace something the preset (and its prebuilds) is
        // not.
        let clash: Vec<String> = given
            .iter()
            .filter(|(name, value)| p.parameters.get(*name).is_some_and(|v| v != *value))
            .map(|(name, _)| name.clone())
            .collect();
        if !clash.is_empty() {
            return Err(TemplateError::SetByPreset {
                preset: p.name.clone(),
                names: clash,
            });
        }
    }

    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for param in &meta.parameters {
        let prev = previous.and_then(|values| values.get(&param.name));
        let value = given
            .get(&param.name)
            .or_else(|| preset_values.and_then(|values| values.get(&param.name)))
            .or(prev.filter(|_| !param.ephemeral))
            .or(param.default.as_ref());
        let Some(value) = value else {
            missing.push(param.name.clone());
            continue;
        };
        let fail = |problem: String| TemplateError::Value {
            at: param.at.clone(),
            name: param.name.clone(),
            problem,
        };
        check::value(param, value).map_err(fail)?;
        if let Some(prev) = prev {
            if !param.mutable && prev != value {
                return Err(fail(format!(
                    "is immutable: it was {prev:?} when the workspace was created and cannot change to {value:?}"
                )));
            }
            check::monotonic(param, prev, value).map_err(fail)?;
        }
        values.insert(param.name.clone(), value.clone());
    }
    if !missing.is_empty() {
        return Err(TemplateError::Missing { names: missing });
    }
    Ok(values)
}

#[cfg(test)]
mod tests;
