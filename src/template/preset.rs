//! `data "coder_workspace_preset"` blocks and their `prebuilds`, checked as
//! terraform-provider-coder and coderd check them.

use std::collections::BTreeMap;
use std::str::FromStr;

use hcl::Value;

use super::blocks::Reader;
use super::locals::Consts;
use super::value::{kind, primitive_text};
use super::{Parameter, Prebuilds, Preset, Schedule, Scheduling, TemplateError, check, cron};

/// A preset as read, with what later checks need to point at it.
pub(super) struct ReadPreset {
    pub preset: Preset,
    pub subject: String,
    /// Where `parameters` is written (the block when it is absent).
    pub parameters_at: String,
}

pub(super) fn read(
    reader: &Reader,
    subject: String,
    consts: &Consts,
) -> Result<ReadPreset, TemplateError> {
    reader.refuse_repetition()?;
    let name = reader.required_string("name")?;
    if name.is_empty() {
        return Err(reader.fail(&reader.at, "name must not be empty"));
    }
    reader.refuse_block(
        "parameters",
        "is a map attribute: write parameters = { name = \"value\" }",
    )?;
    let (parameters, parameters_at) = match reader.constant("parameters", consts)? {
        None | Some((Value::Null, _)) => (BTreeMap::new(), reader.at.clone()),
        Some((value, at)) => (parameter_map(reader, value, &at)?, at),
    };
    let prebuilds = match reader.at_most_one("prebuilds")? {
        Some(block) => Some(prebuilds(&block, consts)?),
        None => None,
    };
    Ok(ReadPreset {
        preset: Preset {
            name,
            parameters,
            default: reader.literal_bool("default")?.unwrap_or(false),
            prebuilds,
            at: reader.at.clone(),
        },
        subject,
        parameters_at,
    })
}

/// The provider's `parameters` is a map of non-empty strings.
fn parameter_map(
    reader: &Reader,
    value: Value,
    at: &str,
) -> Result<BTreeMap<String, String>, TemplateError> {
    let Value::Object(object) = value else {
        return Err(reader.fail(
            at,
            format!("parameters must be a map, not a {}", kind(&value)),
        ));
    };
    let mut map = BTreeMap::new();
    for (name, value) in object {
        let text = primitive_text(&value).ok_or_else(|| {
            reader.fail(
                at,
                format!(
                    "parameters: {name:?} must be a string, not a {}",
                    kind(&value)
                ),
            )
        })?;
        if text.is_empty() {
            return Err(reader.fail(at, format!("parameters: {name:?} must not be empty")));
        }
        map.insert(name, text);
    }
    Ok(map)
}

fn count(reader: &Reader, key: &str, consts: &Consts) -> Result<u32, TemplateError> {
    let (n, at) = reader
        .whole_number(key, Some(consts))?
        .ok_or_else(|| reader.missing(key))?;
    u32::try_from(n).map_err(|_| {
        reader.fail(
            &at,
            format!(
                "{} must be between 0 and {}, not {n}",
                reader.name(key),
                u32::MAX
            ),
        )
    })
}

fn prebuilds(reader: &Reader, consts: &Consts) -> Result<Prebuilds, TemplateError> {
    let instances = count(reader, "instances", consts)?;
    let ttl_seconds = match reader.at_most_one("expiration_policy")? {
        None => None,
        Some(policy) => {
            let (ttl, at) = policy
                .whole_number("ttl", Some(consts))?
                .ok_or_else(|| policy.missing("ttl"))?;
            // The provider's rule: 0 disables expiry, else 1 hour to 1 year.
            if ttl != 0 && !(3600..=31_536_000).contains(&ttl) {
                return Err(policy.fail(
                    &at,
                    format!(
                        "{} must be 0 or between 3600 and 31536000 seconds, not {ttl}",
                        policy.name("ttl")
                    ),
                ));
            }
            u64::try_from(ttl).ok()
        }
    };
    let scheduling = match reader.at_most_one("scheduling")? {
        None => None,
        Some(block) => Some(scheduling(&block, consts)?),
    };
    Ok(Prebuilds {
        instances,
        ttl_seconds,
        scheduling,
    })
}

