//! `*.tf.json` files: terraform's JSON syntax read like `.tf` files.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::template::tests::parse_files;
use crate::template::{BuildContext, TemplateMeta, build_tags, import_tags, parse_dir};

fn example_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/templates/coder-prebuilds"
    ))
}

/// `meta` without positions, which name different files.
fn without_positions(mut meta: TemplateMeta) -> TemplateMeta {
    meta.parameters.iter_mut().for_each(|p| p.at.clear());
    meta.workspace_tags.iter_mut().for_each(|t| t.at.clear());
    meta.presets.iter_mut().for_each(|p| p.at.clear());
    meta.locals.iter_mut().for_each(|l| l.at.clear());
    meta
}

#[test]
fn a_json_template_reads_like_its_tf_twin() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("main.tf.json"),
        include_str!("coder-prebuilds.tf.json"),
    )
    .unwrap();
    fs::copy(
        example_dir().join("README.md"),
        dir.path().join("README.md"),
    )
    .unwrap();
    let json = parse_dir(dir.path()).expect("json template parses");
    let tf = parse_dir(example_dir()).expect("example parses");
    assert_eq!(without_positions(json.clone()), without_positions(tf));

    let at = |p: usize| json.parameters[p].at.as_str();
    assert_eq!(
        [at(0), at(1), at(2)],
        ["main.tf.json:19", "main.tf.json:33", "main.tf.json:48"]
    );
    assert_eq!(json.presets[1].at, "main.tf.json:79");
    assert_eq!(json.workspace_tags[0].at, "main.tf.json:87");
    // The lone interpolation of `count` is its expression, so it is a
    // number as in the .tf file, and prebuilds get the tag.
    let ctx = BuildContext {
        owner_name: "prebuilds".into(),
        parameters: BTreeMap::from([
            ("region".to_string(), "eu-west".to_string()),
            ("cpus".to_string(), "4".to_string()),
            ("dotfiles_repo".to_string(), String::new()),
        ]),
        ..Default::default()
    };
    assert_eq!(build_tags(&json, &ctx).unwrap()["is_prebuild"], "true");
}

#[test]
fn tf_and_tf_json_files_make_one_template() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
    write(
        "a.tf",
        r#"variable "pool" {
  default = "general"
}
data "coder_parameter" "region" {
  name    = "region"
  default = "eu"
}
"#,
    );
    write(
        "b.tf.json",
        r#"{
  "locals": [
    { "pool": "${var.pool}-${data.coder_parameter.region.value}" },
    { "count": 2 }
  ],
  "data": [
    {
      "coder_workspace_tags": {
        "t": {
          "tags": {
            "pool": "${local.pool}",
            "tier": "gold ${upper(\"x\")} \"q\" \\ $${literal}"
          }
        }
      }
    },
    {
      "coder_workspace_preset": {
        "p": {
          "name": "Preset",
          "parameters": { "${data.coder_parameter.region.name}": "us" },
          "prebuilds": { "instances": "${local.count + 1}" }
        }
      }
    }
  ]
}
"#,
    );
    fs::create_dir(dir.path().join("modules")).unwrap();
    fs::write(dir.path().join("modules/x.tf.json"), "{ not json").unwrap();
    let meta = parse_dir(dir.path()).expect("parse");
    assert_eq!(meta.presets[0].parameters["region"], "us");
    assert_eq!(meta.presets[0].prebuilds.as_ref().unwrap().instances, 3);
    assert_eq!(meta.locals.len(), 1);
    assert_eq!(meta.locals[0].at, "b.tf.json:3");
    assert_eq!(meta.workspace_tags[1].at, "b.tf.json:12");
    let tags = import_tags(&meta, &BTreeMap::new()).unwrap();
    assert_eq!(tags["pool"], "general-eu");
    assert_eq!(tags["tier"], "gold X \"q\" \\ ${literal}");
    let given = BTreeMap::from([("pool".to_string(), "gpu".to_string())]);
    assert_eq!(import_tags(&meta, &given).unwrap()["pool"], "gpu-eu");

    // One address, two files.
    write(
        "c.tf.json",
        "{\n  \"variable\": {\n    \"pool\": {}\n  }\n}\n",
    );
    let msg = parse_dir(dir.path()).unwrap_err().to_string();
    assert_eq!(
        msg,
        "parse template: c.tf.json:3: variable \"pool\": declared twice (first at a.tf:1)"
    );
}

#[test]
fn variables_keep_their_json_literally() {
    let meta = parse_files(&[(
        "main.tf.json",
        r#"{"variable": {
  "sizes": {"type": "list(number)", "default": [1, 2.5], "description": "Disk ${sizes}"},
  "token": {"type": "string", "sensitive": true, "validation": {"condition": "${length(var.token) > 0}", "error_message": "x"}}
}}"#,
    )])
    .expect("parse");
    let sizes = &meta.variables[0];
    assert_eq!(sizes.type_expr, "list(number)");
    assert_eq!(sizes.default_json.as_deref(), Some("[1,2.5]"));
    assert_eq!(sizes.description, "Disk ${sizes}");
    assert!(meta.variables[1].sensitive && meta.variables[1].required);
}

