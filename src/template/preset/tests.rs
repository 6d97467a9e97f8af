//! `coder_workspace_preset` reading, prebuilds and the cross-block checks.

use crate::template::tests::{parse_one, refused};
use crate::template::{Prebuilds, Schedule, Scheduling};

const PARAMS: &str = r#"
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
  validation {
    min = 1
    max = 8
  }
}
"#;

/// The parameters above (lines 1-21) plus `presets`, starting on line 22.
fn with(presets: &str) -> String {
    format!("{PARAMS}{presets}")
}

#[test]
fn reads_presets_and_prebuilds() {
    let meta = parse_one(&with(
        r#"
data "coder_workspace_preset" "eu" {
  name    = "EU"
  default = true
  parameters = {
    region = "eu"
    cpus   = 4
  }
  prebuilds {
    instances = 3
    expiration_policy {
      ttl = 0
    }
    scheduling {
      timezone = "America/New_York"
      schedule {
        cron      = "* 8-18 * * 1-5"
        instances = 5
      }
      schedule {
        cron      = "* 19-23,0-7 * * 1-5"
        instances = 0
      }
    }
  }
}
data "coder_workspace_preset" "us" {
  name = "US"
  parameters = merge({ (data.coder_parameter.cpus.name) = 3 }, {
    (data.coder_parameter.region.name) = "us"
  })
}
"#,
    ))
    .expect("parse");
    let eu = &meta.presets[0];
    assert_eq!(eu.name, "EU");
    assert_eq!(eu.at, "main.tf:23");
    assert!(eu.default);
    assert_eq!(eu.parameters["cpus"], "4");
    assert_eq!(
        eu.prebuilds,
        Some(Prebuilds {
            instances: 3,
            ttl_seconds: Some(0),
            scheduling: Some(Scheduling {
                timezone: "America/New_York".into(),
                schedules: vec![
                    Schedule {
                        cron: "* 8-18 * * 1-5".into(),
                        instances: 5
                    },
                    Schedule {
                        cron: "* 19-23,0-7 * * 1-5".into(),
                        instances: 0
                    },
                ],
            }),
        })
    );
    let us = &meta.presets[1];
    assert!(!us.default && us.prebuilds.is_none());
    assert_eq!(us.parameters["region"], "us");
    assert_eq!(us.parameters["cpus"], "3");
}

fn preset(body: &str) -> String {
    refused(&with(&format!(
        "data \"coder_workspace_preset\" \"p\" {{\n  name = \"P\"\n{body}\n}}\n"
    )))
}