fn scheduling(reader: &Reader, consts: &Consts) -> Result<Scheduling, TemplateError> {
    let timezone = reader.required_string("timezone")?;
    if chrono_tz::Tz::from_str(&timezone).is_err() {
        let at = reader
            .attr("timezone")
            .map(|a| reader.attr_at(a))
            .unwrap_or_default();
        return Err(reader.fail(
            &at,
            format!(
                "{} {timezone:?} is not an IANA time zone name (like \"UTC\" or \"Europe/Berlin\")",
                reader.name("timezone")
            ),
        ));
    }
    let blocks = reader.blocks("schedule");
    if blocks.is_empty() {
        return Err(reader.fail(
            &reader.at,
            format!(
                "{}: at least one block is required",
                reader.name("schedule")
            ),
        ));
    }
    let mut schedules: Vec<Schedule> = Vec::new();
    let mut specs: Vec<(cron::Spec, String)> = Vec::new();
    for block in &blocks {
        let cron_text = block.required_string("cron")?;
        let cron_at = block
            .attr("cron")
            .map(|a| block.attr_at(a))
            .unwrap_or_default();
        let spec = cron::parse(&cron_text).map_err(|why| {
            block.fail(
                &cron_at,
                format!("{} {cron_text:?}: {why}", block.name("cron")),
            )
        })?;
        if let Some(j) = specs
            .iter()
            .position(|(other, _)| cron::overlap(other, &spec))
        {
            return Err(block.fail(
                &cron_at,
                format!(
                    "{} {cron_text:?} overlaps {:?} ({}); schedules must not overlap",
                    block.name("cron"),
                    schedules[j].cron,
                    specs[j].1
                ),
            ));
        }
        specs.push((spec, cron_at));
        schedules.push(Schedule {
            cron: cron_text,
            instances: count(block, "instances", consts)?,
        });
    }
    Ok(Scheduling {
        timezone,
        schedules,
    })
}

/// Checks across presets and against the parameters: unique names, one
/// default at most, and every preset's values valid for existing
/// parameters, covering every required one.
pub(super) fn check_all(presets: &[ReadPreset], params: &[Parameter]) -> Result<(), TemplateError> {
    let fail = |p: &ReadPreset, at: &str, problem: String| TemplateError::Invalid {
        at: at.to_string(),
        subject: p.subject.clone(),
        problem,
    };
    for (i, p) in presets.iter().enumerate() {
        let earlier = &presets[..i];
        if let Some(first) = earlier.iter().find(|e| e.preset.name == p.preset.name) {
            return Err(fail(
                p,
                &p.preset.at,
                format!(
                    "another preset is named {:?} ({})",
                    p.preset.name, first.preset.at
                ),
            ));
        }
        if let Some(first) = earlier
            .iter()
            .find(|e| e.preset.default && p.preset.default)
        {
            return Err(fail(
                p,
                &p.preset.at,
                format!(
                    "only one preset may be the default; {} is too",
                    first.preset.at
                ),
            ));
        }
        for (name, value) in &p.preset.parameters {
            let Some(param) = params.iter().find(|q| &q.name == name) else {
                return Err(fail(
                    p,
                    &p.parameters_at,
                    format!("parameters: the template has no parameter named {name:?}"),
                ));
            };
            check::value(param, value)
                .map_err(|why| fail(p, &p.parameters_at, format!("parameters: {name:?}: {why}")))?;
        }
        let missing: Vec<String> = params
            .iter()
            .filter(|q| q.required && !p.preset.parameters.contains_key(&q.name))
            .map(|q| format!("{:?}", q.name))
            .collect();
        if !missing.is_empty() {
            return Err(fail(
                p,
                &p.parameters_at,
                format!(
                    "does not set required parameters {}; a preset must set every parameter without a default",
                    missing.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
