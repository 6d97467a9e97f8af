//! Template versions in the store: names (generated and given), lookup,
//! paging, archiving, promotion, and the rule deciding when a finished
//! import makes its version active.

mod activation;
mod backfill;

use super::*;
use crate::coordinator::store::{NewVersion, Pushed, VersionInfo};

/// Pushes a version of `template`, named `name` (`None`: generated);
/// `keep_inactive` is `--activate=false`.
fn push_v(
    f: &Fixture,
    template: &str,
    name: Option<&str>,
    keep_inactive: bool,
) -> Result<Pushed, CoordError> {
    f.store.push_version(
        template,
        b"archive",
        &Tags::new(),
        &BTreeMap::new(),
        "admin",
        &NewImport {
            version: NewVersion {
                name: name.map(str::to_string),
                message: format!("push of {name:?}"),
                keep_inactive,
            },
            ..Default::default()
        },
    )
}

fn push_ok(f: &Fixture, template: &str, name: Option<&str>) -> Pushed {
    push_v(f, template, name, false).unwrap()
}

/// Runs import `job` to `outcome` on daemon `d` (id of `d1`): offers jobs
/// to it until this one was offered (imports need not finish in push
/// order), then acks and reports it.
fn import(f: &Fixture, d: &str, job: &str, outcome: JobOutcome) {
    while !f.secrets.borrow().contains_key(job) {
        f.claim(d).expect("the import is still pending");
    }
    f.store.ack(job, d, "d1", "k", &f.secret(job)).unwrap();
    let mut req = finish(job, outcome);
    if outcome == JobOutcome::Failed {
        req.error = "terraform validate exited with code 1: Error: boom".into();
    }
    f.report(&req, b"").unwrap();
}

/// The template's active version's name, if any.
fn active(f: &Fixture, template: &str) -> Option<String> {
    f.store.template(template).unwrap().active_version_name
}

fn list(f: &Fixture, template: &str, archived: bool, after: &str, n: u32) -> Vec<String> {
    f.store
        .versions_page(template, archived, after, n)
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect()
}

/// Rows of `table` (what a refused call must not have added to).
fn count(f: &Fixture, table: &str) -> i64 {
    f.store
        .read(|c| Ok(c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?))
        .unwrap()
}

fn refused(e: CoordError) -> String {
    match e {
        CoordError::FailedPrecondition(m) => m,
        other => panic!("expected FAILED_PRECONDITION, got {other:?}"),
    }
}

#[test]
fn generated_names_count_up_and_step_over_a_name_someone_gave() {
    let f = fixture();
    assert_eq!(push_ok(&f, "t", None).version_name, "v1");
    assert_eq!(push_ok(&f, "t", Some("v3")).version_name, "v3");
    // Third version: v3 is taken, so the next free one.
    assert_eq!(push_ok(&f, "t", None).version_name, "v4");
    assert_eq!(
        push_ok(&f, "t", Some("release-1.2_b")).version_name,
        "release-1.2_b"
    );
    assert_eq!(push_ok(&f, "t", None).version_name, "v5");
    // Names are per template.
    assert_eq!(push_ok(&f, "other", None).version_name, "v1");
    assert_eq!(
        push_ok(&f, "other", Some("release-1.2_b")).version_name,
        "release-1.2_b"
    );
}

#[test]
fn a_taken_name_is_refused_and_nothing_is_stored() {
    let f = fixture();
    push_ok(&f, "t", Some("stable"));
    let (versions, jobs) = (count(&f, "template_versions"), count(&f, "jobs"));
    let e = push_v(&f, "t", Some("stable"), false).unwrap_err();
    let CoordError::AlreadyExists(m) = e else {
        panic!("expected ALREADY_EXISTS, got {e:?}")
    };
    assert_eq!(
        m,
        "push template \"t\": version name \"stable\" is taken; pick another --name"
    );
    assert_eq!(count(&f, "template_versions"), versions);
    assert_eq!(count(&f, "jobs"), jobs);
}

