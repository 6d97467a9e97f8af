//! Locals: at push (parameter defaults, presets), per job (workspace tags),
//! and what terraform refuses (duplicates, cycles, undeclared references).

use std::collections::BTreeMap;

use crate::template::tests::{parse_files, parse_one, refused};
use crate::template::{BuildContext, TemplateMeta, build_tags, import_tags};

fn build(owner: &str, region: &str) -> BuildContext {
    BuildContext {
        owner_name: owner.into(),
        workspace_name: "dev".into(),
        workspace_id: "ws-1".into(),
        transition: "start".into(),
        template_name: "tpl".into(),
        variables: BTreeMap::new(),
        parameters: BTreeMap::from([("region".to_string(), region.to_string())]),
    }
}

#[test]
fn locals_built_from_variables_feed_parameter_defaults_and_presets() {
    let meta = parse_one(
        r#"
variable "region" {
  default = "eu"
}
locals {
  default_region = upper(var.region)
  warm           = 2
}
data "coder_parameter" "region" {
  name    = "region"
  default = local.default_region
  option {
    name  = "Europe"
    value = "EU"
  }
  option {
    name  = "America"
    value = "US"
  }
}
locals {
  regions = { eu = "EU", us = "US" }
  picked  = local.regions[lower(local.default_region)]
}
data "coder_workspace_preset" "p" {
  name       = "Europe, warm"
  parameters = { (data.coder_parameter.region.name) = local.picked }
  prebuilds {
    instances = local.warm + 1
  }
}
resource "terraform_data" "vm" {
  input = local.default_region
}
"#,
    )
    .expect("parse");
    assert_eq!(meta.parameters[0].default.as_deref(), Some("EU"));
    assert_eq!(meta.presets[0].parameters["region"], "EU");
    assert_eq!(meta.presets[0].prebuilds.as_ref().unwrap().instances, 3);
    // Nothing evaluated per job uses them, so none is kept.
    assert!(meta.locals.is_empty(), "{:?}", meta.locals);
}

fn tagged() -> TemplateMeta {
    parse_files(&[
        (
            "a.tf",
            r#"
data "coder_workspace_owner" "me" {}
data "coder_parameter" "region" {
  name    = "region"
  default = "eu"
}
data "coder_workspace_tags" "t" {
  tags = {
    pool = local.pool
  }
}
"#,
        ),
        (
            "b.tf",
            r#"locals {
  pool   = "${data.coder_parameter.region.value}-${local.kind}"
  unused = terraform_data.vm.id
}
locals {
  kind = local.prebuild ? "warm" : "cold"
  prebuild = data.coder_workspace_owner.me.name == "prebuilds"
}
resource "terraform_data" "vm" {}
"#,
        ),
    ])
    .expect("parse")
}

#[test]
fn locals_built_from_parameters_and_owner_give_tag_values_per_build() {
    let meta = tagged();
    let kept: Vec<(&str, &str)> = meta
        .locals
        .iter()
        .map(|l| (l.name.as_str(), l.at.as_str()))
        .collect();
    assert_eq!(
        kept,
        [
            ("pool", "b.tf:2"),
            ("kind", "b.tf:6"),
            ("prebuild", "b.tf:7")
        ]
    );
    let pool = |ctx: &BuildContext| build_tags(&meta, ctx).expect("tags")["pool"].clone();
    assert_eq!(pool(&build("alice", "us")), "us-cold");
    assert_eq!(pool(&build("prebuilds", "us")), "us-warm");
    assert_eq!(pool(&build("prebuilds", "eu")), "eu-warm");
    // An import has no owner and the parameter's default.
    assert_eq!(
        import_tags(&meta, &BTreeMap::new()).expect("import")["pool"],
        "eu-cold"
    );
    // Stored as JSON at push, read back for every build; metadata stored
    // before locals existed has no such field.
    let json = serde_json::to_string(&meta).expect("to json");
    let back: TemplateMeta = serde_json::from_str(&json).expect("from json");
    assert_eq!(back, meta);
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    old.as_object_mut().unwrap().remove("locals");
    let old: TemplateMeta = serde_json::from_value(old).expect("old metadata");
    assert!(old.locals.is_empty());
}

