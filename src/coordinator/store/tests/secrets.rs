//! Job secrets: a job answers only calls carrying the secret of its latest
//! offer, a refused call changes nothing (no line, no state, no ack, no
//! lease), and a job offered before secrets existed keeps the name and key
//! check alone.

use super::*;
use crate::coordinator::auth;

/// `jobs.updated_at` (the lease's clock) of `job`.
fn updated_at(f: &Fixture, job: &str) -> i64 {
    f.store
        .read(|c| {
            Ok(
                c.query_row("SELECT updated_at FROM jobs WHERE id = ?1", [job], |r| {
                    r.get::<_, Option<i64>>(0)
                })?,
            )
        })
        .unwrap()
        .unwrap_or(0)
}

/// `jobs.secret_hash` of `job`.
fn stored_hash(f: &Fixture, job: &str) -> Option<String> {
    f.store
        .read(|c| {
            Ok(
                c.query_row("SELECT secret_hash FROM jobs WHERE id = ?1", [job], |r| {
                    r.get(0)
                })?,
            )
        })
        .unwrap()
}

fn denied(e: CoordError) -> String {
    match e {
        CoordError::PermissionDenied(m) => m,
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }
}

fn line(seq: u64) -> proto::LogLine {
    proto::LogLine {
        seq,
        output: format!("line {seq}"),
        ..Default::default()
    }
}

#[test]
fn a_job_answers_only_the_secret_of_its_latest_offer() {
    let f = fixture();
    let (_, ws, job) = f.pending_build();
    let d = f.daemon("d1");
    while f.claim(&d).unwrap().job_id != job {}
    let first = f.secret(&job);
    assert!(first.starts_with("pdj_") && first.len() == 68, "{first}");
    assert_eq!(
        stored_hash(&f, &job),
        Some(auth::hash(&first)),
        "only the hash is kept"
    );

    // Offered, not acknowledged: a caller with the daemon's name and key
    // but not the secret neither acknowledges the job nor ships to it.
    let missing = denied(
        f.store
            .append_logs(&job, "d1", "k", "", &[line(1)])
            .unwrap_err(),
    );
    assert_eq!(
        missing,
        format!(
            "update job: job {job} belongs to another daemon: the request did not carry its job secret"
        )
    );
    let wrong = format!("pdj_{}", "0".repeat(64));
    let bad = denied(
        f.store
            .append_logs(&job, "d1", "k", &wrong, &[line(1)])
            .unwrap_err(),
    );
    assert!(bad.contains("not the one its offer handed out"), "{bad}");
    assert!(
        !bad.contains(&wrong),
        "the refusal never repeats a secret: {bad}"
    );
    denied(f.store.ack(&job, &d, "d1", "k", &wrong).unwrap_err());
    let j = f.store.job(&job).unwrap();
    assert_eq!(
        (j.status, j.offered_to.as_deref(), j.log_count),
        (JobStatus::Pending, Some("d1"), 0)
    );

    // Withdrawn and offered again: a new secret; the old one is void.
    // The withdrawn offer's hash goes with it: a coordinator that offers
    // the job without a secret (an older replica in a rolling upgrade)
    // leaves no hash its former holder could still present.
    assert!(f.store.release_offer(&job, &d).unwrap());
    assert_eq!(stored_hash(&f, &job), None);
    while f.claim(&d).unwrap().job_id != job {}
    let second = f.secret(&job);
    assert_ne!(first, second);
    denied(f.store.ack(&job, &d, "d1", "k", &first).unwrap_err());
    f.store.ack(&job, &d, "d1", "k", &second).unwrap();
    assert_eq!(f.store.job(&job).unwrap().status, JobStatus::Running);

    // Running: every call with the old secret is refused and changes
    // nothing, not even the lease.
    let lease = updated_at(&f, &job);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let refusals = [
        f.store
            .append_logs(&job, "d1", "k", &first, &[line(1)])
            .map(|_| ())
            .unwrap_err(),
        f.store
            .append_logs(&job, "d1", "k", "", &[])
            .map(|_| ())
            .unwrap_err(),
        f.store
            .job_input(&job, "d1", "k", &first)
            .map(|_| ())
            .unwrap_err(),
        f.store.reporting(&job, "d1", "k", "").unwrap_err(),
        f.store
            .finish(
                "d1",
                "k",
                &first,
                &took(&finish(&job, JobOutcome::Failed)),
                &[],
            )
            .unwrap_err(),
    ];
    for e in refusals {
        let m = denied(e);
        assert!(
            m.contains(&format!("job {job} belongs to another daemon")),
            "{m}"
        );
    }
    let j = f.store.job(&job).unwrap();
    assert_eq!((j.status, j.log_count), (JobStatus::Running, 0));
    assert_eq!(
        updated_at(&f, &job),
        lease,
        "no refused call renews the lease"
    );
    assert!(f.store.logs(&job, 0, 10).unwrap().is_empty());
    assert_eq!(f.store.workspace_by_id(&ws).unwrap().state, None);

    // The secret of the offer it took does everything.
    assert_eq!(
        f.store
            .append_logs(&job, "d1", "k", &second, &[line(1)])
            .unwrap(),
        (1, false)
    );
    f.store.job_input(&job, "d1", "k", &second).unwrap();
    let mut done = finish(&job, JobOutcome::Succeeded);
    done.log_count = 1;
    f.store
        .finish("d1", "k", &second, &took(&done), &[])
        .unwrap();
    assert_eq!(f.store.job(&job).unwrap().status, JobStatus::Succeeded);
}

/// A job a coordinator offered before job secrets existed (it ran across
/// the upgrade) has no hash: its daemon, which got no secret, still
/// reports it; the name and key still bind it.
#[test]
fn a_job_offered_before_secrets_keeps_the_name_and_key_check() {
    let f = fixture();
    let (job, _) = f.running_job();
    f.store
        .write(|c| {
            c.execute("UPDATE jobs SET secret_hash = NULL WHERE id = ?1", [&job])?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        f.store
            .append_logs(&job, "d1", "k", "", &[line(1)])
            .unwrap(),
        (1, false)
    );
    let other = f.store.append_logs(&job, "d2", "k", "", &[]).unwrap_err();
    assert!(
        denied(other).contains("is not owned by daemon \"d2\""),
        "the name still binds it"
    );
    let mut done = finish(&job, JobOutcome::Succeeded);
    done.log_count = 1;
    f.store.finish("d1", "k", "", &took(&done), &[]).unwrap();
    assert_eq!(f.store.job(&job).unwrap().status, JobStatus::Succeeded);
}
