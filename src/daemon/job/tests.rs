use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::report::{FORCED_REPORT_BUDGET, deadline, give_up, lease_failure, spool_failure};
use super::*;
use crate::daemon::backlog::Backlog;
use crate::daemon::batch::BatchPolicy;
use crate::daemon::recover;
use crate::daemon::{REPORT_BUDGET, spool};
use crate::proto::{JobOutcome, LogLine};

fn client(url: String) -> Client {
    crate::daemon::rpc::test_client(&url)
}

fn ctx(client: Client, dir: &Path) -> JobCtx {
    JobCtx {
        client,
        runner: RunnerConfig {
            terraform_path: "/nonexistent/terraform".into(),
            work_root: dir.join("jobs"),
            plugin_cache_dir: dir.join("plugins"),
            cancel_grace: Duration::from_secs(1),
            force_kill: CancellationToken::new(),
            archive_limits: Default::default(),
            observer: Default::default(),
        },
        tracker: TaskTracker::new(),
        cancel: CancellationToken::new(),
        lease_ms: Arc::new(AtomicU64::new(0)),
        records: Records::new(dir.join("records")),
        spool_dir: dir.join("spool"),
        name: "t".into(),
        metrics: crate::daemon::Metrics::new("t").0,
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancel_gives_up_an_unconfirmed_job_without_waiting_for_a_wedged_call() {
    // Connections are accepted (by the kernel) and never answered: a
    // coordinator wedged, or a path that black-holes.
    let wedged = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx(
        client(format!("http://{}", wedged.local_addr().unwrap())),
        tmp.path(),
    );
    let cancel = CancellationToken::new();
    let t0 = Instant::now();
    cancel_after(&cancel, Duration::from_secs(1));
    let confirmed = tokio::time::timeout(
        Duration::from_secs(120),
        confirm::ownership(&ctx, "j1", &Secret::new("pdj_s"), &cancel),
    )
    .await
    .expect("confirming ends");
    assert!(!confirmed);
    let waited = t0.elapsed();
    assert!(
        waited <= Duration::from_secs(1) + confirm::ANSWER_AFTER_CANCEL,
        "{waited:?}"
    );
}

/// Fires `token` `after` from now.
fn cancel_after(token: &CancellationToken, after: Duration) {
    let token = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        token.cancel();
    });
}

#[tokio::test(start_paused = true)]
async fn the_report_budget_runs_from_cancel_and_runner_end_and_a_forced_stop_cuts_it() {
    let (cancel, done, kill) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    /// The budget that ran out, and when.
    async fn run_out(
        c: &CancellationToken,
        d: &CancellationToken,
        k: &CancellationToken,
    ) -> (Duration, Duration) {
        let t0 = Instant::now();
        let budget = tokio::time::timeout(Duration::from_secs(600), deadline(c, d, k))
            .await
            .expect("a deadline");
        (budget, t0.elapsed())
    }

    // Without a cancel, reporting is never given up.
    done.cancel();
    let never = tokio::time::timeout(Duration::from_secs(600), deadline(&cancel, &done, &kill));
    assert!(never.await.is_err(), "no deadline without a cancel");

    cancel.cancel();
    assert_eq!(
        run_out(&cancel, &done, &kill).await,
        (REPORT_BUDGET, REPORT_BUDGET)
    );

    // The kill 3s into the budget leaves 2s more.
    cancel_after(&kill, Duration::from_secs(3));
    let three = Duration::from_secs(3);
    assert_eq!(
        run_out(&cancel, &done, &kill).await,
        (FORCED_REPORT_BUDGET, three + FORCED_REPORT_BUDGET)
    );

    // Killed before the runner returned: the short budget from its return.
    let done = CancellationToken::new();
    cancel_after(&done, Duration::from_secs(4));
    let four = Duration::from_secs(4);
    assert_eq!(
        run_out(&cancel, &done, &kill).await,
        (FORCED_REPORT_BUDGET, four + FORCED_REPORT_BUDGET)
    );
}

