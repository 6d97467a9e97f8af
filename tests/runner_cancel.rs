//! Canceling a job: terraform is interrupted, the job ends as Canceled within
//! the grace period, and nothing terraform started survives.

mod runner_support;

use std::time::{Duration, Instant};

use provisionerd::process::group_alive;
use provisionerd::runner::{Level, LogEntry, Outcome, Source, Transition};
use runner_support::{Harness, build_job, template, terraform_lines};
use tokio_util::sync::CancellationToken;

/// Runs a build whose provisioner prints "started", records its process
/// group and runs `script`; cancels once the group is recorded (so after
/// "started": a cancel before it would interrupt the shell before it
/// printed), and checks the group is gone after.
async fn cancel_during_provisioner(
    script: &str,
    grace: Duration,
) -> (Option<Vec<u8>>, String, Vec<LogEntry>) {
    let mut h = Harness::new();
    h.cfg.cancel_grace = grace;
    let pgid_file = h.root.path().join("pgid");
    let tf = format!(
        r#"resource "terraform_data" "x" {{
  provisioner "local-exec" {{
    command = "echo started; awk '{{print $5}}' /proc/$$/stat > {pg}.tmp && mv {pg}.tmp {pg}; {script}; echo finished"
  }}
}}"#,
        pg = pgid_file.display()
    );
    let job = build_job(
        template(&[("main.tf", &tf)]),
        Transition::Start,
        Vec::new(),
        "alice",
    );
    let cancel = CancellationToken::new();
    let canceler = {
        let (cancel, pgid_file) = (cancel.clone(), pgid_file.clone());
        tokio::spawn(async move {
            while !pgid_file.exists() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            cancel.cancel();
            Instant::now()
        })
    };
    let (outcome, logs) = h.run(job, cancel).await;
    let canceled_at = tokio::time::timeout(Duration::from_secs(5), canceler)
        .await
        .expect("canceler timed out")
        .expect("canceler panicked");
    let took = canceled_at.elapsed();
    assert!(
        took < grace + Duration::from_secs(8),
        "job took {took:?} to end after cancel"
    );

    let Outcome::Canceled { error, state } = outcome else {
        panic!("{outcome:?}\n{logs:#?}")
    };
    assert!(logs.iter().any(|l| l.source == Source::Daemon
        && l.level == Level::Warn
        && l.output == "Job canceled: interrupting terraform"
        && l.stage == "Starting workspace"));
    let lines = terraform_lines(&logs);
    assert!(
        lines.iter().any(|l| l.ends_with("(local-exec): started")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.ends_with("(local-exec): finished")),
        "{lines:#?}"
    );

    let pgid: i32 = std::fs::read_to_string(&pgid_file)
        .expect("read pgid")
        .trim()
        .parse()
        .expect("pgid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while group_alive(pgid) {
        assert!(
            Instant::now() < deadline,
            "processes of group {pgid} survived the cancel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.assert_work_root_empty();
    (state, error, logs)
}

#[tokio::test]
async fn cancel_during_apply_interrupts_terraform_and_returns_its_state() {
    let (state, error, _) = cancel_during_provisioner("sleep 30", Duration::from_secs(5)).await;
    assert_eq!(error, "canceled: terraform interrupted");
    let state: serde_json::Value =
        serde_json::from_slice(&state.expect("apply had started")).expect("state is JSON");
    assert_eq!(state["version"], 4);
}

#[tokio::test]
async fn cancel_leaves_no_sigint_ignoring_child_behind() {
    let (_, error, _) =
        cancel_during_provisioner("trap '' INT; sleep 30", Duration::from_secs(1)).await;
    assert!(
        error == "canceled: terraform killed after grace"
            || error == "canceled: terraform interrupted",
        "{error}"
    );
}

#[tokio::test]
async fn cancel_before_start_runs_no_terraform() {
    let h = Harness::new();
    let job = build_job(
        template(&[("main.tf", "")]),
        Transition::Start,
        b"{\"version\":4}".to_vec(),
        "alice",
    );
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (outcome, logs) = h.run(job, cancel).await;
    let Outcome::Canceled { error, state } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(error, "canceled before terraform init");
    assert_eq!(state, None, "nothing ran, so the previous state stays");
    assert!(terraform_lines(&logs).is_empty());
    h.assert_work_root_empty();
}
