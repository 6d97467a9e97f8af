//! Tag evaluation: the seed scenario, the scope at import and per build,
//! references that must fail, and how values become tag strings.

use std::collections::BTreeMap;

use crate::tags::{Tags, parse_pairs};
use crate::template::tests::parse_one;
use crate::template::{BuildContext, TemplateMeta, build_tags, import_tags};

fn tags(pairs: &[&str]) -> Tags {
    parse_pairs(pairs).expect("valid tags")
}

fn template(tag_lines: &str) -> TemplateMeta {
    parse_one(&format!(
        r#"
variable "pool" {{
  default = "general"
}}
variable "disk" {{
  type    = number
  default = 10
}}
data "coder_workspace" "me" {{}}
data "coder_workspace_owner" "me" {{}}
data "coder_parameter" "region" {{
  name    = "region"
  default = "eu"
}}
data "coder_parameter" "gpus" {{
  name = "gpus"
  type = "number"
}}
data "coder_workspace_tags" "t" {{
  tags = {{
{tag_lines}
  }}
}}
resource "terraform_data" "vm" {{}}
"#
    ))
    .expect("template parses")
}

fn ctx(owner: &str) -> BuildContext {
    BuildContext {
        owner_name: owner.into(),
        workspace_name: "Dev-Box".into(),
        workspace_id: "ws-1".into(),
        transition: "start".into(),
        template_name: "tpl".into(),
        variables: BTreeMap::new(),
        parameters: BTreeMap::from([
            ("region".to_string(), "us".to_string()),
            ("gpus".to_string(), "2".to_string()),
        ]),
    }
}

#[test]
fn seed_is_prebuild_conditional() {
    let meta = template(
        r#"    "is_prebuild" = data.coder_workspace_owner.me.name == "prebuilds" ? "true" : "false""#,
    );
    assert_eq!(
        build_tags(&meta, &ctx("prebuilds")).unwrap(),
        tags(&["is_prebuild=true"])
    );
    assert_eq!(
        build_tags(&meta, &ctx("alice")).unwrap(),
        tags(&["is_prebuild=false"])
    );
    // An import has no owner: not a prebuild.
    assert_eq!(
        import_tags(&meta, &BTreeMap::new()).unwrap(),
        tags(&["is_prebuild=false"])
    );
}

#[test]
fn empty_values_leave_the_tag_out() {
    let meta = template(
        r#"    "is_prebuild" = data.coder_workspace_owner.me.name == "prebuilds" ? "true" : """#,
    );
    assert_eq!(
        build_tags(&meta, &ctx("prebuilds")).unwrap(),
        tags(&["is_prebuild=true"])
    );
    assert_eq!(build_tags(&meta, &ctx("alice")).unwrap(), Tags::new());
    assert_eq!(import_tags(&meta, &BTreeMap::new()).unwrap(), Tags::new());
}

#[test]
fn counted_blocks_apply_only_when_count_is_positive() {
    let meta = parse_one(
        r#"
data "coder_workspace_owner" "me" {}
data "coder_workspace_tags" "prebuilds" {
  count = data.coder_workspace_owner.me.name == "prebuilds" ? 1 : 0
  tags  = { "is_prebuild" = "true" }
}
data "coder_workspace_tags" "people" {
  count = data.coder_workspace_owner.me.name == "prebuilds" ? 0 : 1
  tags  = { "is_prebuild" = "false" }
}
"#,
    )
    .expect("parse");
    assert_eq!(
        build_tags(&meta, &ctx("prebuilds")).unwrap(),
        tags(&["is_prebuild=true"])
    );
    assert_eq!(
        build_tags(&meta, &ctx("bob")).unwrap(),
        tags(&["is_prebuild=false"])
    );
    let both = parse_one(
        "data \"coder_workspace_tags\" \"a\" {\n  count = 1\n  tags = { x = \"1\" }\n}\ndata \"coder_workspace_tags\" \"b\" {\n  count = 2\n  tags = { x = \"2\" }\n}\n",
    )
    .expect("parse");
    let err = import_tags(&both, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "evaluate workspace tags: main.tf:7: tag \"x\": also set by the tags at main.tf:3"
    );
    let bad = parse_one(
        "data \"coder_workspace_tags\" \"a\" {\n  count = \"x\"\n  tags = { x = \"1\" }\n}\n",
    )
    .expect("parse");
    let err = import_tags(&bad, &BTreeMap::new()).unwrap_err().to_string();
    assert!(
        err.contains("tag \"x\": count must be a whole number >= 0, not \"x\""),
        "{err}"
    );
}

