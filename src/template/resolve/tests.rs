//! Parameter resolution: defaults, presets, previous builds, checks.

use std::collections::BTreeMap;

use crate::template::tests::parse_one;
use crate::template::{TemplateMeta, resolve_parameters};

fn meta() -> TemplateMeta {
    parse_one(
        r#"
data "coder_parameter" "region" {
  name = "region"
  option {
    name  = "EU"
    value = "eu"
  }
  option {
    name  = "US"
    value = "us"
  }
}
data "coder_parameter" "cpus" {
  name    = "cpus"
  type    = "number"
  default = 2
  mutable = true
  validation {
    min       = 1
    max       = 8
    monotonic = "increasing"
  }
}
data "coder_parameter" "debug" {
  name      = "debug"
  type      = "bool"
  default   = false
  mutable   = true
  ephemeral = true
}
data "coder_parameter" "tools" {
  name    = "tools"
  type    = "list(string)"
  default = "[]"
  mutable = true
}
data "coder_parameter" "dotfiles" {
  name    = "dotfiles"
  default = ""
  mutable = true
  validation {
    regex = "^(https://.*)?$"
    error = "use https"
  }
}
data "coder_workspace_preset" "eu" {
  name       = "EU"
  parameters = { region = "eu", cpus = 4 }
}
"#,
    )
    .expect("parse")
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn resolve(
    preset: Option<&str>,
    given: &[(&str, &str)],
    previous: Option<&[(&str, &str)]>,
) -> Result<BTreeMap<String, String>, String> {
    let previous = previous.map(map);
    resolve_parameters(&meta(), preset, &map(given), previous.as_ref()).map_err(|e| e.to_string())
}

#[test]
fn defaults_then_preset_then_given() {
    assert_eq!(
        resolve(None, &[("region", "us")], None).unwrap(),
        map(&[
            ("region", "us"),
            ("cpus", "2"),
            ("debug", "false"),
            ("tools", "[]"),
            ("dotfiles", "")
        ])
    );
    let with_preset = resolve(Some("EU"), &[("debug", "true"), ("cpus", "4")], None).unwrap();
    assert_eq!(with_preset["region"], "eu");
    assert_eq!(with_preset["cpus"], "4");
    assert_eq!(with_preset["debug"], "true");
}

#[test]
fn previous_values_carry_over_except_ephemeral() {
    let previous = [
        ("region", "us"),
        ("cpus", "6"),
        ("debug", "true"),
        ("tools", "[\"git\"]"),
    ];
    let values = resolve(None, &[], Some(&previous)).unwrap();
    assert_eq!(values["region"], "us");
    assert_eq!(values["cpus"], "6");
    assert_eq!(values["tools"], "[\"git\"]");
    assert_eq!(
        values["debug"], "false",
        "ephemeral parameters start from the default"
    );
}

/// Preset, given values, previous values, expected message.
type Case<'a> = (
    Option<&'a str>,
    &'a [(&'a str, &'a str)],
    Option<&'a [(&'a str, &'a str)]>,
    &'a str,
);

#[test]
fn refusals_name_the_parameter() {
    let cases: &[Case] = &[
        (
            None,
            &[],
            None,
            "resolve parameters: required parameters without a value: \"region\"",
        ),
        (
            None,
            &[("region", "eu"), ("gpu", "1"), ("zz", "2")],
            None,
            "resolve parameters: the template declares no parameter \"gpu\", \"zz\"",
        ),
        (
            Some("Asia"),
            &[],
            None,
            "resolve parameters: the template has no preset \"Asia\" (it has: \"EU\")",
        ),
        (
            Some("EU"),
            &[("region", "us")],
            None,
            "resolve parameters: preset \"EU\" sets \"region\"; a preset's parameters cannot be given a different value",
        ),
        (
            None,
            &[("region", "mars")],
            None,
            "resolve parameters: main.tf:2: parameter \"region\": value \"mars\" is not one of the options (\"eu\", \"us\")",
        ),
        (
            None,
            &[("region", "eu"), ("cpus", "many")],
            None,
            "parameter \"cpus\": value \"many\" is not a number",
        ),
        (
            None,
            &[("region", "eu"), ("cpus", "2.5")],
            None,
            "parameter \"cpus\": value \"2.5\" is not a whole number",
        ),
        (
            None,
            &[("region", "eu"), ("cpus", "9")],
            None,
            "parameter \"cpus\": value 9 is more than the maximum 8",
        ),
        (
            None,
            &[("region", "eu"), ("debug", "yes")],
            None,
            "parameter \"debug\": value \"yes\" is not true or false",
        ),
        (
            None,
            &[("region", "eu"), ("tools", "git")],
            None,
            "parameter \"tools\": value \"git\" is not a JSON list of strings",
        ),
        (
            None,
            &[("region", "eu"), ("dotfiles", "git@x")],
            None,
            "parameter \"dotfiles\": use https (value \"git@x\" does not match \"^(https://.*)?$\")",
        ),
        (
            None,
            &[("region", "eu")],
            Some(&[("region", "us")]),
            "main.tf:2: parameter \"region\": is immutable: it was \"us\" when the workspace was created and cannot change to \"eu\"",
        ),
        (
            None,
            &[("cpus", "3")],
            Some(&[("region", "us"), ("cpus", "4")]),
            "parameter \"cpus\": value 3 is less than the previous value 4; it may only increase",
        ),
    ];
    for (preset, given, previous, want) in cases {
        let err = resolve(*preset, given, *previous).expect_err(want);
        assert!(err.contains(want), "got: {err}\nwant: {want}");
    }
    // Repeating the preset's own value is fine; growing is fine.
    resolve(Some("EU"), &[("region", "eu")], None).expect("same value as the preset");
    resolve(
        None,
        &[("cpus", "5")],
        Some(&[("region", "us"), ("cpus", "4")]),
    )
    .expect("increase");
}
