use super::*;

fn rec(id: &str, at: i64) -> JobRecord {
    JobRecord {
        job_id: id.into(),
        job_secret: Secret::new(&format!("pdj_secret-of-{id}")),
        kind: "workspace_build".into(),
        started_at_ms: at,
        work_dir: PathBuf::from("/cache/jobs").join(id),
        finished: None,
    }
}

#[test]
fn records_round_trip_and_removal_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let records = Records::new(tmp.path().to_path_buf());
    records.write(&rec("b", 2)).unwrap();
    records.write(&rec("a", 1)).unwrap();
    assert_eq!(records.list().unwrap(), vec![rec("a", 1), rec("b", 2)]);
    records.save_state("a", b"{}").unwrap();
    assert_eq!(fs::read(records.state_path("a")).unwrap(), b"{}");
    records.remove("a").unwrap();
    assert!(!records.state_path("a").exists());
    records.remove("a").unwrap();
    assert_eq!(records.list().unwrap(), vec![rec("b", 2)]);
    let err = records.write(&rec("../x", 3)).unwrap_err().to_string();
    assert!(err.contains("not a valid file name"), "{err}");
}

#[test]
fn damaged_records_still_name_their_job_and_temporaries_go() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("j9.json"), "{\"job_id\": \"j9\", ").unwrap();
    fs::write(tmp.path().join(".j8.json.tmp"), "{").unwrap();
    let records = Records::new(tmp.path().to_path_buf());
    let list = records.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].job_id.as_str(), list[0].kind.as_str()), ("j9", ""));
    assert!(!tmp.path().join(".j8.json.tmp").exists());
    let missing = Records::new(tmp.path().join("nope"));
    assert!(missing.list().unwrap().is_empty());
}

#[test]
fn a_recorded_result_round_trips_to_the_same_finish_request() {
    let tmp = tempfile::tempdir().unwrap();
    let records = Records::new(tmp.path().to_path_buf());
    let req = FinishJobRequest {
        job_id: "imp".into(),
        outcome: JobOutcome::Succeeded as i32,
        error: String::new(),
        has_state: false,
        variables: vec![TemplateVariable {
            name: "region".into(),
            description: "where".into(),
            r#type: "string".into(),
            default_json: "\"eu\"".into(),
            sensitive: true,
            required: false,
        }],
        log_count: 12,
        replacements: vec!["terraform_data.home (forced by triggers_replace)".into()],
        ..Default::default()
    };
    let mut record = rec("imp", 1);
    record.finished = Some(Finished::of(&req));
    records.write(&record).unwrap();
    let text = fs::read_to_string(tmp.path().join("imp.json")).unwrap();
    assert!(text.contains("\"outcome\": \"succeeded\""), "{text}");
    let back = records.list().unwrap().remove(0);
    assert_eq!(back, record);
    let again = back
        .finished
        .unwrap()
        .request("imp", &back.job_secret, None, 12);
    let req = FinishJobRequest {
        job_secret: "pdj_secret-of-imp".into(),
        ..req
    };
    assert_eq!((again.header, again.state), (req, None));

    // A record from before outcomes were kept reads as an interrupted job.
    fs::write(
        tmp.path().join("old.json"),
        r#"{"job_id": "old", "kind": "workspace_build", "started_at_ms": 0, "work_dir": ""}"#,
    )
    .unwrap();
    let old = records.list().unwrap().remove(0);
    assert_eq!((old.job_id.as_str(), old.finished), ("old", None));
    assert!(
        old.job_secret.is_empty(),
        "no secret in a record from before them"
    );

    let canceled = Finished {
        outcome: "canceled".into(),
        error: "interrupted".into(),
        variables: Vec::new(),
        replacements: Vec::new(),
    };
    let again = canceled.request("j", &Secret::new("pdj_j"), Some(b"{}".to_vec()), 3);
    assert_eq!(again.header.job_secret, "pdj_j");
    assert_eq!(again.state.as_deref(), Some(&b"{}"[..]));
    let req = again.header;
    assert_eq!(
        (
            req.outcome,
            req.has_state,
            req.error.as_str(),
            req.log_count
        ),
        (JobOutcome::Canceled as i32, true, "interrupted", 3)
    );
}

/// The job secret is what lets a restarted daemon report its job: it is in
/// the record, the record is the daemon's alone, and printing a record
/// never shows it.
#[test]
fn a_record_keeps_the_job_secret_owner_only_and_never_prints_it() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let records = Records::new(tmp.path().to_path_buf());
    let record = rec("j1", 1);
    records.write(&record).unwrap();
    let path = tmp.path().join("j1.json");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(r#""job_secret": "pdj_secret-of-j1""#),
        "{text}"
    );
    let back = records.list().unwrap().remove(0);
    assert_eq!(back.job_secret.expose(), "pdj_secret-of-j1");
    let shown = format!("{back:?}");
    assert!(!shown.contains("pdj_secret-of-j1"), "{shown}");
    assert!(shown.contains("j1"), "{shown}");
}

/// A temporary file left with a wider mode (a crash mid-write, a restored
/// backup) is not reused: the rewritten record is 0600 all the same.
#[test]
fn a_rewrite_over_a_leftover_temporary_file_stays_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let records = Records::new(tmp.path().to_path_buf());
    let leftover = tmp.path().join(".j1.json.tmp");
    fs::write(&leftover, "{").unwrap();
    fs::set_permissions(&leftover, fs::Permissions::from_mode(0o644)).unwrap();
    records.write(&rec("j1", 1)).unwrap();
    let mode = fs::metadata(tmp.path().join("j1.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert!(!leftover.exists());
}