#[test]
fn scope_per_build_and_at_import() {
    let meta = template(
        r#"    region    = data.coder_parameter.region.value
    pool      = var.pool
    disk      = var.disk * 2
    workspace = lower(data.coder_workspace.me.name)
    action    = "${data.coder_workspace.me.transition}-${data.coder_workspace.me.start_count}"
    template  = data.coder_workspace.me.template_name
    id        = data.coder_workspace.me.id"#,
    );
    let mut c = ctx("alice");
    c.variables.insert("disk".into(), "25".into());
    assert_eq!(
        build_tags(&meta, &c).unwrap(),
        tags(&[
            "region=us",
            "pool=general",
            "disk=50",
            "workspace=dev-box",
            "action=start-1",
            "template=tpl",
            "id=ws-1"
        ])
    );
    // Import: parameter defaults, variable defaults overridden by values;
    // workspace attributes are empty and so left out.
    let vars = BTreeMap::from([("pool".to_string(), "gpu".to_string())]);
    assert_eq!(
        import_tags(&meta, &vars).unwrap(),
        tags(&["region=eu", "pool=gpu", "disk=20", "action=-0"])
    );
    let mut stop = ctx("alice");
    stop.transition = "stop".into();
    assert_eq!(build_tags(&meta, &stop).unwrap()["action"], "stop-0");
}

#[test]
fn values_become_strings_as_in_terraform() {
    let meta = template(
        "    n = 1 + 2\n    f = 1.5\n    b = !false\n    j = jsonencode({a = 1})\n    g = tonumber(data.coder_parameter.gpus.value) > 1",
    );
    assert_eq!(
        build_tags(&meta, &ctx("x")).unwrap(),
        tags(&["n=3", "f=1.5", "b=true", "j={\"a\":1}", "g=true"])
    );
    let err = |line: &str| {
        let meta = template(line);
        build_tags(&meta, &ctx("x")).unwrap_err().to_string()
    };
    assert_eq!(
        err("    k = null"),
        "evaluate workspace tags: main.tf:21: tag \"k\": `null` evaluates to null; use \"\" to leave the tag out"
    );
    assert!(err("    k = [\"a\"]").contains("evaluates to a list; a tag value must be a string"));
    assert!(
        err("    k = \"a\\nb\"")
            .contains("tag \"k\": value must be at most 256 printable characters")
    );
    assert!(err("    \"bad key!\" = \"v\"").contains("tag key \"bad key!\""));
}

