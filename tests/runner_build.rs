//! Workspace builds against a real terraform: state round trips through
//! start, a second start and destroy; failures keep what terraform wrote;
//! terraform sees Coder's variables but none of the daemon's own settings.

mod runner_support;

use provisionerd::runner::{Level, Outcome, Transition};
use runner_support::{Harness, build_job, parse_state, template, terraform_lines};
use tokio_util::sync::CancellationToken;

const WORKSPACE_TF: &str = r#"
variable "greeting" {
  default = "hello"
}
resource "terraform_data" "ws" {
  input = var.greeting
  provisioner "local-exec" {
    command = "for i in 1 2 3 4 5; do echo line-$i; done; echo to-stderr >&2"
  }
}
output "greeting" {
  value = terraform_data.ws.output
}
"#;

/// A valid state with no resources, standing in for a previous build's.
const EMPTY_STATE: &[u8] = br#"{"version":4,"terraform_version":"1.15.5","serial":3,"lineage":"l-1","outputs":{},"resources":[]}"#;

fn succeeded(outcome: Outcome) -> Vec<u8> {
    match outcome {
        Outcome::Succeeded {
            state: Some(state),
            variables,
            ..
        } => {
            assert!(variables.is_empty(), "builds report no variables");
            state
        }
        other => panic!("build did not succeed: {other:?}"),
    }
}

#[tokio::test]
async fn start_again_then_destroy_round_trips_state() {
    let h = Harness::new();
    let archive = template(&[("main.tf", WORKSPACE_TF)]);

    let job = build_job(archive.clone(), Transition::Start, Vec::new(), "alice");
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let state = succeeded(outcome);
    let lines = terraform_lines(&logs);
    let exec: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("terraform_data.ws: (local-exec): "))
        .collect();
    let want: Vec<&str> = vec![
        "line-1",
        "line-2",
        "line-3",
        "line-4",
        "line-5",
        "to-stderr",
    ];
    assert_eq!(
        exec.iter()
            .filter(|l| !l.starts_with("Executing"))
            .copied()
            .collect::<Vec<_>>(),
        want
    );
    assert!(
        logs.iter()
            .any(|l| l.stage == "Starting workspace" && l.output.contains("Apply complete!"))
    );
    let parsed = parse_state(&state);
    assert_eq!(parsed["outputs"]["greeting"]["value"], "hello");
    assert_eq!(parsed["resources"].as_array().map(Vec::len), Some(1));
    h.assert_work_root_empty();

    let job = build_job(archive.clone(), Transition::Start, state.clone(), "alice");
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let again = succeeded(outcome);
    let lines = terraform_lines(&logs);
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("to add") && !l.contains(" 0 to add")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("line-1")),
        "provisioner ran again: {lines:#?}"
    );
    let id = |s: &serde_json::Value| s["resources"][0]["instances"][0]["attributes"]["id"].clone();
    assert_eq!(
        id(&parse_state(&again)),
        id(&parsed),
        "resource was replaced"
    );

    let job = build_job(archive, Transition::Destroy, again, "alice");
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let destroyed = parse_state(&succeeded(outcome));
    assert_eq!(
        destroyed["resources"].as_array().map(Vec::len),
        Some(0),
        "{destroyed}"
    );
    assert!(logs.iter().any(|l| l.stage == "Destroying workspace"));
}

#[tokio::test]
async fn destroy_without_state_succeeds() {
    let h = Harness::new();
    let job = build_job(
        template(&[("main.tf", WORKSPACE_TF)]),
        Transition::Destroy,
        Vec::new(),
        "alice",
    );
    let (outcome, _) = h.run(job, CancellationToken::new()).await;
    let state = succeeded(outcome);
    if !state.is_empty() {
        assert_eq!(
            parse_state(&state)["resources"].as_array().map(Vec::len),
            Some(0)
        );
    }
}

#[tokio::test]
async fn failed_apply_returns_the_state_terraform_wrote() {
    let h = Harness::new();
    let tf = r#"resource "terraform_data" "x" {
  provisioner "local-exec" {
    command = "echo about to fail; exit 3"
  }
}"#;
    let job = build_job(
        template(&[("main.tf", tf)]),
        Transition::Start,
        Vec::new(),
        "alice",
    );
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, state } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        error,
        "terraform apply exited with code 1: Error: local-exec provisioner error"
    );
    let state = parse_state(&state.expect("a failed apply returns state"));
    assert_eq!(state["resources"][0]["instances"][0]["status"], "tainted");
    assert!(
        logs.iter()
            .any(|l| l.level == Level::Error && l.output.contains("exit status 3")),
        "{logs:#?}"
    );
    h.assert_work_root_empty();
}

#[tokio::test]
async fn failed_plan_keeps_the_previous_state() {
    let h = Harness::new();
    let tf = "resource \"terraform_data\" \"x\" {\n  input = file(\"missing.txt\")\n}\n";
    let job = build_job(
        template(&[("main.tf", tf)]),
        Transition::Start,
        EMPTY_STATE.to_vec(),
        "alice",
    );
    let (outcome, _) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, state } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        error.starts_with("terraform plan exited with code 1: Error: "),
        "{error}"
    );
    assert_eq!(state, None);
}

