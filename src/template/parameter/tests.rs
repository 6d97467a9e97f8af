//! `coder_parameter` reading and Coder's definition rules.

use crate::template::tests::{parse_one, refused};
use crate::template::{ParamOption, ParamType, Validation};

#[test]
fn reads_every_attribute() {
    let meta = parse_one(
        r#"
variable "default_region" {
  default = "eu"
}

data "coder_parameter" "region_param" {
  name         = "region"
  display_name = "Region"
  description  = upper("where")
  default      = var.default_region
  mutable      = true
  order        = -3
  option {
    name        = "Europe"
    value       = "eu"
    description = "Frankfurt"
  }
  option {
    name  = "US"
    value = "us"
  }
}

data "coder_parameter" "count" {
  name    = "count"
  type    = "number"
  default = 2
  validation {
    min       = 1
    max       = 9
    monotonic = "decreasing"
  }
}

data "coder_parameter" "debug" {
  name      = "debug"
  type      = "bool"
  default   = true
  mutable   = true
  ephemeral = true
}

data "coder_parameter" "tools" {
  name    = "tools"
  type    = "list(string)"
  default = jsonencode(["git", "vim"])
  option {
    name  = "Git"
    value = "git"
  }
  option {
    name  = "Vim"
    value = "vim"
  }
}

data "coder_parameter" "token" {
  name = "token"
  validation {
    regex = "^[a-z]+$"
    error = "lowercase only"
  }
}
"#,
    )
    .expect("parse");
    let [region, count, debug, tools, token] = &meta.parameters[..] else {
        panic!("five parameters: {:?}", meta.parameters);
    };
    assert_eq!(region.label, "region_param");
    assert_eq!(region.at, "main.tf:6");
    assert_eq!(region.description, "WHERE");
    assert_eq!(region.default.as_deref(), Some("eu"));
    assert_eq!(region.r#type, ParamType::String);
    assert_eq!(region.order, Some(-3));
    assert_eq!(
        region.options[0],
        ParamOption {
            name: "Europe".into(),
            value: "eu".into(),
            description: "Frankfurt".into()
        }
    );
    assert!(region.mutable && !region.required && !region.ephemeral);

    assert_eq!(count.default.as_deref(), Some("2"));
    assert_eq!(
        count.validation,
        Some(Validation {
            regex: None,
            error: None,
            min: Some(1),
            max: Some(9),
            monotonic: Some("decreasing".into())
        })
    );
    assert_eq!(debug.default.as_deref(), Some("true"));
    assert!(debug.ephemeral);
    assert_eq!(tools.r#type, ParamType::ListString);
    assert_eq!(tools.default.as_deref(), Some(r#"["git","vim"]"#));
    assert!(token.required && token.default.is_none());
    assert_eq!(token.r#type, ParamType::String);
    let json = serde_json::to_string(tools).expect("serialize");
    assert!(json.contains(r#""type":"list(string)""#), "{json}");
}

/// `main.tf:2` is the block line for a one-parameter template starting on
/// line 2.
fn one(body: &str) -> String {
    refused(&format!(
        "\ndata \"coder_parameter\" \"p\" {{\n  name = \"p\"\n{body}\n}}\n"
    ))
}

#[test]
fn definitions_coder_refuses() {
    let cases: &[(&str, &str)] = &[
        (
            "  type = \"float\"",
            "main.tf:4: coder_parameter \"p\": type \"float\" is not one of",
        ),
        (
            "  type = \"number\"\n  default = \"abc\"",
            "main.tf:2: coder_parameter \"p\": default: value \"abc\" is not a number",
        ),
        (
            "  type = \"bool\"\n  default = \"yes\"",
            "default: value \"yes\" is not true or false",
        ),
        (
            "  type = \"list(string)\"\n  default = \"a,b\"",
            "default: value \"a,b\" is not a JSON list of strings",
        ),
        (
            "  default = \"x\"\n  option {\n    name = \"A\"\n    value = \"a\"\n  }",
            "default: value \"x\" is not one of the options (\"a\")",
        ),
        (
            "  option {\n    name = \"A\"\n    value = \"a\"\n  }\n  option {\n    name = \"A\"\n    value = \"b\"\n  }",
            "two options are named \"A\"",
        ),
        (
            "  option {\n    name = \"A\"\n    value = \"a\"\n  }\n  option {\n    name = \"B\"\n    value = \"a\"\n  }",
            "two options have the value \"a\"",
        ),
        (
            "  type = \"number\"\n  option {\n    name = \"A\"\n    value = \"x\"\n  }",
            "option \"A\": value \"x\" is not a number",
        ),
        (
            "  validation {\n    regex = \"([a-z\"\n    error = \"e\"\n  }",
            "validation regex \"([a-z\" does not compile",
        ),
        (
            "  validation {\n    regex = \"^a$\"\n  }",
            "validation regex needs an error message",
        ),
        (
            "  type = \"number\"\n  validation {\n    regex = \"^1$\"\n    error = \"e\"\n  }",
            "validation regex applies only to string parameters, not number",
        ),
        (
            "  validation {\n    min = 1\n  }",
            "validation min applies only to number parameters, not string",
        ),
        (
            "  type = \"number\"\n  validation {\n    min = 5\n    max = 1\n  }",
            "validation min 5 is greater than max 1",
        ),
        (
            "  type = \"number\"\n  validation {\n    monotonic = \"up\"\n  }",
            "validation monotonic must be \"increasing\" or \"decreasing\", not \"up\"",
        ),
        (
            "  type = \"number\"\n  default = 20\n  validation {\n    max = 10\n    error = \"at most {max}, got {value}\"\n  }",
            "default: at most 10, got 20",
        ),
        (
            "  type = \"number\"\n  default = 0\n  validation {\n    min = 1\n  }",
            "default: value 0 is less than the minimum 1",
        ),
        (
            "  default = \"B\"\n  validation {\n    regex = \"^[a-z]$\"\n    error = \"lowercase\"\n  }",
            "default: lowercase (value \"B\" does not match \"^[a-z]$\")",
        ),
        (
            "  default = \"x\"\n  ephemeral = true",
            "an ephemeral parameter must be mutable",
        ),
        (
            "  mutable = true\n  ephemeral = true",
            "an ephemeral parameter needs a default",
        ),
        (
            "  default = [\"a\"]",
            "main.tf:4: coder_parameter \"p\": default must be a string, not a list",
        ),
        (
            "  count = 2",
            "main.tf:4: coder_parameter \"p\": count is not supported on this block",
        ),
        (
            "  validation {\n    min = 1\n  }\n  validation {\n    max = 1\n  }",
            "only one validation block is allowed",
        ),
    ];
    for (body, want) in cases {
        let msg = one(body);
        assert!(msg.starts_with("parse template: main.tf:"), "{msg}");
        assert!(msg.contains(want), "{body:?}\n got: {msg}\nwant: {want}");
    }
}

#[test]
fn names_types_and_options_must_be_literals() {
    let msg = refused(
        "variable \"n\" {\n  default = \"x\"\n}\ndata \"coder_parameter\" \"p\" {\n  name = var.n\n}\n",
    );
    assert_eq!(
        msg,
        "parse template: main.tf:5: coder_parameter \"p\": name must be a literal value, not the expression `var.n`"
    );
    let msg = one("  option {\n    name = \"A\"\n    value = [\"x\"]\n  }");
    assert_eq!(
        msg,
        "parse template: main.tf:6: coder_parameter \"p\": option.value must be a string, not a list"
    );
    let msg = one("  type = lower(\"NUMBER\")");
    assert!(
        msg.contains("type must be a literal value, not the expression `lower(\"NUMBER\")`"),
        "{msg}"
    );
    let msg = refused("data \"coder_parameter\" \"p\" {\n  type = \"string\"\n}\n");
    assert_eq!(
        msg,
        "parse template: main.tf:1: coder_parameter \"p\": missing required attribute name"
    );
    let msg = one("  default = terraform_data.x.id");
    assert!(
        msg.contains("default cannot be evaluated without terraform"),
        "{msg}"
    );
    let msg = one("  default = local.x");
    assert!(
        msg.contains("default references local.x, which the template does not declare"),
        "{msg}"
    );
}
