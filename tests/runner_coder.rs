//! Coder-style templates against a real terraform and the stand-in coder
//! provider (scripts/install-coder-provider.sh): the workspace, owner and
//! parameter values the runner passes in the environment come back out of
//! `coder_*` data sources, in terraform's output and in the state.

mod runner_support;

use provisionerd::runner::{Job, Outcome, Parameter, Transition};
use runner_support::{
    Harness, build_job, coder_cli_config, parse_state, template, terraform_lines,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const CODER_TF: &str = r#"
terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = ">= 2.0"
    }
  }
}

data "coder_workspace" "me" {}
data "coder_workspace_owner" "me" {}

data "coder_parameter" "region" {
  name         = "region"
  display_name = "Region"
  type         = "string"
  default      = "eu"
  mutable      = true
  option {
    name  = "Europe"
    value = "eu"
  }
  option {
    name  = "United States"
    value = "us"
  }
}

resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
}

resource "terraform_data" "home" {
  count = data.coder_workspace.me.start_count
  provisioner "local-exec" {
    command = "echo region=${data.coder_parameter.region.value} owner=${data.coder_workspace_owner.me.name} prebuild=${data.coder_workspace.me.is_prebuild}"
  }
}
"#;

fn coder_harness() -> Harness {
    Harness::with_cli_config(coder_cli_config())
}

fn build(transition: Transition, state: Vec<u8>, owner: &str, region: Option<&str>) -> Job {
    let mut job = build_job(template(&[("main.tf", CODER_TF)]), transition, state, owner);
    job.parameters = region
        .map(|value| Parameter {
            name: "region".into(),
            value: value.into(),
        })
        .into_iter()
        .collect();
    job
}

fn succeeded(outcome: Outcome) -> Vec<u8> {
    match outcome {
        Outcome::Succeeded {
            state: Some(state), ..
        } => state,
        other => panic!("build did not succeed: {other:?}"),
    }
}

/// The attributes of the state's `mode` resource `kind.name` (first
/// instance), or `None` when the state has no such instance.
fn attributes<'a>(state: &'a Value, mode: &str, kind: &str, name: &str) -> Option<&'a Value> {
    state["resources"]
        .as_array()?
        .iter()
        .find(|r| r["mode"] == mode && r["type"] == kind && r["name"] == name)?["instances"]
        .get(0)
        .map(|i| &i["attributes"])
}

#[tokio::test]
async fn a_prebuild_sees_its_owner_parameters_and_workspace() {
    let h = coder_harness();
    let job = build(Transition::Start, Vec::new(), "prebuilds", Some("us"));
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let state = parse_state(&succeeded(outcome));
    let lines = terraform_lines(&logs);
    assert!(
        lines.contains(
            &"terraform_data.home[0]: (local-exec): region=us owner=prebuilds prebuild=true"
        ),
        "{lines:#?}"
    );

    let param = attributes(&state, "data", "coder_parameter", "region").expect("parameter");
    assert_eq!(
        (&param["value"], &param["default"]),
        (&"us".into(), &"eu".into())
    );
    let ws = attributes(&state, "data", "coder_workspace", "me").expect("workspace");
    assert_eq!(ws["is_prebuild"], true);
    assert_eq!(ws["start_count"], 1);
    assert_eq!(ws["transition"], "start");
    assert_eq!(ws["name"], "dev");
    assert_eq!(ws["id"], "ws-1");
    assert_eq!(ws["template_name"], "demo");
    // The version's name, as Coder passes it (its id is `tv-1`).
    assert_eq!(ws["template_version"], "v1");
    let owner = attributes(&state, "data", "coder_workspace_owner", "me").expect("owner");
    assert_eq!(owner["name"], "prebuilds");
    let agent = attributes(&state, "managed", "coder_agent", "main").expect("agent");
    for computed in ["id", "token"] {
        assert!(
            agent[computed].as_str().is_some_and(|v| v.len() == 36),
            "agent {computed}: {agent}"
        );
    }
    assert_eq!(agent["auth"], "token");
    assert!(attributes(&state, "managed", "terraform_data", "home").is_some());
    h.assert_work_root_empty();
}

#[tokio::test]
async fn stop_counts_zero_and_keeps_the_agent() {
    let h = coder_harness();
    let job = build(Transition::Start, Vec::new(), "alice", None);
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let started = succeeded(outcome);
    assert!(
        terraform_lines(&logs).contains(
            &"terraform_data.home[0]: (local-exec): region=eu owner=alice prebuild=false"
        ),
        "the default applies without a value: {logs:#?}"
    );
    let agent_id = |state: &Value| {
        attributes(state, "managed", "coder_agent", "main").expect("agent")["id"].clone()
    };
    let before = agent_id(&parse_state(&started));

    let job = build(Transition::Stop, started, "alice", None);
    let (outcome, logs) = h.run(job, CancellationToken::new()).await;
    let stopped = parse_state(&succeeded(outcome));
    let ws = attributes(&stopped, "data", "coder_workspace", "me").expect("workspace");
    assert_eq!(
        (&ws["transition"], &ws["start_count"]),
        (&"stop".into(), &0.into())
    );
    assert!(
        attributes(&stopped, "managed", "terraform_data", "home").is_none(),
        "start_count 0 removes the counted resource: {stopped}"
    );
    assert_eq!(agent_id(&stopped), before, "the agent was replaced");
    assert!(
        logs.iter()
            .any(|l| l.stage == "Stopping workspace" && l.output.contains("1 destroyed")),
        "{logs:#?}"
    );
}

#[tokio::test]
async fn a_value_outside_the_options_fails_the_build() {
    let h = coder_harness();
    let job = build(Transition::Start, Vec::new(), "alice", Some("mars"));
    let (outcome, _) = h.run(job, CancellationToken::new()).await;
    let Outcome::Failed { error, state } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        error,
        "terraform plan exited with code 1: Error: read parameter \"region\": value \"mars\" is not one of the options (eu, us)"
    );
    assert_eq!(state, None, "a failed plan keeps the previous state");
}