#[tokio::test]
async fn terraform_gets_coder_variables_but_not_daemon_settings() {
    let mut h = Harness::new();
    h.env
        .push(("PROVISIONERD_FOO".into(), "daemon-secret".into()));
    h.env
        .push(("CODER_AGENT_TOKEN".into(), "stale-token".into()));
    let tf = r#"resource "terraform_data" "x" {
  provisioner "local-exec" {
    command = "env | sort"
  }
}"#;
    let archive = template(&[("main.tf", tf)]);

    let (outcome, logs) = h
        .run(
            build_job(archive.clone(), Transition::Start, Vec::new(), "alice"),
            CancellationToken::new(),
        )
        .await;
    succeeded(outcome);
    let env: Vec<&str> = terraform_lines(&logs)
        .into_iter()
        .filter_map(|l| l.strip_prefix("terraform_data.x: (local-exec): "))
        .collect();
    for want in [
        "CODER_WORKSPACE_OWNER=alice",
        "CODER_WORKSPACE_OWNER_NAME=alice",
        "CODER_WORKSPACE_NAME=dev",
        "CODER_WORKSPACE_ID=ws-1",
        "CODER_WORKSPACE_TRANSITION=start",
        "CODER_WORKSPACE_TEMPLATE_NAME=demo",
        "CODER_WORKSPACE_TEMPLATE_VERSION=v1",
        "CODER_WORKSPACE_BUILD_ID=build-1",
        "TF_IN_AUTOMATION=1",
        "TF_INPUT=0",
    ] {
        assert!(
            env.contains(&want),
            "{want} missing from terraform's env: {env:#?}"
        );
    }
    for leak in [
        "PROVISIONERD_",
        "CODER_AGENT_TOKEN",
        "daemon-secret",
        "CODER_WORKSPACE_IS_PREBUILD",
    ] {
        assert!(
            !env.iter().any(|l| l.contains(leak)),
            "{leak} reached terraform: {env:#?}"
        );
    }

    let (outcome, logs) = h
        .run(
            build_job(archive, Transition::Start, Vec::new(), "prebuilds"),
            CancellationToken::new(),
        )
        .await;
    succeeded(outcome);
    assert!(
        terraform_lines(&logs)
            .iter()
            .any(|l| l.ends_with("(local-exec): CODER_WORKSPACE_IS_PREBUILD=true"))
    );
}

/// A template that leaks its sensitive variable: `nonsensitive()` in a
/// provisioner's command, and a failing check quoting it.
const LEAKY_TF: &str = r#"
variable "token" {
  type      = string
  sensitive = true
}
resource "terraform_data" "ws" {
  provisioner "local-exec" {
    command = "echo token=${nonsensitive(var.token)}; echo also ${nonsensitive(var.token)} >&2; exit 3"
  }
}
"#;

#[tokio::test]
async fn sensitive_values_never_leave_the_runner() {
    let h = Harness::new();
    let mut job = build_job(
        template(&[("main.tf", LEAKY_TF)]),
        Transition::Start,
        Vec::new(),
        "alice",
    );
    let secret = "hunter2-very-secret";
    job.variables = vec![provisionerd::runner::Variable {
        name: "token".into(),
        value: secret.into(),
        sensitive: true,
    }];
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, .. } = outcome else {
        panic!("the provisioner exits 3: {outcome:?}")
    };
    assert!(!error.contains(secret), "{error}");
    let lines = terraform_lines(&logs);
    assert!(
        lines.iter().any(|l| l.ends_with("token=*redacted*")),
        "the echo is shipped, redacted: {lines:#?}"
    );
    assert!(logs.iter().all(|l| !l.output.contains(secret)));
}

/// Sensitive values reach terraform through a 0600 var file, not `-var`
/// (whose argv any local user can read): exactly, whatever their
/// characters, and typed as their declaration says.
#[tokio::test]
async fn sensitive_values_reach_terraform_exactly_through_a_var_file() {
    let tf = r#"
variable "token" {
  type      = string
  sensitive = true
}
variable "ports" {
  type      = list(number)
  sensitive = true
}
variable "region" {
  type = string
}
resource "terraform_data" "ws" {
  input = {
    token  = nonsensitive(var.token)
    ports  = nonsensitive(var.ports)
    region = var.region
  }
}
"#;
    let h = Harness::new();
    let mut job = build_job(
        template(&[("main.tf", tf)]),
        Transition::Start,
        Vec::new(),
        "alice",
    );
    let secret = "a\"b\\c ${not.interpolated} %{ if x } \n$x";
    let var = |name: &str, value: &str, sensitive| provisionerd::runner::Variable {
        name: name.into(),
        value: value.into(),
        sensitive,
    };
    job.variables = vec![
        var("token", secret, true),
        var("ports", "[80, 443]", true),
        var("region", "eu-west", false),
    ];
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let Outcome::Succeeded {
        state: Some(state), ..
    } = outcome
    else {
        panic!("{outcome:?}\n{logs:#?}")
    };
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    let input = &state["resources"][0]["instances"][0]["attributes"]["input"]["value"];
    assert_eq!(input["token"], secret);
    assert_eq!(input["ports"], serde_json::json!([80, 443]));
    assert_eq!(input["region"], "eu-west");
    assert!(logs.iter().all(|l| !l.output.contains(secret)));
}