#[test]
fn presets_coder_refuses() {
    let region = "  parameters = { region = \"eu\" }\n";
    let cases: Vec<(String, &str)> = vec![
        (
            String::new(),
            "main.tf:22: coder_workspace_preset \"p\": does not set required parameters \"region\"",
        ),
        (
            "  parameters = { cpus = 4 }".into(),
            "main.tf:24: coder_workspace_preset \"p\": does not set required parameters \"region\"; a preset must set every parameter without a default",
        ),
        (
            "  parameters = { region = \"eu\", gpu = \"1\" }".into(),
            "main.tf:24: coder_workspace_preset \"p\": parameters: the template has no parameter named \"gpu\"",
        ),
        (
            "  parameters = { region = \"mars\" }".into(),
            "parameters: \"region\": value \"mars\" is not one of the options (\"eu\", \"us\")",
        ),
        (
            "  parameters = { region = \"eu\", cpus = 99 }".into(),
            "parameters: \"cpus\": value 99 is more than the maximum 8",
        ),
        (
            "  parameters = { region = \"\" }".into(),
            "parameters: \"region\" must not be empty",
        ),
        (
            "  parameters {\n    region = \"eu\"\n  }".into(),
            "main.tf:24: coder_workspace_preset \"p\": parameters is a map attribute",
        ),
        (
            "  parameters = \"region=eu\"".into(),
            "parameters must be a map, not a string",
        ),
        (
            "  parameters = { (data.coder_parameter.cpus.value) = 1 }".into(),
            "main.tf:24: coder_workspace_preset \"p\": parameters cannot be evaluated without terraform",
        ),
        (
            format!("{region}  prebuilds {{\n  }}"),
            "missing required attribute prebuilds.instances",
        ),
        (
            format!("{region}  prebuilds {{\n    instances = -1\n  }}"),
            "main.tf:26: coder_workspace_preset \"p\": prebuilds.instances must be between 0 and",
        ),
        (
            format!(
                "{region}  prebuilds {{\n    instances = 1\n  }}\n  prebuilds {{\n    instances = 2\n  }}"
            ),
            "only one prebuilds block is allowed",
        ),
        (
            format!(
                "{region}  prebuilds {{\n    instances = 1\n    expiration_policy {{\n      ttl = 60\n    }}\n  }}"
            ),
            "main.tf:28: coder_workspace_preset \"p\": prebuilds.expiration_policy.ttl must be 0 or between 3600 and 31536000 seconds, not 60",
        ),
        (
            format!(
                "{region}  prebuilds {{\n    instances = 1\n    scheduling {{\n      timezone = \"Mars/Olympus\"\n      schedule {{\n        cron = \"* * * * *\"\n        instances = 1\n      }}\n    }}\n  }}"
            ),
            "main.tf:28: coder_workspace_preset \"p\": prebuilds.scheduling.timezone \"Mars/Olympus\" is not an IANA time zone name",
        ),
        (
            format!(
                "{region}  prebuilds {{\n    instances = 1\n    scheduling {{\n      timezone = \"UTC\"\n    }}\n  }}"
            ),
            "main.tf:27: coder_workspace_preset \"p\": prebuilds.scheduling.schedule: at least one block is required",
        ),
        (
            format!(
                "{region}  prebuilds {{\n    instances = 1\n    scheduling {{\n      timezone = \"UTC\"\n      schedule {{\n        cron = \"0 8 * * *\"\n        instances = 1\n      }}\n    }}\n  }}"
            ),
            "main.tf:30: coder_workspace_preset \"p\": prebuilds.scheduling.schedule.cron \"0 8 * * *\": minute field is \"0\"; it must be *",
        ),
        (
            format!(
                "{region}  prebuilds {{\n    instances = 1\n    scheduling {{\n      timezone = \"UTC\"\n      schedule {{\n        cron = \"* 25 * * *\"\n        instances = 1\n      }}\n    }}\n  }}"
            ),
            "cron \"* 25 * * *\": hour field \"25\": 25 is outside 0-23",
        ),
        (
            format!(
                "{region}  prebuilds {{\n    instances = 1\n    scheduling {{\n      timezone = \"UTC\"\n      schedule {{\n        cron = \"* 8-18 * * 1-5\"\n        instances = 1\n      }}\n      schedule {{\n        cron = \"* 18-20 * * 5\"\n        instances = 2\n      }}\n    }}\n  }}"
            ),
            "main.tf:34: coder_workspace_preset \"p\": prebuilds.scheduling.schedule.cron \"* 18-20 * * 5\" overlaps \"* 8-18 * * 1-5\" (main.tf:30); schedules must not overlap",
        ),
    ];
    for (body, want) in &cases {
        let msg = preset(body);
        assert!(msg.starts_with("parse template: main.tf:"), "{msg}");
        assert!(msg.contains(want), "{body}\n got: {msg}\nwant: {want}");
    }
}

#[test]
fn preset_names_are_unique_and_one_default_at_most() {
    let two = |a: &str, b: &str| {
        refused(&with(&format!(
            "data \"coder_workspace_preset\" \"a\" {{\n  {a}\n  parameters = {{ region = \"eu\" }}\n}}\ndata \"coder_workspace_preset\" \"b\" {{\n  {b}\n  parameters = {{ region = \"us\" }}\n}}\n"
        )))
    };
    assert_eq!(
        two("name = \"X\"", "name = \"X\""),
        "parse template: main.tf:26: coder_workspace_preset \"b\": another preset is named \"X\" (main.tf:22)"
    );
    assert_eq!(
        two(
            "name = \"X\"\n  default = true",
            "name = \"Y\"\n  default = true"
        ),
        "parse template: main.tf:27: coder_workspace_preset \"b\": only one preset may be the default; main.tf:22 is too"
    );
}