#[test]
fn a_local_only_terraform_knows_fails_the_tag_that_uses_it_and_nothing_else() {
    let template = |tag: &str| {
        parse_one(&format!(
            r#"
locals {{
  image  = data.docker_image.base.repo_digest
  script = file("${{path.module}}/init.sh")
}}
locals {{
  name = "img-${{local.image}}"
}}
data "coder_workspace_tags" "t" {{
  tags = {{
    {tag}
  }}
}}
"#
        ))
        .expect("locals referencing resources do not refuse the template")
    };
    let meta = template("zone = \"eu\"");
    assert!(meta.locals.is_empty());
    assert_eq!(import_tags(&meta, &BTreeMap::new()).unwrap()["zone"], "eu");

    let meta = template("image = local.name");
    let msg = build_tags(&meta, &build("alice", "eu"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        "evaluate workspace tags: main.tf:11: tag \"image\": uses local.name (main.tf:7), which uses local.image (main.tf:3), which references data.docker_image.base, a data source only terraform can read; workspace tags may use var.*, data.coder_parameter.*, data.coder_workspace.*, data.coder_workspace_owner.* and locals built from them"
    );
    let meta = template("init = local.script");
    let msg = import_tags(&meta, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("tag \"init\": uses local.script (main.tf:4), which references path.module, which is not available here"),
        "{msg}"
    );
}

#[test]
fn a_local_known_only_per_build_is_refused_where_a_value_is_needed_at_push() {
    let msg = refused(
        r#"
data "coder_workspace_owner" "me" {}
locals {
  who  = data.coder_workspace_owner.me.name
  team = "team-${local.who}"
}
data "coder_parameter" "team" {
  name    = "team"
  default = local.team
}
"#,
    );
    assert_eq!(
        msg,
        "parse template: main.tf:9: coder_parameter \"team\": default uses local.team (main.tf:5), which uses local.who (main.tf:4), which references data.coder_workspace_owner.me, which is known only per build; only literals, functions, variable defaults and locals built from them can be used here"
    );
    let msg = refused(
        r#"
data "coder_parameter" "region" {
  name    = "region"
  default = "eu"
}
locals {
  region = data.coder_parameter.region.value
  image  = docker_image.base.id
}
data "coder_workspace_preset" "p" {
  name       = "p"
  parameters = { region = local.region }
}
"#,
    );
    assert!(
        msg.ends_with("coder_workspace_preset \"p\": parameters uses local.region (main.tf:7), which references data.coder_parameter.region.value, which is known only per build; only literals, functions, variable defaults and locals built from them can be used here"),
        "{msg}"
    );
    let msg = refused(
        "locals {\n  n = terraform_data.x.output\n}\ndata \"coder_workspace_preset\" \"p\" {\n  name = \"p\"\n  prebuilds {\n    instances = local.n\n  }\n}\n",
    );
    assert!(
        msg.contains("main.tf:7: coder_workspace_preset \"p\": prebuilds.instances uses local.n (main.tf:2), which references terraform_data.x, which is only known when terraform runs"),
        "{msg}"
    );
}

#[test]
fn duplicates_cycles_and_undeclared_locals_are_refused_as_terraform_refuses_them() {
    let msg = parse_files(&[
        ("a.tf", "locals {\n  x = 1\n}\n"),
        ("b.tf", "\nlocals {\n  y = 2\n  x = 3\n}\n"),
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        msg,
        "parse template: b.tf:4: local.x: declared twice (first at a.tf:2)"
    );
    let msg = refused("locals {\n  a = local.b\n  b = [local.c]\n  c = \"${local.a}\"\n}\n");
    assert_eq!(
        msg,
        "parse template: main.tf:2: local.a: depends on itself: local.a → local.b → local.c → local.a"
    );
    let msg = refused("locals {\n  a = 1\n  me = local.me\n}\n");
    assert_eq!(
        msg,
        "parse template: main.tf:3: local.me: depends on itself: local.me → local.me"
    );
    let msg = refused("locals {\n  a = local.nope\n}\n");
    assert_eq!(
        msg,
        "parse template: main.tf:2: local.a: references local.nope, which the template does not declare"
    );
    let msg = refused("locals \"x\" {\n}\n");
    assert_eq!(
        msg,
        "parse template: main.tf:1: locals block: takes no labels"
    );
    let msg = refused("locals {\n  a = 1\n  nested {\n  }\n}\n");
    assert_eq!(
        msg,
        "parse template: main.tf:3: locals block: holds only attributes, not a nested block"
    );
}

#[test]
fn a_local_whose_value_doubles_along_a_chain_is_refused() {
    let mut text = format!("locals {{\n  l0 = \"{}\"\n", "x".repeat(1000));
    for i in 1..=20 {
        text.push_str(&format!("  l{i} = [local.l{0}, local.l{0}]\n", i - 1));
    }
    text.push_str(
        "}\ndata \"coder_workspace_tags\" \"t\" {\n  tags = { n = length(local.l20) }\n}\n",
    );
    let meta = parse_one(&text).expect("parse");
    let msg = import_tags(&meta, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("evaluates to a value larger than 1048576 bytes"),
        "{msg}"
    );
}