#[test]
fn malformed_json_is_refused_naming_file_line_and_column() {
    let refused = |text: &str| {
        parse_files(&[("ok.tf", "variable \"a\" {}\n"), ("main.tf.json", text)])
            .expect_err("refused")
            .to_string()
    };
    assert_eq!(
        refused("{\n  \"variable\": {\n    \"a\": {,}\n  }\n}\n"),
        "parse template: main.tf.json:3:11: expected a property name in double quotes"
    );
    assert_eq!(
        refused("{\"data\": {\"coder_parameter\": {\"é\": {\"name\": \"x\n\"}}}}"),
        "parse template: main.tf.json:1:47: control character in a string (escape it)"
    );
    assert_eq!(
        refused("{}\n{}"),
        "parse template: main.tf.json:2:1: unexpected text after the top-level value"
    );
    assert_eq!(
        refused(&format!("{}{}", "[".repeat(200), "]".repeat(200))),
        "parse template: main.tf.json:1:130: nested more than 128 levels deep"
    );
    assert_eq!(
        refused("[]"),
        "parse template: main.tf.json:1: the top level must be an object of block types"
    );
    assert_eq!(
        refused("{\n\"variable\": \"x\"\n}"),
        "parse template: main.tf.json:2: a variable block must be an object keyed by its labels (1 more)"
    );
    assert_eq!(
        refused("{\"variable\": {\"a\": {\"type\": \"string }\\nvariable \\\"b\\\" {\"}}}"),
        "parse template: main.tf.json:1: type \"string }\\nvariable \\\"b\\\" {\" is not a type expression"
    );
    assert_eq!(
        refused("{\"locals\": {\n\"a\": 1,\n\"a\": 2}}"),
        "parse template: main.tf.json:3: \"a\" is set twice (first on line 2)"
    );
    assert_eq!(
        refused("{\"locals\": {\"a b\": 1}}"),
        "parse template: main.tf.json:1: \"a b\" is not a valid name"
    );
    let msg = refused("{\"locals\": {\n\"a\": \"${upper(\\\"}\"\n}}");
    assert!(msg.starts_with("parse template: main.tf.json:2: "), "{msg}");
    // A problem found in the block reports the JSON line too.
    let msg = refused(
        "{\"data\": {\"coder_parameter\": {\"p\": {\n  \"name\": \"p\",\n  \"type\": \"bogus\"\n}}}}",
    );
    assert!(
        msg.starts_with("parse template: main.tf.json:3: coder_parameter \"p\": type \"bogus\""),
        "{msg}"
    );
}

/// Hostile input: every cut of a real file, and of one whose strings are
/// all templates, is a template or an error naming file and position —
/// never a panic.
#[test]
fn every_truncation_of_a_json_file_is_read_or_refused() {
    use crate::template::source::SourceFile;
    let texts = [
        include_str!("coder-prebuilds.tf.json"),
        r#"{"locals": {"a": "x${upper(\"\u00e9\")}%{ if true }y%{ endif }", "b": ["${local.a}", {"k": "$${v}"}]}}"#,
    ];
    for text in texts {
        SourceFile::from_json("t.tf.json".into(), text).expect("the whole file reads");
        for end in (0..text.len()).filter(|i| text.is_char_boundary(*i)) {
            if let Err(err) = SourceFile::from_json("t.tf.json".into(), &text[..end]) {
                let msg = err.to_string();
                assert!(msg.starts_with("parse template: t.tf.json:"), "{msg}");
            }
        }
    }
}

#[test]
fn a_lone_interpolation_may_span_lines() {
    let meta = parse_files(&[(
        "main.tf.json",
        r#"{"variable": {"a": {"default": 1}},
"data": {"coder_parameter": {"p": {
  "name": "p",
  "type": "number",
  "default": "${var.a\n+ 1}",
  "description": "after"
}}}}"#,
    )])
    .expect("parse");
    let p = &meta.parameters[0];
    assert_eq!(p.default.as_deref(), Some("2"));
    assert_eq!(p.description, "after");
}

#[test]
fn a_directive_body_cannot_change_the_block_structure() {
    let meta = parse_files(&[(
        "main.tf.json",
        r#"{"data": {"coder_parameter": {"p": {
  "name": "p",
  "default": "%{if true}\"x\n}\ndata \"coder_parameter\" \"q\" {\n name = \"q\"\n%{endif}",
  "description": "after"
}}}}"#,
    )])
    .expect("parse");
    assert_eq!(meta.parameters.len(), 1, "{:?}", meta.parameters);
    let p = &meta.parameters[0];
    assert_eq!(
        p.default.as_deref(),
        Some("\"x\n}\ndata \"coder_parameter\" \"q\" {\n name = \"q\"\n")
    );
    assert_eq!(p.description, "after");
}