#[test]
fn bad_names_are_refused_and_nothing_is_stored() {
    let f = fixture();
    let long = "a".repeat(65);
    for (name, why) in [
        ("", "must be 1 to 64 characters"),
        (long.as_str(), "must be 1 to 64 characters"),
        ("-v1", "must start with a letter or digit"),
        ("v 1", "' ' is not allowed"),
        ("v1/../x", "'/' is not allowed"),
        (
            "0b6f1c1e-3a55-4b8e-9a57-3f3c5b0e2a11",
            "looks like a version id",
        ),
    ] {
        let e = push_v(&f, "fresh", Some(name), false).unwrap_err();
        let CoordError::Invalid(m) = e else {
            panic!("{name:?}: expected INVALID_ARGUMENT, got {e:?}")
        };
        assert!(
            m.starts_with(&format!("template version name {name:?}: ")) && m.contains(why),
            "{name:?}: {m}"
        );
    }
    assert!(f.store.template("fresh").is_err(), "no template stored");
    assert_eq!(count(&f, "template_versions"), 0);
    assert_eq!(count(&f, "jobs"), 0);
    // 64 characters is fine.
    push_ok(&f, "fresh", Some(&"a".repeat(64)));
}

#[test]
fn a_version_is_found_by_name_or_id_in_its_template_only() {
    let f = fixture();
    let p = push_ok(&f, "t", Some("first"));
    push_ok(&f, "u", Some("elsewhere"));
    let by_name = f.store.find_version("t", "first").unwrap();
    let by_id = f.store.find_version("t", &p.version_id).unwrap();
    assert_eq!(by_name, by_id);
    assert_eq!(
        (by_name.id.as_str(), by_name.import_job_id.as_str()),
        (p.version_id.as_str(), p.job_id.as_str())
    );
    assert_eq!(by_name.message, "push of Some(\"first\")");
    assert_eq!(by_name.created_by, "admin");
    assert_eq!(by_name.status, "pending");
    assert!(by_name.activate && !by_name.active && !by_name.imported);
    let e = f.store.find_version("t", "elsewhere").unwrap_err();
    let CoordError::NotFound(m) = e else {
        panic!("expected NOT_FOUND, got {e:?}")
    };
    assert_eq!(
        m,
        "template \"t\" has no version \"elsewhere\" (see `provisionerd templates versions list t`)"
    );
}

#[test]
fn versions_are_listed_newest_first_in_pages() {
    let f = fixture();
    let ids: Vec<String> = (0..5).map(|_| push_ok(&f, "t", None).version_id).collect();
    push_ok(&f, "u", None);
    assert_eq!(
        list(&f, "t", false, "", 100),
        ["v5", "v4", "v3", "v2", "v1"]
    );
    assert_eq!(list(&f, "t", false, "", 2), ["v5", "v4"]);
    assert_eq!(list(&f, "t", false, &ids[3], 2), ["v3", "v2"]);
    assert_eq!(list(&f, "t", false, &ids[1], 2), ["v1"]);
    assert!(list(&f, "t", false, &ids[0], 2).is_empty());
    let e = f.store.versions_page("nope", false, "", 10).unwrap_err();
    assert!(matches!(e, CoordError::NotFound(_)), "{e:?}");
}

#[test]
fn archived_versions_are_listed_only_when_asked() {
    let f = fixture();
    for _ in 0..3 {
        push_ok(&f, "t", None);
    }
    let v = f.store.archive_version("t", "v2", true).unwrap();
    assert!(v.archived);
    assert_eq!(list(&f, "t", false, "", 100), ["v3", "v1"]);
    assert_eq!(list(&f, "t", true, "", 100), ["v3", "v2", "v1"]);
    let all = f.store.versions_page("t", true, "", 100).unwrap();
    let flags: Vec<bool> = all.iter().map(|v| v.archived).collect();
    assert_eq!(flags, [false, true, false]);
    assert!(!f.store.archive_version("t", "v2", false).unwrap().archived);
    assert_eq!(list(&f, "t", false, "", 100), ["v3", "v2", "v1"]);
}

