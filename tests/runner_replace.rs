//! Replacement on claim against a real terraform: only a claim build
//! reports the resources its plan replaces (one warning line, and the list
//! in its outcome); the same replacement in an ordinary build is not
//! reported.

mod runner_support;

use provisionerd::runner::{Job, JobKind, Level, LogEntry, Outcome, Transition};
use runner_support::{Harness, build_job, template, var};
use tokio_util::sync::CancellationToken;

const TF: &str = r#"
variable "who" {}
resource "terraform_data" "ws" {
  triggers_replace = [var.who]
}
"#;

fn job(state: Vec<u8>, who: &str, claim: bool) -> Job {
    let mut job = build_job(template(&[("main.tf", TF)]), Transition::Start, state, who);
    job.variables = vec![var("who", who)];
    if let JobKind::WorkspaceBuild(build) = &mut job.kind {
        build.prebuild_claim = claim;
    }
    job
}

fn succeeded(outcome: Outcome, logs: &[LogEntry]) -> (Vec<u8>, Vec<String>) {
    match outcome {
        Outcome::Succeeded {
            state: Some(state),
            replacements,
            ..
        } => (state, replacements),
        other => panic!("build did not succeed: {other:?}\n{logs:#?}"),
    }
}

fn warnings(logs: &[LogEntry]) -> Vec<&LogEntry> {
    logs.iter()
        .filter(|l| {
            l.output
                .starts_with("Claiming this prebuilt workspace replaces")
        })
        .collect()
}

#[tokio::test]
async fn only_a_claim_build_reports_what_its_plan_replaces() {
    let h = Harness::new();
    let (outcome, logs) = h
        .run(
            job(Vec::new(), "prebuilds", false),
            CancellationToken::new(),
        )
        .await;
    let (state, replaced) = succeeded(outcome, &logs);
    assert!(replaced.is_empty(), "a create replaces nothing");

    // An ordinary build that replaces: not this warning.
    let (outcome, logs) = h
        .run(job(state, "alice", false), CancellationToken::new())
        .await;
    let (state, replaced) = succeeded(outcome, &logs);
    assert!(replaced.is_empty(), "{replaced:?}");
    assert!(warnings(&logs).is_empty(), "{logs:#?}");
    assert!(
        logs.iter()
            .any(|l| l.output.contains("1 to add, 0 to change, 1 to destroy")),
        "it did replace: {logs:#?}"
    );

    // A claim build that replaces: one warning, and the outcome lists it.
    let (outcome, logs) = h
        .run(job(state, "bob", true), CancellationToken::new())
        .await;
    let (_, replaced) = succeeded(outcome, &logs);
    assert_eq!(replaced, ["terraform_data.ws (forced by triggers_replace)"]);
    let w = warnings(&logs);
    assert_eq!(w.len(), 1, "{logs:#?}");
    assert_eq!(w[0].level, Level::Warn);
    assert!(
        w[0].output
            .contains("lifecycle { ignore_changes = [triggers_replace] }"),
        "{}",
        w[0].output
    );
    h.assert_work_root_empty();
}
