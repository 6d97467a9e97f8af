//! Parsing whole templates: every block kind, and the errors
//! Coder would refuse a template version for.

use std::fs;

use super::*;

/// Parses `files` (name, text) as a template directory.
pub(super) fn parse_files(files: &[(&str, &str)]) -> Result<TemplateMeta, TemplateError> {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        fs::write(dir.path().join(name), text).expect("write template file");
    }
    parse_dir(dir.path())
}

pub(super) fn parse_one(text: &str) -> Result<TemplateMeta, TemplateError> {
    parse_files(&[("main.tf", text)])
}

/// The message of a template that must be refused.
pub(super) fn refused(text: &str) -> String {
    parse_one(text)
        .expect_err("template must be refused")
        .to_string()
}

#[test]
fn only_root_tf_files_and_readme_are_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("modules")).expect("mkdir");
    fs::write(dir.path().join("modules/x.tf"), "this is { not hcl").expect("write");
    fs::write(dir.path().join("notes.txt"), "variable {").expect("write");
    fs::write(dir.path().join("a.tf"), "variable \"a\" {}").expect("write");
    fs::write(dir.path().join("b.tf"), "variable \"b\" { default = 1 }").expect("write");
    let meta = parse_dir(dir.path()).expect("parse");
    let vars: Vec<(&str, bool)> = meta
        .variables
        .iter()
        .map(|v| (v.name.as_str(), v.required))
        .collect();
    assert_eq!(vars, [("a", true), ("b", false)]);
    assert_eq!(meta.readme, None);
    let missing = parse_dir(&dir.path().join("nope")).expect_err("no dir");
    assert!(
        missing.to_string().starts_with("parse template: list "),
        "{missing}"
    );
}

#[test]
fn variables_keep_type_default_and_flags() {
    let meta = parse_one(
        r#"
variable "sizes" {
  type        = list(number)
  description = "Disk sizes"
  default     = [1, 2.5]
}
variable "token" {
  type      = string
  sensitive = true
}
"#,
    )
    .expect("parse");
    let sizes = &meta.variables[0];
    assert_eq!(sizes.type_expr, "list(number)");
    assert_eq!(sizes.description, "Disk sizes");
    assert_eq!(sizes.default_json.as_deref(), Some("[1,2.5]"));
    assert!(!sizes.required && !sizes.sensitive);
    assert!(meta.variables[1].required && meta.variables[1].sensitive);

    let msg = refused("variable \"a\" {\n  default = upper(\"x\")\n}\n");
    assert!(
        msg.starts_with("parse template: main.tf:2: variable \"a\": default must be a literal value, not the expression `upper(\"x\")`"),
        "{msg}"
    );
}

#[test]
fn malformed_hcl_names_file_and_line() {
    let msg = parse_files(&[
        ("a.tf", "variable \"ok\" {}\n"),
        (
            "b.tf",
            "variable \"a\" {\n  type = string\n\n  default = \n}\n",
        ),
    ])
    .expect_err("malformed")
    .to_string();
    assert!(msg.starts_with("parse template: b.tf:4: "), "{msg}");
    let msg = refused("data \"coder_parameter\" \"x\" {\n  name = \"x\"\n");
    assert!(msg.starts_with("parse template: main.tf:"), "{msg}");
}

#[test]
fn blocks_declared_twice_are_refused() {
    let msg = parse_files(&[
        ("a.tf", "variable \"x\" {}\n"),
        ("b.tf", "\n\nvariable \"x\" {}\n"),
    ])
    .expect_err("duplicate")
    .to_string();
    assert_eq!(
        msg,
        "parse template: b.tf:3: variable \"x\": declared twice (first at a.tf:1)"
    );
    let msg = refused(
        "data \"coder_parameter\" \"a\" {\n  name = \"n\"\n}\ndata \"coder_parameter\" \"b\" {\n  name = \"n\"\n}\n",
    );
    assert_eq!(
        msg,
        "parse template: main.tf:4: coder_parameter \"b\": parameter name \"n\" is also used at main.tf:1"
    );
    let msg = refused("data \"coder_parameter\" {\n}\n");
    assert!(
        msg.contains("data block: needs exactly two labels"),
        "{msg}"
    );
}