#[test]
fn only_an_imported_unarchived_version_can_be_promoted() {
    let f = fixture();
    let d = f.daemon("d1");
    let v1 = push_ok(&f, "t", None);
    let pending = refused(f.store.promote_version("t", "v1").unwrap_err());
    assert_eq!(
        pending,
        format!(
            "promote template \"t\" version \"v1\" is still importing (import job {id} is \
             pending; follow it with `provisionerd jobs logs {id} --follow`)",
            id = v1.job_id
        )
    );
    import(&f, &d, &v1.job_id, JobOutcome::Succeeded);
    let v2 = push_ok(&f, "t", None);
    import(&f, &d, &v2.job_id, JobOutcome::Failed);
    let v3 = push_ok(&f, "t", None);
    import(&f, &d, &v3.job_id, JobOutcome::Succeeded);
    assert_eq!(active(&f, "t").as_deref(), Some("v3"));
    let failed = refused(f.store.promote_version("t", "v2").unwrap_err());
    assert_eq!(
        failed,
        format!(
            "promote template \"t\" version \"v2\" was not imported (import job {} failed: \
             terraform validate exited with code 1: Error: boom); only a version whose import \
             succeeded can be used",
            v2.job_id
        )
    );
    f.store.archive_version("t", "v1", true).unwrap();
    let archived = refused(f.store.promote_version("t", "v1").unwrap_err());
    assert_eq!(
        archived,
        "promote template \"t\" version \"v1\" is archived (unarchive it with \
         `provisionerd templates versions unarchive t v1`)"
    );
    assert_eq!(active(&f, "t").as_deref(), Some("v3"), "nothing changed");
    f.store.archive_version("t", "v1", false).unwrap();
    let v = f.store.promote_version("t", &v1.version_id).unwrap();
    assert!(v.active && v.name == "v1");
    assert_eq!(active(&f, "t").as_deref(), Some("v1"));
}

#[test]
fn the_active_version_cannot_be_archived() {
    let f = fixture();
    let d = f.daemon("d1");
    let v1 = push_ok(&f, "t", None);
    import(&f, &d, &v1.job_id, JobOutcome::Succeeded);
    let m = refused(f.store.archive_version("t", "v1", true).unwrap_err());
    assert_eq!(
        m,
        "archive template \"t\" version \"v1\": it is the active version; promote another version first"
    );
    let v: VersionInfo = f.store.find_version("t", "v1").unwrap();
    assert!(v.active && !v.archived);
}

#[test]
fn a_workspace_row_names_its_version_and_the_active_one() {
    let f = fixture();
    let d = f.daemon("d1");
    let v1 = push_ok(&f, "t", None);
    import(&f, &d, &v1.job_id, JobOutcome::Succeeded);
    let version = f.store.version(&v1.version_id).unwrap();
    f.store
        .create_workspace(
            "ws-id",
            "ws",
            "alice",
            &version,
            &BTreeMap::new(),
            &NewBuild::default(),
            false,
            crate::coordinator::store::AutomaticUpdates::Always,
        )
        .unwrap();
    let v2 = push_ok(&f, "t", None);
    import(&f, &d, &v2.job_id, JobOutcome::Succeeded);
    for ws in [
        f.store.workspace("ws").unwrap(),
        f.store.workspace_by_id("ws-id").unwrap(),
    ] {
        assert_eq!(ws.template_version_name, "v1");
        assert_eq!(
            ws.active_version_id.as_deref(),
            Some(v2.version_id.as_str())
        );
        assert_eq!(
            ws.automatic_updates,
            crate::coordinator::store::AutomaticUpdates::Always
        );
    }
    assert_eq!(f.store.find_version("t", "v1").unwrap().workspaces, 1);
}