#[test]
fn references_only_terraform_knows_are_refused() {
    let err = |line: &str| {
        let meta = template(line);
        build_tags(&meta, &ctx("x")).unwrap_err().to_string()
    };
    assert_eq!(
        err("    vm = terraform_data.vm.id"),
        "evaluate workspace tags: main.tf:21: tag \"vm\": references terraform_data.vm, a resource whose attributes are only known after terraform runs; workspace tags may use var.*, data.coder_parameter.*, data.coder_workspace.*, data.coder_workspace_owner.* and locals built from them"
    );
    let cases = [
        (
            "    k = data.aws_region.current.name",
            "references data.aws_region.current, a data source only terraform can read",
        ),
        (
            "    k = local.pool",
            "references local.pool, which the template does not declare",
        ),
        (
            "    k = var.nope",
            "references var.nope, which the template does not declare",
        ),
        (
            "    k = data.coder_parameter.nope.value",
            "references data.coder_parameter.nope, which the template does not declare",
        ),
        (
            "    k = path.module",
            "references path.module, which is not available here",
        ),
        (
            "    k = \"${upper(terraform_data.vm.id)}\"",
            "references terraform_data.vm",
        ),
        (
            "    k = try(terraform_data.vm.id, \"x\")",
            "references terraform_data.vm",
        ),
        (
            "    k = unknown",
            "references `unknown`, which is not defined",
        ),
    ];
    for (line, want) in cases {
        let msg = err(line);
        assert!(msg.contains("tag \"k\": "), "{msg}");
        assert!(msg.contains(want), "got: {msg}\nwant: {want}");
    }
    // Loop variables are not references.
    let meta = template("    k = join(\",\", [for s in [\"a\", \"b\"] : upper(s)])");
    assert_eq!(build_tags(&meta, &ctx("x")).unwrap()["k"], "A,B");
}

#[test]
fn a_parameter_without_value_reads_empty_at_import_and_fails_in_a_build() {
    let meta = template("    gpus = data.coder_parameter.gpus.value");
    // At import (as in Coder's parser) it reads "", so the tag is left out.
    assert_eq!(import_tags(&meta, &BTreeMap::new()).unwrap(), Tags::new());
    assert_eq!(build_tags(&meta, &ctx("x")).unwrap()["gpus"], "2");
    let mut unset = ctx("x");
    unset.parameters.remove("gpus");
    let err = build_tags(&meta, &unset).unwrap_err().to_string();
    assert!(
        err.contains("data.coder_parameter.gpus.value: parameter \"gpus\" has no default and no value was given"),
        "{err}"
    );
    let meta = template("    disk = var.disk");
    let mut c = ctx("x");
    c.variables.insert("disk".into(), "lots".into());
    let err = build_tags(&meta, &c).unwrap_err().to_string();
    assert!(
        err.contains("var.disk has no value: value \"lots\" is not a number"),
        "{err}"
    );
}

#[test]
fn try_takes_the_first_argument_that_evaluates() {
    let meta = template(
        r#"    a = try(lookup({}, "x"), "fallback")
    b = try(tonumber("x"), tonumber("7"), 1)
    c = "pre-${try(lookup({}, "x"), "mid")}-post"
    d = true ? "ok" : try(lookup({}, "x"))
    e = try(data.coder_parameter.region.value, "none")"#,
    );
    assert_eq!(
        build_tags(&meta, &ctx("x")).unwrap(),
        tags(&["a=fallback", "b=7", "c=pre-mid-post", "d=ok", "e=us"])
    );
    let meta = template("    k = try(lookup({}, \"x\"), tonumber(\"y\"))");
    let err = build_tags(&meta, &ctx("x")).unwrap_err().to_string();
    assert!(err.contains("try: no argument could be evaluated"), "{err}");
    assert!(err.contains("cannot convert \"y\" to a number"), "{err}");
}

#[test]
fn arithmetic_that_panics_in_hcl_rs_is_an_error_not_a_crash() {
    for expr in ["5 % 0", "18446744073709551615 + 1", "tostring(1 % 0)"] {
        let meta = template(&format!("    \"k\" = {expr}"));
        let err = build_tags(&meta, &ctx("alice")).unwrap_err().to_string();
        assert!(
            err.contains("division by zero or overflow"),
            "{expr}: {err}"
        );
    }
    // At push, through a variable default and a parameter default.
    let err = parse_one("variable \"x\" {\n  default = 1 % 0\n}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("main.tf:2") && err.contains("1 % 0"), "{err}");
    let err = parse_one(
        "data \"coder_parameter\" \"p\" {\n  name = \"p\"\n  type = \"number\"\n  default = 7 % 0\n}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("main.tf:4"), "{err}");
}
