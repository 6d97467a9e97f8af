//! Offers as the store shows and withdraws them, and repeated FinishJobs
//! judged against the report a job ended with.

use super::*;
use crate::chunk::sha256_hex;

/// A report with `state` (its hash in the header, as the transfer checks).
fn with_state(job: &str, outcome: JobOutcome, state: &[u8]) -> proto::FinishJobRequest {
    let mut r = finish(job, outcome);
    r.has_state = true;
    r.state_size = state.len() as u64;
    r.state_sha256 = sha256_hex(state);
    r
}

fn refusal(e: CoordError) -> String {
    match e {
        CoordError::FailedPrecondition(m) => m,
        other => panic!("expected FAILED_PRECONDITION, got {other:?}"),
    }
}

#[test]
fn a_standing_offer_shows_until_withdrawn_and_a_late_ack_is_refused() {
    let f = fixture();
    let job = f.job();
    let d1 = f.daemon("d1");
    f.claim(&d1).unwrap();
    assert_eq!(f.store.job(&job).unwrap().offered_to.as_deref(), Some("d1"));
    let row = f.daemon_row("d1");
    assert_eq!(
        (row.status(), row.current_job()),
        ("offered", Some(job.as_str()))
    );
    assert_eq!(f.store.standing_offer(&d1).unwrap(), Some(job.clone()));

    // The timer withdraws it, once.
    assert!(f.store.release_offer(&job, &d1).unwrap());
    assert!(!f.store.release_offer(&job, &d1).unwrap());
    assert_eq!(f.store.job(&job).unwrap().offered_to, None);
    assert_eq!(f.daemon_row("d1").status(), "idle");
    assert_eq!(f.store.standing_offer(&d1).unwrap(), None);
    let ack = f
        .store
        .ack(&job, &d1, "d1", "k", &f.secret(&job))
        .unwrap_err();
    assert!(matches!(ack, CoordError::FailedPrecondition(_)), "{ack}");
    let confirm = f
        .store
        .append_logs(&job, "d1", "k", &f.secret(&job), &[])
        .unwrap_err();
    assert!(
        matches!(confirm, CoordError::PermissionDenied(_)),
        "{confirm}"
    );

    // Another daemon takes it; its ack wins over a later withdrawal.
    let d2 = f.daemon("d2");
    assert_eq!(f.claim(&d2).unwrap().job_id, job);
    f.store.ack(&job, &d2, "d2", "k", &f.secret(&job)).unwrap();
    assert!(!f.store.release_offer(&job, &d2).unwrap());
    let j = f.store.job(&job).unwrap();
    assert_eq!((j.status, j.offered_to), (JobStatus::Running, None));
    assert_eq!(f.daemon_row("d2").status(), "busy");
}

/// Daemon d1 (key k) reports `job` succeeded with `state`.
fn succeed_with(f: &Fixture, job: &str, state: &[u8]) -> crate::coordinator::error::Result<()> {
    let report = with_state(job, JobOutcome::Succeeded, state);
    f.store
        .finish("d1", "k", &f.secret(job), &took(&report), state)
}

#[test]
fn a_repeated_finish_is_taken_only_if_it_is_the_same_report() {
    let f = fixture();
    let (_, ws, job) = f.running_build();
    let state = b"{\"serial\":1}";
    let taken = with_state(&job, JobOutcome::Succeeded, state);
    f.report(&taken, state).unwrap();
    // The same again (the daemon lost our answer): acknowledged.
    f.report(&taken, state).unwrap();

    let other = b"{\"serial\":2}";
    let e = succeed_with(&f, &job, other).unwrap_err();
    assert_eq!(
        refusal(e),
        format!(
            "finish job {job}: it has already succeeded with a different report, kept as it \
             was: state sha256 {} (this report: sha256 {})",
            sha256_hex(state),
            sha256_hex(other)
        )
    );
    let mut failed = taken.clone();
    failed.outcome = JobOutcome::Failed as i32;
    failed.error = "boom".into();
    failed.log_count = 3;
    let e = f.report(&failed, state).unwrap_err();
    assert!(refusal(e).ends_with(
        "outcome succeeded (this report: failed); error \"\" (this report: \"boom\"); \
             log_count 0 (this report: 3)"
    ));
    let e = f
        .report(&finish(&job, JobOutcome::Succeeded), &[])
        .unwrap_err();
    assert!(refusal(e).contains("(this report: none)"));

    let j = f.store.job(&job).unwrap();
    assert_eq!((j.status, j.error), (JobStatus::Succeeded, None));
    let kept = f.store.workspace_by_id(&ws).unwrap().state;
    assert_eq!(kept.as_deref(), Some(&state[..]));
}

#[test]
fn a_lost_jobs_late_report_stands_like_any_other() {
    let f = fixture();
    let (_, ws, job) = f.running_build();
    f.store.fail_lost_jobs(super::super::now_ms() + 1).unwrap();
    let state = b"{\"serial\":1}";
    let late = with_state(&job, JobOutcome::Succeeded, state);
    f.report(&late, state).unwrap();
    f.report(&late, state).unwrap();
    let other = b"{\"serial\":9}";
    let e = succeed_with(&f, &job, other).unwrap_err();
    let m = refusal(e);
    assert!(
        m.starts_with(&format!(
            "finish job {job}: its daemon has already reported late with a different report"
        )),
        "{m}"
    );
    let kept = f.store.workspace_by_id(&ws).unwrap().state;
    assert_eq!(kept.as_deref(), Some(&state[..]));
}

#[test]
fn a_job_ended_before_reports_were_kept_is_judged_by_its_status() {
    let f = fixture();
    let (job, _) = f.running_job();
    let taken = finish(&job, JobOutcome::Succeeded);
    f.report(&taken, &[]).unwrap();
    f.store
        .conn()
        .unwrap()
        .execute("UPDATE jobs SET report = NULL WHERE id = ?1", [&job])
        .unwrap();
    let mut same_status = taken.clone();
    same_status.error = "whatever".into();
    f.report(&same_status, &[]).unwrap();
    let e = f
        .report(&finish(&job, JobOutcome::Failed), &[])
        .unwrap_err();
    assert_eq!(
        refusal(e),
        format!("finish job {job}: it has already succeeded")
    );
}

/// A daemon's unary call confirms an offered job on its way (see `owned`),
/// but a refused finish is one transaction rolled back whole: the offer
/// still stands, the job is not left running on a refusal.
#[test]
fn a_refused_finish_of_an_offered_job_changes_nothing() {
    let f = fixture();
    let job = f.job();
    let d = f.daemon("d1");
    f.claim(&d).unwrap();
    let mut bad = finish(&job, JobOutcome::Succeeded);
    bad.log_count = 3;
    let refused = f.report(&bad, b"");
    assert!(
        matches!(&refused, Err(CoordError::FailedPrecondition(m)) if m.contains("3 log lines")),
        "{refused:?}"
    );
    let j = f.store.job(&job).unwrap();
    assert_eq!(
        (j.status, j.offered_to.as_deref(), j.daemon_name),
        (JobStatus::Pending, Some("d1"), None)
    );
    assert_eq!(f.store.standing_offer(&d).unwrap(), Some(job));
}
