use super::*;

fn rec(id: &str, at: i64) -> JobRecord {
    JobRecord {
        job_id: id.into(),
        kind: "workspace_build".into(),
        started_at_ms: at,
        work_dir: PathBuf::from("/cache/jobs").join(id),
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
