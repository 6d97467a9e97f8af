//! Template imports against a real terraform: variables are reported, and
//! templates that cannot run fail with messages naming what is wrong.

mod runner_support;

use provisionerd::runner::{Level, Outcome, Source, TemplateVariable};
use runner_support::{Harness, import_job, template, terraform_lines, var};
use tokio_util::sync::CancellationToken;

const VARIABLES_TF: &str = r#"
variable "region" {
  type        = string
  description = "Where workspaces run"
}
variable "replicas" {
  type    = number
  default = 2
}
variable "token" {
  type      = string
  default   = "none"
  sensitive = true
}
resource "terraform_data" "x" {
  input = "${var.region}-${var.replicas}"
}
"#;

#[tokio::test]
async fn import_reports_the_template_variables() {
    let h = Harness::new();
    let job = import_job(
        template(&[("main.tf", VARIABLES_TF)]),
        vec![var("region", "eu")],
    );
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let Outcome::Succeeded {
        state, variables, ..
    } = outcome
    else {
        panic!("import failed: {outcome:?}\n{logs:#?}");
    };
    assert_eq!(state, None, "imports never return state");
    let tv =
        |name: &str, type_expr: &str, default: Option<&str>, sensitive: bool, description: &str| {
            TemplateVariable {
                name: name.into(),
                description: description.into(),
                type_expr: type_expr.into(),
                default_json: default.map(str::to_string),
                sensitive,
            }
        };
    assert_eq!(
        variables,
        vec![
            tv("region", "string", None, false, "Where workspaces run"),
            tv("replicas", "number", Some("2"), false, ""),
            tv("token", "string", Some("\"none\""), true, ""),
        ]
    );
    let stages: Vec<&str> = logs.iter().map(|l| l.stage.as_str()).collect();
    for stage in [
        "Setting up",
        "Initializing Terraform Directory",
        "Validating",
        "Planning Infrastructure",
        "Cleaning Up",
    ] {
        assert!(stages.contains(&stage), "no {stage:?} line in {stages:?}");
    }
    assert!(
        terraform_lines(&logs)
            .iter()
            .any(|l| l.contains("Plan: 1 to add")),
        "{logs:#?}"
    );
    h.assert_work_root_empty();
}

#[tokio::test]
async fn missing_required_variable_fails_before_terraform_runs() {
    let h = Harness::new();
    let job = import_job(template(&[("main.tf", VARIABLES_TF)]), vec![]);
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, state } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        error,
        "template import: variable(s) region have no default and no value was given"
    );
    assert_eq!(state, None);
    assert!(
        terraform_lines(&logs).is_empty(),
        "terraform ran: {logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.source == Source::Daemon && l.level == Level::Error && l.output == error)
    );
    h.assert_work_root_empty();
}

#[tokio::test]
async fn undeclared_variable_value_fails() {
    let h = Harness::new();
    let job = import_job(
        template(&[("main.tf", VARIABLES_TF)]),
        vec![var("region", "eu"), var("zone", "a")],
    );
    let (outcome, _) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        error,
        "template import: variable(s) zone are not declared by the template"
    );
}

#[tokio::test]
async fn syntax_error_names_the_file() {
    let h = Harness::new();
    let broken = "resource \"terraform_data\" \"x\" {\n  input = \"a\"\n";
    let job = import_job(
        template(&[
            ("main.tf", "variable \"a\" {\n default = 1\n}\n"),
            ("broken.tf", broken),
        ]),
        vec![],
    );
    let (outcome, _) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, state } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.contains("broken.tf line "), "{error}");
    assert_eq!(state, None);
    h.assert_work_root_empty();
}

#[tokio::test]
async fn invalid_reference_fails_validate_with_terraforms_summary() {
    let h = Harness::new();
    let job = import_job(
        template(&[(
            "main.tf",
            "resource \"terraform_data\" \"x\" {\n  input = var.nope\n}\n",
        )]),
        vec![],
    );
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        error,
        "terraform validate exited with code 1: Error: Reference to undeclared input variable"
    );
    let line = logs
        .iter()
        .find(|l| l.output.contains("on main.tf line 2"))
        .expect("location line");
    assert_eq!(
        (line.stage.as_str(), line.level),
        ("Validating", Level::Error)
    );
}

#[tokio::test]
async fn missing_terraform_binary_is_reported() {
    let h = Harness::with_terraform("/nonexistent/terraform".into());
    let job = import_job(template(&[("main.tf", "")]), vec![]);
    let (outcome, _) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.starts_with("run terraform at /nonexistent/terraform: No such file or directory"),
        "{error}"
    );
    h.assert_work_root_empty();
}

#[tokio::test]
async fn hostile_archive_and_bad_job_id_fail_in_setup() {
    let h = Harness::new();
    let mut job = import_job(template(&[("main.tf", "")]), vec![]);
    job.id = "../escape".into();
    let (outcome, _) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.contains("\"../escape\" is not a valid directory name"),
        "{error}"
    );

    let job = import_job(
        b"definitely not a tar archive, but long enough to hold a header".repeat(20),
        vec![],
    );
    let (outcome, _) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(error.starts_with("extract template archive: "), "{error}");
    h.assert_work_root_empty();
}