#[test]
fn a_given_up_job_keeps_its_lines_state_and_outcome_for_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let records = Records::new(tmp.path().join("records"));
    std::fs::create_dir_all(tmp.path().join("records")).unwrap();
    let spool_dir = tmp.path().join("spool");
    let secret = Secret::new("pdj_j1");
    let record = JobRecord {
        job_id: "j1".into(),
        job_secret: secret.clone(),
        kind: "workspace_build".into(),
        started_at_ms: 1,
        work_dir: tmp.path().join("jobs/j1"),
        finished: None,
    };
    records.write(&record).unwrap();
    // Lines 1..=3 confirmed, 4..=6 only in memory, 7 never taken.
    let now = Instant::now();
    let mut backlog = Backlog::new(BatchPolicy::default(), spool_dir.clone(), "j1");
    for i in 1..=6 {
        let line = LogLine {
            output: format!("line-{i}"),
            ..Default::default()
        };
        backlog.push(line, now).unwrap();
    }
    backlog.ack(3, now).unwrap();
    let rest = vec![LogLine {
        output: "Job canceled".into(),
        ..Default::default()
    }];
    let outcome = Outcome::Canceled {
        error: "terraform was interrupted".into(),
        state: Some(b"{\"serial\": 3}".to_vec()),
    };
    let req = finish_request("j1", &secret, outcome, 7);
    give_up(
        &records,
        record,
        &req,
        "canceled",
        Some((backlog, rest)),
        "report job result: gave up 2s after the cancel",
    );

    // The next start reports the job canceled, with its state, and has
    // the lines the coordinator never got.
    let jobs = recover::collect(&records, &tmp.path().join("jobs"), &spool_dir).unwrap();
    assert_eq!(jobs.len(), 1);
    let finished = jobs[0]
        .record
        .finished
        .as_ref()
        .expect("the outcome is kept");
    let again = finished.request("j1", &jobs[0].record.job_secret, jobs[0].state.clone(), 7);
    assert_eq!(again.header.job_secret, "pdj_j1", "the secret is kept too");
    assert_eq!(
        (
            again.header.outcome,
            again.header.error.as_str(),
            again.state.as_deref()
        ),
        (
            JobOutcome::Canceled as i32,
            "terraform was interrupted",
            Some(&b"{\"serial\": 3}"[..])
        )
    );
    let mut r = spool::Reader::open(&spool::path(&spool_dir, "j1"))
        .unwrap()
        .expect("the unconfirmed lines are spooled");
    let kept: Vec<(u64, String)> = std::iter::from_fn(|| r.next().unwrap())
        .map(|l| (l.seq, l.output))
        .collect();
    let want: Vec<(u64, String)> = [(4, "line-4"), (5, "line-5"), (6, "line-6")]
        .into_iter()
        .map(|(s, o)| (s, o.to_string()))
        .chain([(7, "Job canceled".to_string())])
        .collect();
    assert_eq!(kept, want);
}

#[test]
fn a_lease_interrupted_job_is_failed_and_keeps_its_state() {
    let lease = Duration::from_secs(3);
    let canceled = Outcome::Canceled {
        error: "interrupted".into(),
        state: Some(b"{}".to_vec()),
    };
    let Outcome::Failed { error, state } = lease_failure(canceled, lease) else {
        panic!("not failed")
    };
    assert_eq!(
        error,
        "coordinator unreachable for longer than the job lease (3s): terraform was interrupted"
    );
    assert_eq!(state.as_deref(), Some(&b"{}"[..]));
    // terraform finished before the interrupt took: its result stands.
    let done = Outcome::Succeeded {
        state: None,
        variables: Vec::new(),
        replacements: Vec::new(),
    };
    assert!(matches!(
        lease_failure(done, lease),
        Outcome::Succeeded { .. }
    ));
}

#[test]
fn a_job_whose_spool_broke_is_failed_with_its_state() {
    let err = "ship logs of job j1: read log spool /c/spool/j1.log: damaged record at byte 8";
    let cases = [
        (
            Outcome::Succeeded {
                state: Some(b"{}".to_vec()),
                variables: Vec::new(),
                replacements: Vec::new(),
            },
            format!("{err}; terraform itself succeeded"),
        ),
        (
            Outcome::Canceled {
                error: "interrupted".into(),
                state: Some(b"{}".to_vec()),
            },
            format!("{err}; terraform was interrupted"),
        ),
        (
            Outcome::Failed {
                error: "apply failed".into(),
                state: Some(b"{}".to_vec()),
            },
            format!("apply failed; {err}"),
        ),
    ];
    for (outcome, want) in cases {
        let Outcome::Failed { error, state } = spool_failure(outcome, err) else {
            panic!("not failed")
        };
        assert_eq!(error, want);
        assert_eq!(state.as_deref(), Some(&b"{}"[..]));
    }
}
