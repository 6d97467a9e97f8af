//! When a finished import makes its version active: a first import does,
//! a failed one or `--activate=false` never does, and imports finishing
//! out of order never undo a newer push or a rollback.

use super::*;

#[test]
fn a_first_import_activates_and_a_failed_one_never_does() {
    let f = fixture();
    let d = f.daemon("d1");
    let v1 = push_ok(&f, "t", None);
    import(&f, &d, &v1.job_id, JobOutcome::Failed);
    assert_eq!(active(&f, "t"), None);
    let v2 = push_ok(&f, "t", None);
    import(&f, &d, &v2.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t").as_deref(), Some("v2"));
}

#[test]
fn keep_inactive_never_activates_even_the_first_import() {
    let f = fixture();
    let d = f.daemon("d1");
    let v1 = push_v(&f, "t", None, true).unwrap();
    import(&f, &d, &v1.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t"), None);
    let info = f.store.find_version("t", "v1").unwrap();
    assert!(info.imported && !info.activate && !info.active);
    let v2 = push_ok(&f, "t", None);
    import(&f, &d, &v2.job_id, JobOutcome::Succeeded);
    let v3 = push_v(&f, "t", None, true).unwrap();
    import(&f, &d, &v3.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t").as_deref(), Some("v2"));
    f.store.promote_version("t", "v3").unwrap();
    assert_eq!(active(&f, "t").as_deref(), Some("v3"));
}

#[test]
fn an_import_finishing_after_a_rollback_does_not_undo_it() {
    let f = fixture();
    let d = f.daemon("d1");
    let v1 = push_ok(&f, "t", None);
    import(&f, &d, &v1.job_id, JobOutcome::Succeeded);
    let v2 = push_ok(&f, "t", None);
    import(&f, &d, &v2.job_id, JobOutcome::Succeeded);
    let v3 = push_ok(&f, "t", None);
    f.store.promote_version("t", "v1").unwrap();
    import(&f, &d, &v3.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t").as_deref(), Some("v1"));
    // A push after the rollback activates as usual.
    let v4 = push_ok(&f, "t", None);
    import(&f, &d, &v4.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t").as_deref(), Some("v4"));
}

#[test]
fn an_older_import_finishing_after_a_newer_ones_does_not_take_over() {
    let f = fixture();
    let d = f.daemon("d1");
    let v1 = push_ok(&f, "t", None);
    let v2 = push_ok(&f, "t", None);
    import(&f, &d, &v2.job_id, JobOutcome::Succeeded);
    import(&f, &d, &v1.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t").as_deref(), Some("v2"));
}

#[test]
fn a_newer_import_finishing_after_an_older_ones_activates() {
    // Two pushes in a row, imported in push order (one daemon): the
    // second is the one the operator wants.
    let f = fixture();
    let d = f.daemon("d1");
    let v1 = push_ok(&f, "t", None);
    let v2 = push_ok(&f, "t", None);
    import(&f, &d, &v1.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t").as_deref(), Some("v1"));
    import(&f, &d, &v2.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t").as_deref(), Some("v2"));
}

#[test]
fn a_rollback_holds_whatever_the_clocks_of_the_replicas_say() {
    // The replica that took v3's push runs a minute ahead of the one that
    // takes the rollback: push order, not time, decides.
    let f = fixture();
    let d = f.daemon("d1");
    let v1 = push_ok(&f, "t", None);
    import(&f, &d, &v1.job_id, JobOutcome::Succeeded);
    let v2 = push_ok(&f, "t", None);
    import(&f, &d, &v2.job_id, JobOutcome::Succeeded);
    let v3 = push_ok(&f, "t", None);
    f.store
        .conn()
        .unwrap()
        .execute(
            "UPDATE template_versions SET created_at = created_at + 60000 WHERE id = ?1",
            [&v3.version_id],
        )
        .unwrap();
    f.store.promote_version("t", "v1").unwrap();
    import(&f, &d, &v3.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t").as_deref(), Some("v1"));
}

#[test]
fn promoting_the_active_version_passes_over_no_import() {
    // "Promote v1 to be sure" while v2 imports: v2 still becomes active.
    let f = fixture();
    let d = f.daemon("d1");
    let v1 = push_ok(&f, "t", None);
    import(&f, &d, &v1.job_id, JobOutcome::Succeeded);
    let v2 = push_ok(&f, "t", None);
    assert!(f.store.promote_version("t", "v1").unwrap().active);
    import(&f, &d, &v2.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t").as_deref(), Some("v2"));
}
