//! Parsing whole templates: the example, every block kind, and the errors
//! Coder would refuse a template version for.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

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

fn example_dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/templates/coder-prebuilds"
    ))
}

fn build(owner: &str, meta: &TemplateMeta) -> BuildContext {
    BuildContext {
        owner_name: owner.into(),
        workspace_name: "dev".into(),
        workspace_id: "7d1c".into(),
        transition: "start".into(),
        template_name: "coder-prebuilds".into(),
        variables: BTreeMap::new(),
        parameters: resolve_parameters(meta, Some("Frankfurt, 4 cores"), &BTreeMap::new(), None)
            .expect("preset parameters resolve"),
    }
}

#[test]
fn example_template_parses_and_routes_prebuilds() {
    let meta = parse_dir(example_dir()).expect("example parses");
    let names: Vec<&str> = meta.parameters.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["region", "cpus", "dotfiles_repo"]);
    let region = &meta.parameters[0];
    assert_eq!(region.options.len(), 3);
    assert!(!region.mutable && !region.required);
    assert_eq!(region.at, "main.tf:29");
    assert_eq!(meta.parameters[1].default.as_deref(), Some("2"));
    assert_eq!(
        meta.variables[0].default_json.as_deref(),
        Some("\"ubuntu:24.04\"")
    );

    let preset = &meta.presets[0];
    assert!(preset.default);
    assert_eq!(preset.parameters["cpus"], "4");
    let prebuilds = preset.prebuilds.as_ref().expect("prebuilds");
    assert_eq!(prebuilds.instances, 3);
    assert_eq!(prebuilds.ttl_seconds, Some(86400));
    let scheduling = prebuilds.scheduling.as_ref().expect("scheduling");
    assert_eq!(scheduling.timezone, "Europe/Berlin");
    assert_eq!(scheduling.schedules[0].cron, "* 8-18 * * 1-5");
    assert_eq!(scheduling.schedules[1].instances, 1);
    assert!(
        meta.readme
            .as_deref()
            .unwrap_or("")
            .starts_with("# coder-prebuilds")
    );

    let tag = &meta.workspace_tags[0];
    assert_eq!(tag.key, "is_prebuild");
    assert_eq!(tag.expr, "\"true\"");
    assert!(
        tag.count
            .as_deref()
            .unwrap_or("")
            .contains("\"prebuilds\" ? 1 : 0")
    );

    let prebuild = build_tags(&meta, &build("prebuilds", &meta)).expect("prebuild tags");
    assert_eq!(
        prebuild,
        crate::tags::parse_pairs(&["is_prebuild=true"]).unwrap()
    );
    let person = build_tags(&meta, &build("alice", &meta)).expect("person tags");
    assert!(person.is_empty(), "{person:?}");
    assert!(
        import_tags(&meta, &BTreeMap::new())
            .expect("import tags")
            .is_empty()
    );
}

#[test]
fn archive_reads_like_the_directory() {
    let tar = crate::archive::tar_dir(example_dir()).expect("tar example");
    assert_eq!(
        parse_archive(&tar, &Default::default()).expect("parse archive"),
        parse_dir(example_dir()).expect("parse dir")
    );
    let err = parse_archive(b"not a tar archive at all", &Default::default()).expect_err("garbage");
    assert!(err.to_string().starts_with("parse template: "), "{err}");
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

#[test]
fn prebuild_schedules_pick_the_instances_of_the_hour_in_their_time_zone() {
    use chrono::TimeZone;
    let meta = parse_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/templates/coder-prebuilds"),
    )
    .unwrap();
    let p = meta.presets[0].prebuilds.clone().unwrap();
    let tz = p.scheduling.as_ref().unwrap().timezone.clone();
    let tz: chrono_tz::Tz = tz.parse().unwrap();
    let at = |y, m, d, h| tz.with_ymd_and_hms(y, m, d, h, 30, 0).unwrap().to_utc();
    // 2025-06-02 is a Monday, 2025-06-07 a Saturday, 2025-06-08 a Sunday.
    assert_eq!(p.desired_at(at(2025, 6, 2, 10)), 5, "office hours");
    assert_eq!(p.desired_at(at(2025, 6, 2, 22)), 3, "evening: base count");
    assert_eq!(p.desired_at(at(2025, 6, 7, 9)), 1, "Saturday morning");
    assert_eq!(p.desired_at(at(2025, 6, 8, 10)), 3, "Sunday: base count");
}

/// The Kubernetes pool's example template (examples/kubernetes) is read
/// offline, without its provider: its parameters, and the tag that routes
/// its imports and builds to the pool whose daemons hold in-cluster rights.
#[test]
fn kubernetes_example_template_routes_to_its_pool() {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/templates/kubernetes-pod"
    ));
    let meta = parse_dir(dir).expect("kubernetes-pod parses");
    let names: Vec<&str> = meta.parameters.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["cpu", "home_disk_gib"]);
    let variables: Vec<&str> = meta.variables.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(variables, ["namespace", "image"]);
    let pool = crate::tags::parse_pairs(&["platform=kubernetes"]).unwrap();
    assert_eq!(
        import_tags(&meta, &BTreeMap::new()).expect("import tags"),
        pool
    );
    for owner in ["alice", "prebuilds"] {
        let ctx = BuildContext {
            owner_name: owner.into(),
            workspace_name: "dev".into(),
            workspace_id: "7d1c".into(),
            transition: "start".into(),
            template_name: "kubernetes-pod".into(),
            variables: BTreeMap::new(),
            parameters: resolve_parameters(&meta, None, &BTreeMap::new(), None)
                .expect("defaults resolve"),
        };
        assert_eq!(
            build_tags(&meta, &ctx).expect("build tags"),
            pool,
            "{owner}"
        );
    }
}
